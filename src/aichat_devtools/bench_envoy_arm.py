"""Arm C: REST/SSE through Envoy's transcoder to the backend (sessions made over gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx2

from aichat_devtools.bench_clients import Arm, StreamResult, record_text
from aichat_devtools.bench_grpc_arm import GrpcArm


class EnvoyArm(Arm):
    """C: REST/SSE through Envoy's transcoder to the backend."""

    kind = "envoy"

    def __init__(self, name: str, base_url: str, backend: GrpcArm, tokens: dict[str, str]) -> None:
        self.name = name
        self.tokens = tokens  # user -> bearer token (Envoy's jwt_authn makes x-user-id)
        self.base_url = base_url.rstrip("/")
        self.backend = backend  # sessions are created over gRPC, on the same database
        self._client = httpx2.AsyncClient(
            timeout=120, limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=2000)
        )
        self.pool = backend.pool

    async def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx2.HTTPError):
                r = await self._client.get(self.base_url + "/v1/chat/health", timeout=1.0)
                if r.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: Envoy at {self.base_url} is not answering")
            await asyncio.sleep(0.1)

    async def stream(
        self,
        text: str,
        tag: str = "",
        on_first: Callable[[], None] | None = None,
        into: StreamResult | None = None,
    ) -> StreamResult:
        pair = await self.pool.acquire()
        res = into if into is not None else StreamResult()
        res.t_send = time.monotonic()
        last: float | None = None
        url = f"{self.base_url}/v1/chat/{pair[1]}:streamChat"
        headers = {
            "authorization": f"Bearer {self.tokens[pair[0]]}",
            "accept": "text/event-stream",
        }
        try:
            async with self._client.stream(
                "POST", url, json={"text": text}, headers=headers
            ) as response:
                if response.status_code != 200:
                    res.error = f"HTTP_{response.status_code}"
                else:
                    async for line in response.aiter_lines():
                        event = _sse_event(line)
                        if event is None:
                            continue
                        delta = event.get("textDelta")
                        if delta is not None:
                            last = record_text(res, delta.get("text", ""), last, on_first)
                        ended = event.get("turnEnded")
                        if ended is not None and ended.get("outcome") != "TURN_OUTCOME_COMPLETED":
                            res.error = str(ended.get("outcome"))
                    res.ok = not res.error
        except httpx2.HTTPError as exc:
            res.error = type(exc).__name__
        finally:
            res.t_end = time.monotonic()
            self.pool.release(pair, res.ok or not res.error)
        return res

    async def aclose(self) -> None:
        await self._client.aclose()


def _sse_event(line: str) -> dict[str, Any] | None:
    """One JSON event from an SSE ``data:`` line (or a bare JSON line)."""
    line = line.strip().rstrip(",")
    if line.startswith("data:"):
        line = line[5:].strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict):
        result = value.get("result", value)
        return result if isinstance(result, dict) else None
    return None
