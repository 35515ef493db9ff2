"""What one replica is doing now, for operators: GetRuntimeStatus's data.

Counts of running turns come from this process's engine (each replica answers for
itself); pending approvals from the database (all replicas); MCP servers with the full
error the pool keeps; the limits' configuration and the refusals counted since start.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aichat_backend import __version__
from aichat_backend.admin.bypass import BypassList
from aichat_backend.limits.base import Limiter, LimitSettings
from aichat_backend.reasons import Reason
from aichat_backend.store import admin_repo
from aichat_backend.store.database import Database
from aichat_backend.tools.base import ToolProvider, ToolServerInfo

REFUSAL_REASONS = (
    Reason.RATE_LIMITED,
    Reason.CONCURRENCY_LIMITED,
    Reason.TOKEN_BUDGET_EXHAUSTED,
    Reason.STORAGE_QUOTA_EXCEEDED,
)


@dataclass(frozen=True, slots=True)
class LimitsView:
    settings: LimitSettings
    shared: bool
    degraded_reason: str
    refused: dict[str, int]
    bypass_entries: int


@dataclass(frozen=True, slots=True)
class RuntimeSnapshot:
    version: str
    replica_id: str
    start_time: float
    uptime_seconds: float
    active_turns: int
    by_model: list[tuple[str, int]]
    by_user: list[tuple[str, int]]
    pending_approvals: int
    tool_servers: list[ToolServerInfo]
    limits: LimitsView


@dataclass
class RuntimeView:
    db: Database
    # (user, model) of each running turn: the engine's read-only port.
    turn_owners: Callable[[], list[tuple[str, str]]]
    limiter: Limiter
    limit_settings: LimitSettings
    shared_configured: bool
    bypass: BypassList
    refusals: Callable[[str], float | None]  # counted refusals by reason
    replica_id: str
    approval_ttl_seconds: float
    tools: ToolProvider | None = None
    started: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)

    async def snapshot(self) -> RuntimeSnapshot:
        owners = self.turn_owners()
        async with self.db.read() as tx:
            pending = await admin_repo.pending_approvals(tx, self.approval_ttl_seconds)
        degraded = self.limiter.degraded() or ""
        return RuntimeSnapshot(
            version=__version__,
            replica_id=self.replica_id,
            start_time=self.started,
            uptime_seconds=time.monotonic() - self.started_monotonic,
            active_turns=len(owners),
            by_model=sorted(Counter(model for _, model in owners).items()),
            by_user=sorted(Counter(user for user, _ in owners).items()),
            pending_approvals=pending,
            tool_servers=self.tools.servers() if self.tools is not None else [],
            limits=LimitsView(
                settings=self.limit_settings,
                shared=self.shared_configured and not degraded,
                degraded_reason=degraded,
                refused={r: int(self.refusals(r) or 0) for r in REFUSAL_REASONS},
                bypass_entries=len(self.bypass),
            ),
        )
