"""PDF text, read in worker processes so no PDF can stall the server (see ``pdf_worker``).

A few long-lived workers (warm: a small PDF costs one round trip, not a process start).
A job that overruns its wall-clock bound, or whose caller goes away mid-job, costs that
worker its life: it is killed and a fresh one started in its place, so the next job never
meets a process in an unknown state. Workers get an environment with no secrets in it.

The readers are shared fairly: a user has at most one being read at a time (their next
PDF waits for it), and a user whose PDF was refused as too costly is refused
``PDF_COOLING_DOWN`` until ``cooldown_seconds`` have passed. So one user sending costly
PDFs in a loop holds one reader, part of the time, and every other reader stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass

from aichat_backend.engine import pdf_worker as wire
from aichat_backend.errors import InvalidArgument, ResourceExhausted, Unavailable
from aichat_backend.limits.slots import Slots, SlotsBusy
from aichat_backend.reasons import Reason

REASONS = {
    wire.UNREADABLE: Reason.UNSUPPORTED_ATTACHMENT,
    wire.TOO_MANY_PAGES: Reason.PDF_TOO_MANY_PAGES,
    wire.TEXT_TOO_LONG: Reason.PDF_TEXT_TOO_LONG,
    wire.TOO_COSTLY: Reason.PDF_TOO_COSTLY,
}
START_SECONDS = 30.0  # a worker that is not ready by then is not coming


@dataclass(frozen=True, slots=True)
class PdfLimits:
    max_pages: int = 100
    max_chars: int = 200_000
    cpu_seconds: float = 5.0
    timeout_seconds: float = 10.0
    max_memory_bytes: int = 1024 * 1024 * 1024
    workers: int = 2
    cooldown_seconds: float = 30.0  # after a PDF refused as too costly, per user


def default_workers() -> int:
    """Readers for this machine: one per core, at least two (one user holds one at most)."""
    return max(2, min(os.cpu_count() or 1, 8))


class PdfRefused(Exception):
    def __init__(self, reason: Reason, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, limits: PdfLimits) -> _Worker:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            wire.__name__,
            str(limits.max_memory_bytes),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        worker = cls(proc)
        try:
            async with asyncio.timeout(START_SECONDS):
                await worker._answer()  # its "ready"
        except BaseException:
            worker.kill()
            raise
        return worker

    async def _answer(self) -> tuple[int, str]:
        assert self.proc.stdout is not None
        outcome, length = wire.ANSWER.unpack(await self.proc.stdout.readexactly(wire.ANSWER.size))
        payload = await self.proc.stdout.readexactly(length) if length else b""
        return outcome, payload.decode("utf-8", "replace")

    async def run(self, content: bytes, limits: PdfLimits) -> tuple[int, str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(
            wire.JOB.pack(limits.max_pages, limits.max_chars, limits.cpu_seconds, len(content))
        )
        self.proc.stdin.write(content)
        await self.proc.stdin.drain()
        return await self._answer()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            await self.proc.wait()


class PdfExtractor:
    """Text of PDFs, or ``PdfRefused``; at most ``limits.workers`` read at once."""

    def __init__(self, limits: PdfLimits | None = None) -> None:
        self.limits = limits or PdfLimits()
        self._idle: list[_Worker] = []
        self._slots = Slots(self.limits.workers, 1)  # every reader, one per user
        self._cooling: dict[str, float] = {}  # user → monotonic time their wait ends
        self._changed = asyncio.Condition()
        self._closed = False
        self.busy = 0  # jobs being read now

    async def start(self) -> None:
        """Warm the workers now rather than at the first PDF."""
        while len(self._idle) < self.limits.workers and not self._closed:
            self._idle.append(await _Worker.start(self.limits))

    async def wait_busy(self) -> None:
        """Until a job is being read (tests watch the window in which one is)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.busy > 0)

    async def _set_busy(self, delta: int) -> None:
        async with self._changed:
            self.busy += delta
            self._changed.notify_all()

    async def extract(self, content: bytes, user_id: str = "") -> str:
        limits = self.limits
        self._check_cooling(user_id)
        try:
            async with self._slots.hold(user_id, wait=limits.timeout_seconds):
                self._check_cooling(user_id)  # a PDF of theirs may have been refused meanwhile
                try:
                    return await self._read(content)
                except PdfRefused as refused:
                    if refused.reason is Reason.PDF_TOO_COSTLY and limits.cooldown_seconds > 0:
                        self._cool(user_id)
                    raise
        except SlotsBusy as busy:
            raise Unavailable(
                "your previous PDF is still being read; try again shortly"
                if busy.scope == "key"
                else "every PDF reader is busy; try again shortly",
                reason=Reason.PDF_READERS_BUSY,
                retry_after=limits.timeout_seconds,
            ) from None

    def _check_cooling(self, user_id: str) -> None:
        until = self._cooling.get(user_id)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._cooling[user_id]
            return
        raise ResourceExhausted(
            f"your last PDF was too costly to read; the next is read after {math.ceil(left)} s",
            reason=Reason.PDF_COOLING_DOWN,
            retry_after=math.ceil(left),
            metadata={"cooldown_seconds": f"{self.limits.cooldown_seconds:g}"},
        )

    def _cool(self, user_id: str) -> None:
        now = time.monotonic()
        # Forget the waits that are over: the map holds only users cooling down now.
        for user in [u for u, until in self._cooling.items() if until <= now]:
            del self._cooling[user]
        self._cooling[user_id] = now + self.limits.cooldown_seconds

    async def _read(self, content: bytes) -> str:
        limits = self.limits
        worker: _Worker | None = None
        try:
            worker = self._idle.pop() if self._idle else await _Worker.start(limits)
            await self._set_busy(1)
            try:
                async with asyncio.timeout(limits.timeout_seconds):
                    outcome, payload = await worker.run(content, limits)
            except TimeoutError:
                raise PdfRefused(
                    REASONS[wire.TOO_COSTLY],
                    f"reading the PDF took over {limits.timeout_seconds:g} s",
                ) from None
            except (asyncio.IncompleteReadError, ConnectionError):
                raise PdfRefused(
                    REASONS[wire.TOO_COSTLY], "the PDF reader gave up on this PDF"
                ) from None
            finally:
                await self._set_busy(-1)
            if outcome != wire.OK:
                if outcome == wire.TOO_COSTLY:  # a MemoryError leaves a process worth replacing
                    raise PdfRefused(REASONS[outcome], payload)
                self._idle.append(worker)
                worker = None
                raise PdfRefused(REASONS.get(outcome, Reason.UNSUPPORTED_ATTACHMENT), payload)
            self._idle.append(worker)
            worker = None
            return payload
        finally:
            if worker is not None:  # overran, died, refused costly, or its caller left
                await worker.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in idle:
            await worker.close()


def refusal(filename: str, refused: PdfRefused) -> InvalidArgument:
    return InvalidArgument(
        f"attachment {filename[:80]!r}: {refused.why}",
        reason=refused.reason,
        field="attachments",
        metadata={"filename": filename[:255]},
    )
