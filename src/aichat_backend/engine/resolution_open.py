"""Opening a ResolveToolCalls: its checks, its replays, the decisions recorded once.

Calls waiting longer than the approval TTL are denied first. The decisions are checked
against what waits and applied, then recorded with the session's claim in one write
(``TurnStore.open_resolution``); a request_id seen before, or taken by a duplicate
meanwhile, gets that request's result (or its running turn) instead.
"""

from __future__ import annotations

from aichat_backend import names
from aichat_backend.domain import memory_window, now_us
from aichat_backend.engine.approvals import (
    Decisions,
    apply_decisions,
    check_decisions,
    check_known,
)
from aichat_backend.engine.events import TurnEnded
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import ChatConfig, ResolveRequest, resolve_fingerprint
from aichat_backend.engine.sessions import check_request_id
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_setup import TurnSetup
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import AichatError
from aichat_backend.records import RESOLVE_SCOPE, Resolution, TurnClaim
from aichat_backend.tools.base import ToolInfo, ToolProvider

EXPIRED = "Not approved: the approval request expired."


class ResolutionOpener:
    def __init__(
        self,
        store: TurnStore,
        setup: TurnSetup,
        config: ChatConfig,
        tools: ToolProvider | None,
    ) -> None:
        self._store = store
        self._setup = setup
        self._config = config
        self._tools = tools

    async def open(self, req: ResolveRequest) -> tuple[TurnRun, Decisions, int] | TurnEnded:
        """The resumed run, the decisions, and how much history its next round reads; or
        the stored result of a request_id seen before (or its running turn to read)."""
        session_id = names.parse_session(req.session, "session")
        check_request_id(req.request_id)
        check_decisions(req.decisions)
        user, store = req.user_id, self._store
        fingerprint = ""
        if req.request_id:
            fingerprint = resolve_fingerprint(req, session_id)
            stored = await store.find_replay(user, RESOLVE_SCOPE, req.request_id)
            if stored is not None:  # yielded by resolve outside any read: the client may be slow
                return replay(stored, fingerprint)  # or the running turn to read
        try:
            return await self._record(req, session_id, fingerprint)
        except AichatError:
            # A duplicate of this request (its request_id) decided meanwhile: its result,
            # or its running turn, is this request's too.
            stored = None
            if req.request_id:
                stored = await store.find_replay(user, RESOLVE_SCOPE, req.request_id)
            if stored is None:
                raise
            return replay(stored, fingerprint)

    async def _record(
        self, req: ResolveRequest, session_id: str, fingerprint: str
    ) -> tuple[TurnRun, Decisions, int]:
        """Expire old approvals, check the decisions, claim the session and record them;
        the run, the decisions, and how much history the next round reads."""
        user, store = req.user_id, self._store
        ttl_us = int(self._config.approval_ttl_seconds * 1e6)
        await store.expire_pending(user, session_id, now_us() - ttl_us, EXPIRED)
        state = await store.load_resolution(
            user, session_id, [d.tool_call_id for d in req.decisions]
        )
        check_known(req.decisions, state.pending, state.others, state.superseded)
        decisions = apply_decisions(req.decisions, state.pending, self._tool_info)
        round_msg = state.round_message
        assert round_msg is not None  # the decisions name waiting calls of this round
        run = self._setup.resumed_run(req, session_id, state.session, round_msg)
        run.user_message = state.user_message or round_msg
        claim = TurnClaim(run.turn_id, self._config.replica_id, self._config.lease_seconds)
        await store.open_resolution(
            user,
            Resolution(session_id, claim, round_msg, decisions.stored, req.request_id, fingerprint),
        )
        history = memory_window(
            0, state.session.memory_limit, self._config.memory_default, self._config.memory_max
        )
        return run, decisions, history

    def _tool_info(self, model_name: str) -> ToolInfo | None:
        return self._tools.find(model_name) if self._tools is not None else None
