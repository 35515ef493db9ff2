"""PDF text, read in worker processes so no PDF can stall the server (see ``pdf_worker``).

A few long-lived workers (warm: a small PDF costs one round trip, not a process start).
A job that overruns its wall-clock bound, or whose caller goes away mid-job, costs that
worker its life: it is killed and a fresh one started in its place, so the next job never
meets a process in an unknown state. Workers get an environment with no secrets in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass

from aichat_backend.engine import pdf_worker as wire
from aichat_backend.errors import InvalidArgument, Unavailable
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
    workers: int = 1


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
        self._slots = asyncio.Semaphore(self.limits.workers)
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

    async def extract(self, content: bytes) -> str:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.timeout_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise Unavailable(
                "every PDF reader is busy; try again shortly",
                reason=Reason.PDF_READERS_BUSY,
                retry_after=limits.timeout_seconds,
            ) from None
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
            self._slots.release()

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
