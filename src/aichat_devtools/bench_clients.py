"""The benchmark's clients, one per arm, all timing a stream the same way.

Every arm answers ``stream(text)`` with a :class:`StreamResult`: when the request left,
the time to the first text, the gaps between text-bearing messages and how many
upstream tokens arrived (each fake token ends with a space, so coalesced messages count
right). Clocks are ``time.monotonic()`` (CLOCK_MONOTONIC, shared with the other
processes of the run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai
from aichat.v1 import chat_service_pb2 as cpb

COMPLETED = cpb.TURN_OUTCOME_COMPLETED


@dataclass(slots=True)
class StreamResult:
    t_send: float = 0.0
    ttft: float | None = None
    t_end: float = 0.0
    gaps: list[float] = field(default_factory=list)
    messages: int = 0  # messages that carried text
    tokens: int = 0
    ok: bool = False
    error: str = ""
    # (arrival time, tokens) of every text message, when the caller asks for them
    marks: list[tuple[float, int]] | None = None


@dataclass(slots=True)
class UnaryResult:
    t_send: float
    latency: float
    ok: bool
    error: str = ""


def record_text(
    res: StreamResult, text: str, last: float | None, on_first: Callable[[], None] | None
) -> float:
    now = time.monotonic()
    if last is None:
        res.ttft = now - res.t_send
        if on_first is not None:
            on_first()
    else:
        res.gaps.append(now - last)
    res.messages += 1
    tokens = text.count(" ")
    res.tokens += tokens
    if res.marks is not None:
        res.marks.append((now, tokens))
    return now


class Arm:
    """One way of reaching the same upstream."""

    name: str = ""
    kind: str = ""  # "direct", "backend", "relay", "envoy"

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        raise NotImplementedError

    async def unary(self, text: str) -> UnaryResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class DirectArm(Arm):
    """A: the openai SDK straight to the upstream."""

    kind = "direct"

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        # The SDK on the same HTTP client as the backend's default: the direct call
        # is the fastest the SDK allows, not a slower baseline that flatters B.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key="bench",
            max_retries=0,
            timeout=120,
            http_client=openai.DefaultAioHttpClient(),
        )

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        res = into if into is not None else StreamResult()
        res.t_send = time.monotonic()
        last: float | None = None
        try:
            stream = await self._client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": text}], stream=True
            )
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        last = record_text(res, chunk.choices[0].delta.content, last, on_first)
            res.ok = True
        except openai.APIError as exc:
            res.error = type(exc).__name__
        res.t_end = time.monotonic()
        return res

    async def aclose(self) -> None:
        await self._client.close()
