"""The benchmark's upstream: the project's fake LLM, told what to do by the message text.

One process serves every arm and every scenario, so all arms talk to the same upstream:
the last user message says how to answer, e.g. ``bench ttft=300 delay=20 n=64``
(time to first token and inter-token delay in ms, number of tokens). ``rec=TAG`` appends
``TAG <monotonic arrival time>`` to ``--record-file`` (CLOCK_MONOTONIC is shared by every
process on the machine, so arrival times line up with the client's and the backend's).

    python -m aichat_devtools.bench_upstream --port 0 [--record-file PATH]

prints ``listening on http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import signal
import time
from typing import IO

from aichat_devtools.fake_llm import FakeLLMServer, RecordedRequest, Script, last_user_text

WORDS = ("lorem ", "ipsum ", "dolor ", "sit ", "amet ", "consectetur ", "adipiscing ")
_PARAM = re.compile(r"\b(ttft|delay|n|rec)=([\w.-]+)")


def scenario_text(ttft_ms: float, delay_ms: float, tokens: int, rec: str = "") -> str:
    text = f"bench ttft={ttft_ms:g} delay={delay_ms:g} n={tokens}"
    return text + (f" rec={rec}" if rec else "")


def tokens(count: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(WORDS), count))


class ScenarioBehaviour:
    def __init__(self, record: IO[str] | None) -> None:
        self._record = record
        self._cache: dict[tuple[float, float, int], list[str]] = {}

    def __call__(self, request: RecordedRequest) -> Script:
        arrived = time.monotonic()
        params = dict(_PARAM.findall(last_user_text(request.body)))
        ttft = float(params.get("ttft", 0)) / 1000
        delay = float(params.get("delay", 0)) / 1000
        count = int(params.get("n", 16))
        if self._record is not None and "rec" in params:
            self._record.write(f"{params['rec']} {arrived:.6f}\n")
            self._record.flush()
        key = (ttft, delay, count)
        words = self._cache.get(key)
        if words is None:
            words = self._cache[key] = tokens(count)
        return Script(tokens=words, ttft=ttft, token_delay=delay)


async def _run(args: argparse.Namespace, record: IO[str] | None) -> None:
    server = FakeLLMServer(
        host="127.0.0.1", port=args.port, default=ScenarioBehaviour(record), record_requests=False
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.root_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record-file", default="")
    args = parser.parse_args(argv)
    record = open(args.record_file, "a") if args.record_file else None  # noqa: SIM115
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(args, record))
    finally:
        if record is not None:
            record.close()


if __name__ == "__main__":
    main()
