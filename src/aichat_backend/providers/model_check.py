"""Is each model of the catalogue reachable? A one-word prompt, a few tokens, a short timeout.

Run in the background at start-up (a dead model never delays it) and on demand through
the operator API. Results are kept per model for ListModels and health; a failing model
is reported, never fatal. Off with ``AICHAT_MODEL_CHECK=false`` for deployments that pay
per call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aichat_backend.errors import AichatError, DeadlineExceeded, Internal
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason

log = logging.getLogger(__name__)

PROMPT = "hi"
MAX_OUTPUT_TOKENS = 3


class CheckState(enum.Enum):
    NOT_CHECKED = "not_checked"
    REACHABLE = "reachable"
    FAILING = "failing"


@dataclass(frozen=True, slots=True)
class CheckResult:
    state: CheckState
    error: AichatError | None = None
    check_time: float = 0.0  # Unix seconds
    latency_seconds: float = 0.0


NOT_CHECKED = CheckResult(CheckState.NOT_CHECKED)
OnResult = Callable[[str, CheckResult], Awaitable[None]]


class ModelChecker:
    def __init__(
        self,
        catalogue: ModelCatalogue,
        *,
        timeout_seconds: float = 10.0,
        on_result: OnResult | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._timeout = timeout_seconds
        self._on_result = on_result
        self._results: dict[str, CheckResult] = {}
        self._running: asyncio.Task[dict[str, CheckResult]] | None = None

    def result(self, name: str) -> CheckResult:
        return self._results.get(name, NOT_CHECKED)

    def check_all(self) -> asyncio.Task[dict[str, CheckResult]]:
        """Check every model at once; a check already running is joined, not doubled."""
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().create_task(self._check_all())
        return self._running

    async def aclose(self) -> None:
        running, self._running = self._running, None
        if running is not None and not running.done():
            running.cancel()
            await asyncio.wait([running])

    async def _check_all(self) -> dict[str, CheckResult]:
        names = [e.name for e in self._catalogue.entries()]
        results = await asyncio.gather(*(self.check(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def check(self, name: str) -> CheckResult:
        started = time.perf_counter()
        error: AichatError | None = None
        try:
            async with asyncio.timeout(self._timeout):
                await self._ask(name)
        except TimeoutError:
            error = DeadlineExceeded(
                f"The model did not answer within {self._timeout:g} s.",
                reason=Reason.PROVIDER_TIMEOUT,
                metadata={"model": name},
            )
        except AichatError as exc:
            error = exc
        except Exception as exc:  # an SDK surprise must not kill the check of the others
            log.exception("model check of %r failed unexpectedly", name)
            error = Internal(
                f"The check failed ({type(exc).__name__}).", reason=Reason.CHECK_FAILED
            )
        result = CheckResult(
            CheckState.FAILING if error else CheckState.REACHABLE,
            error,
            time.time(),
            time.perf_counter() - started,
        )
        self._results[name] = result
        if error is None:
            log.info("model reachable", extra={"model": name, "seconds": result.latency_seconds})
        else:
            log.warning("model check failed", extra={"model": name, "reason": error.reason})
        if self._on_result is not None:
            await self._on_result(name, result)  # health says so before check() returns
        return result

    async def _ask(self, name: str) -> None:
        entry = self._catalogue.get(name)
        provider = self._catalogue.provider_for(name)  # FailedPrecondition without a key
        request = ProviderRequest(
            model=entry.model_name,
            messages=(ChatMessage(ChatRole.USER, PROMPT),),
            temperature=entry.temperature,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            thinking_budget_tokens=0,  # a reachability check pays for no thinking
        )
        async with provider.stream(request) as events:
            async for _ in events:
                pass  # a few tokens at most: read to the end so the stream closes cleanly
