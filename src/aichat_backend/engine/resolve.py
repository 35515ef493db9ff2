"""ResolveToolCalls: the user's decisions on waiting calls, then the turn resumes.

Calls waiting longer than the approval TTL are denied first. Each decision is recorded
once; the approved calls run, and when nothing waits any more the model gets the
results in a new round, with the session's history read again.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator

from aichat_backend import names
from aichat_backend.domain import MessageState, ToolCall, ToolCallState, memory_window, now_us
from aichat_backend.engine.approvals import (
    Decision,
    already_decided,
    check_decisions,
    validate_arguments,
)
from aichat_backend.engine.context import to_chat_messages
from aichat_backend.engine.events import ToolCallUpdate, TurnEnded, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import RESOLVE_SCOPE, ChatConfig, ResolveRequest
from aichat_backend.engine.rounds import TurnRounds, complete_round_message
from aichat_backend.engine.sessions import check_request_id
from aichat_backend.engine.turn_run import (
    TurnRun,
    offered_tools,
    stream_targets,
    tool_specs,
    turn_in_progress,
)
from aichat_backend.errors import FailedPrecondition, NotFound
from aichat_backend.providers.base import ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason
from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.sessions_repo import SessionRepository
from aichat_backend.store.tool_calls_repo import PendingCall, ToolCallRepository
from aichat_backend.store.turn_leases import LeaseRepository, TurnClaim
from aichat_backend.tools.base import ToolInfo, ToolProvider


class Resolver:
    def __init__(
        self,
        db: Database,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None,
        lifecycle: TurnLifecycle,
        rounds: TurnRounds,
    ) -> None:
        self._db = db
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._lifecycle = lifecycle
        self._rounds = rounds

    async def resolve(self, req: ResolveRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = names.parse_session(req.session, "session")
        check_request_id(req.request_id)
        check_decisions(req.decisions)
        ttl = self._config.idempotency_ttl_seconds
        if req.request_id:
            first_result: TurnEnded | None = None
            async with self._db.read() as tx:
                first = await IdempotencyRepository(tx, req.user_id, ttl).get(
                    RESOLVE_SCOPE, req.request_id
                )
                if first is not None:
                    first_result = await replay(tx, req.user_id, first.resource)
            if first_result is not None:  # yielded outside: the client may be slow to read it
                yield first_result
                return
        await self._expire_pending(req.user_id, session_id)
        turn_id = req.turn_id or uuid.uuid4().hex
        async with self._db.transaction() as tx:
            calls = ToolCallRepository(tx, req.user_id)
            session = await SessionRepository(tx, req.user_id).get(session_id)
            pending = {p.call.id: p for p in await calls.pending_calls(session_id)}
            await _check_known(calls, session_id, req.decisions, pending)
            message_id = next(iter(pending.values())).message_id
            messages = MessageRepository(tx, req.user_id)
            round_msg = await messages.get(session_id, message_id)
            user_msg = await messages.last_user_before(session_id, round_msg.seq) or round_msg
            model = round_msg.model or session.model or self._catalogue.default_name
            targets = stream_targets(self._catalogue, model)
            claim = TurnClaim(turn_id, self._config.replica_id, self._config.lease_seconds)
            await LeaseRepository(tx, req.user_id).claim(session_id, claim)
            # Running again: a crash while the approved tools run is swept like any other.
            await AnswerRepository(tx, req.user_id).write_message(
                round_msg, state=MessageState.STREAMING
            )
            approved: list[tuple[ToolCall, ToolInfo]] = []
            decided: list[ToolCall] = []
            for d in req.decisions:
                p = pending.pop(d.tool_call_id)
                call, info = p.call, self._tool_info(p.call.tool_name)
                if d.approved and d.edited_arguments is not None:
                    validate_arguments(info, d.edited_arguments)
                    call.arguments = d.edited_arguments
                if d.approved and info is None:
                    call.state, call.is_error = ToolCallState.FAILED, True
                    call.result_text = "the tool is no longer available"
                elif d.approved:
                    call.state = ToolCallState.APPROVED
                else:
                    call.state = ToolCallState.DENIED
                    call.result_text = f"Reason given: {d.reason}" if d.reason else ""
                if not await calls.decide(p.message_id, call, approved=d.approved):
                    raise already_decided(call.id)
                if call.state is ToolCallState.APPROVED and info is not None:
                    approved.append((call, info))
                decided.append(call)
            if req.request_id and not await IdempotencyRepository(tx, req.user_id, ttl).put(
                RESOLVE_SCOPE, req.request_id, message_id
            ):
                raise turn_in_progress()
        history_limit = memory_window(
            0, session.memory_limit, self._config.memory_default, self._config.memory_max
        )
        run = TurnRun(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=turn_id,
            model=model,
            targets=targets,
            tools=offered_tools(self._tools, session.tool_names, session.tools_disabled),
            request=ProviderRequest(
                model=model,
                messages=(),
                system_prompt=session.system_prompt or self._config.default_system_prompt,
            ),
            message=round_msg,
            started=time.monotonic(),
            deadline=req.deadline,
            user_message=user_msg,
            answers=[round_msg.name],
        )
        remaining = list(pending.values())
        async with self._lifecycle.driving(run):
            async for event in self._resume(run, decided, approved, remaining, history_limit):
                yield event

    async def _resume(
        self,
        run: TurnRun,
        decided: list[ToolCall],
        approved: list[tuple[ToolCall, ToolInfo]],
        remaining: list[PendingCall],
        history_limit: int,
    ) -> AsyncGenerator[TurnEvent, None]:
        assert run.user_message is not None
        yield TurnStarted(
            user_message=run.user_message, answer_name=run.message.name, model=run.model
        )
        for call in decided:
            if call.state is not ToolCallState.APPROVED:
                yield ToolCallUpdate(call)
        async for event in self._rounds.run_tools(run, approved):
            yield event
        if remaining:
            async for event in self._rounds.await_approval(run, [p.call for p in remaining]):
                yield event
            return
        async with self._db.transaction() as tx:
            await complete_round_message(tx, run)
            history = await MessageRepository(tx, run.user_id).recent(run.session_id, history_limit)
            run.message = await AnswerRepository(tx, run.user_id).placeholder(
                run.session_id, run.model
            )
        run.answers.append(run.message.name)
        run.request = dataclasses.replace(
            run.request, messages=tuple(to_chat_messages(history)), tools=tool_specs(run.tools)
        )
        run.rounds = 1
        run.stream = self._rounds.open_stream(run)
        async for event in self._rounds.run(run):
            yield event

    def _tool_info(self, model_name: str) -> ToolInfo | None:
        return self._tools.find(model_name) if self._tools is not None else None

    async def _expire_pending(self, user_id: str, session_id: str) -> None:
        ttl_us = int(self._config.approval_ttl_seconds * 1e6)
        async with self._db.transaction() as tx:
            calls = ToolCallRepository(tx, user_id)
            now = now_us()
            for p in await calls.pending_calls(session_id):
                if now - p.create_time_us > ttl_us:
                    p.call.state = ToolCallState.DENIED
                    p.call.result_text = "Not approved: the approval request expired."
                    await calls.decide(p.message_id, p.call, approved=False)


async def _check_known(
    calls: ToolCallRepository,
    session_id: str,
    decisions: list[Decision],
    pending: dict[str, PendingCall],
) -> None:
    """Refuse a decision on a call that is not waiting, saying why."""
    for d in decisions:
        if d.tool_call_id in pending:
            continue
        state = await calls.call_state(session_id, d.tool_call_id)
        if state is None:
            raise NotFound(
                f"tool call {d.tool_call_id[:80]!r} was not found in this session",
                reason=Reason.TOOL_CALL_NOT_FOUND,
                metadata={"tool_call_id": d.tool_call_id[:128]},
            )
        if state is ToolCallState.DENIED:
            # Expired, superseded by a new message, or denied before.
            raise FailedPrecondition(
                f"tool call {d.tool_call_id[:80]!r} is no longer waiting for approval",
                reason=Reason.TOOL_CALL_NOT_PENDING,
                metadata={"tool_call_id": d.tool_call_id[:128], "state": state.value},
            )
        raise already_decided(d.tool_call_id)
