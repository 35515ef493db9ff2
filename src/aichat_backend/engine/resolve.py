"""ResolveToolCalls: the user's decisions on waiting calls, then the turn resumes.

Calls waiting longer than the approval TTL are denied first. Each decision is recorded
once; the approved calls run, and when nothing waits any more the model gets the
results in a new round, with the session's history read again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aichat_backend import names
from aichat_backend.domain import (
    MessageState,
    ToolCallState,
    memory_window,
    now_us,
)
from aichat_backend.engine.approvals import (
    Decisions,
    apply_decisions,
    check_decisions,
    check_known,
)
from aichat_backend.engine.events import ToolCallUpdate, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import ChatConfig, ResolveRequest, resolve_fingerprint
from aichat_backend.engine.round_open import RoundOpener
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.sessions import check_request_id
from aichat_backend.engine.turn_run import TurnRun
from aichat_backend.engine.turn_setup import TurnSetup
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import AichatError
from aichat_backend.records import RESOLVE_SCOPE, Resolution, TurnClaim
from aichat_backend.tools.base import ToolInfo, ToolProvider

EXPIRED = "Not approved: the approval request expired."


class Resolver:
    def __init__(
        self,
        store: TurnStore,
        setup: TurnSetup,
        config: ChatConfig,
        tools: ToolProvider | None,
        lifecycle: TurnLifecycle,
        rounds: TurnRounds,
        round_opener: RoundOpener,
    ) -> None:
        self._round = round_opener
        self._store = store
        self._setup = setup
        self._config = config
        self._tools = tools
        self._lifecycle = lifecycle
        self._rounds = rounds

    async def resolve(self, req: ResolveRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = names.parse_session(req.session, "session")
        check_request_id(req.request_id)
        check_decisions(req.decisions)
        user, store = req.user_id, self._store
        fingerprint = ""
        if req.request_id:
            fingerprint = resolve_fingerprint(req, session_id)
            stored = await store.find_replay(user, RESOLVE_SCOPE, req.request_id)
            if stored is not None:  # yielded outside any read: the client may be slow
                yield replay(stored, fingerprint)  # or the running turn to read
                return
        try:
            run, decisions, history = await self._open(req, session_id, fingerprint)
        except AichatError:
            # A duplicate of this request (its request_id) decided meanwhile: its result,
            # or its running turn, is this request's too.
            stored = None
            if req.request_id:
                stored = await store.find_replay(user, RESOLVE_SCOPE, req.request_id)
            if stored is None:
                raise
            yield replay(stored, fingerprint)
            return
        round_msg = run.message
        assert run.user_message is not None
        async with self._lifecycle.driving(run):
            yield TurnStarted(run.user_message, round_msg.name, run.model, continues_answer=True)
            for call in decisions.shown:
                if call.state is not ToolCallState.APPROVED:
                    yield ToolCallUpdate(call)
            async for event in self._rounds.run_tools(run, decisions.runnable):
                yield event
            if decisions.remaining:
                remaining = [p.call for p in decisions.remaining]
                async for event in self._rounds.await_approval(run, remaining):
                    yield event
                return
            async for event in self._next_round(run, history):
                yield event

    async def _open(
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

    async def _next_round(self, run: TurnRun, history: int) -> AsyncGenerator[TurnEvent, None]:
        """Nothing waits any more: the model reads the results in a new round."""
        run.message.state = MessageState.COMPLETE  # its calls are decided or have run
        run.message, context = await self._store.next_round(
            run.user_id, run.session_id, run.message, run.model, history
        )
        run.answers.append(run.message.name)
        self._rounds.observer.round_started(run.turn_id, run.message.id)
        self._setup.next_round(run, context, history)
        async for compacted in self._round.open(run):
            yield compacted
        async for event in self._rounds.run(run):
            yield event

    def _tool_info(self, model_name: str) -> ToolInfo | None:
        return self._tools.find(model_name) if self._tools is not None else None
