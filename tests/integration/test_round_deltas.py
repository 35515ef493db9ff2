"""How a round hands its text to the relay: each token when calm, coalesced on purpose
under load, and once per round for a caller that wants the answer, not its tokens.

A real adapter reads the fake upstream's real SSE stream; ``LoopLoad`` is the engine's
own load sensor, driven by really blocking the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from aichat_backend.engine.events import TextDelta
from aichat_backend.engine.loop_load import BUSY_LAG, CALM_LAG, LoopLoad
from aichat_backend.engine.round_stream import RoundStream
from aichat_backend.providers.retry import RetryPolicy, StreamTarget
from aichat_devtools.fake_llm import FakeLLMServer, fixed_tokens_behaviour
from tests.integration.providers.support import ask, openai_provider

pytestmark = pytest.mark.timeout(20)

TOKENS = 40
TOKEN_DELAY = 0.004  # the upstream's pace: 40 tokens over ~160 ms
FLUSH = 0.05


async def _deltas(
    fake: FakeLLMServer, load: LoopLoad, relay_text: bool = True
) -> list[tuple[float, str]]:
    """Each delta the relay gets, with the loop time it got it."""
    provider = openai_provider(fake.base_url, timeout=5.0)
    target = StreamTarget(label="m", model="test-model", resolve=lambda: provider)
    loop = asyncio.get_running_loop()
    stream = RoundStream(
        ask(), [target], RetryPolicy(attempts=1), 5.0, time.monotonic(), load, FLUSH, relay_text
    )
    out: list[tuple[float, str]] = []
    while (event := await stream.next_event()) is not None:
        if isinstance(event, TextDelta):
            out.append((loop.time(), event.text))
    assert stream.error is None and stream.finished is not None
    await provider.aclose()
    return out


def _expected_text() -> str:
    script = fixed_tokens_behaviour(TOKENS)(None)  # type: ignore[arg-type]
    return "".join(script.tokens)


@pytest.fixture
async def fake() -> FakeLLMServer:
    async with FakeLLMServer(default=fixed_tokens_behaviour(TOKENS, token_delay=TOKEN_DELAY)) as f:
        yield f


async def test_a_busy_loop_sends_a_delta_at_most_once_per_flush_interval(
    fake: FakeLLMServer,
) -> None:
    load = LoopLoad()
    load.busy = True  # not held: nothing samples, so it stays as set
    deltas = await _deltas(fake, load)
    assert "".join(text for _, text in deltas) == _expected_text()  # nothing lost
    # The first token goes out at once, the rest of the text as soon as the model is done;
    # between them, one delta per interval at most (a timer may run up to the loop's clock
    # resolution early).
    resolution = asyncio.get_running_loop()._clock_resolution
    times = [t for t, _ in deltas[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and all(gap >= FLUSH - resolution for gap in gaps), gaps
    assert len(deltas) < TOKENS / 3, len(deltas)


async def test_a_calm_loop_sends_each_token_as_it_comes(fake: FakeLLMServer) -> None:
    deltas = await _deltas(fake, LoopLoad())
    assert "".join(text for _, text in deltas) == _expected_text()
    # Tokens 4 ms apart, a relay that does nothing else: most arrive alone.
    assert len(deltas) > TOKENS / 2, len(deltas)


async def test_a_unary_caller_gets_the_text_once_per_round(fake: FakeLLMServer) -> None:
    deltas = await _deltas(fake, LoopLoad(), relay_text=False)
    assert [text for _, text in deltas] == [_expected_text()]


class _Watched(LoopLoad):
    """The engine's sensor, telling the test after each of its samples."""

    def __init__(self) -> None:
        super().__init__()
        self.sampled = asyncio.Condition()

    def _sample(self) -> None:
        super()._sample()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.sampled:
            self.sampled.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.sampled:
            await self.sampled.wait_for(predicate)


async def test_the_load_sensor_turns_busy_while_the_loop_lags_and_calm_after() -> None:
    load = _Watched()
    load.hold()
    loop = asyncio.get_running_loop()
    blocking = True

    def block() -> None:  # a loop with no time to spare: each callback holds it 10 ms
        time.sleep(0.01)
        if blocking:
            loop.call_soon(block)

    loop.call_soon(block)
    await load.until(lambda: load.busy)
    assert load.lag > BUSY_LAG
    blocking = False
    # Calm again only once its smoothed lateness is well under the busy mark (hysteresis):
    # fed the samples directly, as a loaded test machine's own lateness would blur them.
    load.observe(BUSY_LAG)
    assert load.busy  # between the marks it stays as it was
    while load.lag >= CALM_LAG:
        load.observe(0.0)
    assert not load.busy
    load.observe(CALM_LAG * 2)
    assert not load.busy  # and calm stays calm between them
    load.release()
    # No turns: it stops sampling, and the next turn starts calm.
    await load.until(lambda: load._timer is None)
    assert not load.busy and load.lag == 0.0
