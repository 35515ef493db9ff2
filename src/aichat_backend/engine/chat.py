"""The chat turn: context → model → tools → approval → the answer stored once per round.

No protobuf or gRPC here: the engine takes a ``TurnRequest`` (or a ``ResolveRequest``)
and yields ``TurnEvent``s. Whatever ends a turn (the model, the client going away, a
failure, shutdown), the user message and every token produced so far are stored, and
the last event says how it ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass, field
from typing import Any

from aichat_backend.domain import (
    Attachment,
    Message,
    MessageState,
    Role,
    ToolCall,
    ToolCallState,
    memory_window,
    now_us,
)
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.approvals import (
    Decision,
    already_decided,
    check_decisions,
    validate_arguments,
)
from aichat_backend.engine.context import (
    assistant_message,
    to_chat_messages,
    tool_result_message,
    with_attachments,
)
from aichat_backend.engine.events import (
    ApprovalRequired,
    ToolCallUpdate,
    TurnEnded,
    TurnEvent,
    TurnOutcome,
    TurnStarted,
)
from aichat_backend.engine.leases import Lease, LeaseKeeper
from aichat_backend.engine.loop_load import LoopLoad
from aichat_backend.engine.observer import TurnObserver
from aichat_backend.engine.round_stream import RoundStream
from aichat_backend.engine.sessions import (
    check_request_id,
    check_text,
    parse_session_name,
    title_from_message,
)
from aichat_backend.engine.tool_runner import run_calls
from aichat_backend.errors import (
    Aborted,
    AichatError,
    Cancelled,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest, ToolSpec
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.retry import RetryPolicy, StreamTarget
from aichat_backend.store.database import Database, Tx
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.sessions_repo import SessionRepository, session_not_found
from aichat_backend.store.turns_repo import PendingCall, TurnClaim, TurnRepository
from aichat_backend.store.usage_repo import add_usage
from aichat_backend.tools.base import ToolInfo, ToolProvider

log = logging.getLogger(__name__)

TURN_SCOPE = "ChatTurn"
RESOLVE_SCOPE = "ResolveToolCalls"
MAX_TEXT_CHARS = 1_000_000
NO_MORE_TOOLS = (
    "You have used the maximum number of tool rounds for this message. Answer the user now "
    "with what you have, without calling tools."
)


@dataclass(slots=True)
class TurnRequest:
    user_id: str
    session: str  # "sessions/{id}"
    text: str
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)
    model: str = ""
    temperature: float | None = None
    max_output_tokens: int = 0
    memory_limit: int = 0
    request_id: str = ""
    deadline: float | None = None  # time.monotonic() by which the caller stops listening
    received: float = field(default_factory=time.monotonic)  # when the request arrived
    # False when the caller wants the answer, not its tokens (SendMessage): the text is
    # handed over once per round instead of token by token.
    relay_text: bool = True
    turn_id: str = ""  # [resume] the turn's id when the caller named it (its event log)


@dataclass(slots=True)
class ResolveRequest:
    user_id: str
    session: str
    decisions: list[Decision]
    request_id: str = ""
    deadline: float | None = None
    turn_id: str = ""  # [resume] the turn's id when the caller named it (its event log)


@dataclass(slots=True)
class ChatConfig:
    memory_default: int = 20
    memory_max: int = 100
    default_system_prompt: str = ""
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 10
    heartbeat_seconds: float = 5.0
    # While the event loop is saturated a stream sends at most one delta this often.
    busy_flush_seconds: float = 0.05
    lease_seconds: float = 60.0
    replica_id: str = "local"
    idempotency_ttl_seconds: float = 24 * 3600
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tool_timeout_seconds: float = 30.0
    max_tool_rounds: int = 8
    approval_ttl_seconds: float = 24 * 3600


@dataclass(slots=True, eq=False)  # identity-hashed: runs live in a set
class _Run:
    """The live state of one turn (one StreamChat, or one ResolveToolCalls)."""

    user_id: str
    session_id: str
    turn_id: str
    model: str
    targets: list[StreamTarget]
    tools: dict[str, ToolInfo]
    request: ProviderRequest
    message: Message  # the answer of the current round (a stored placeholder)
    started: float
    deadline: float | None
    relay_text: bool = True
    rounds: int = 0
    stream: RoundStream | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    stop_requested: bool = False
    claimed: asyncio.Task[Any] | None = None  # the claim (and first writes), when in flight
    user_message: Message | None = None
    finalized: bool = False  # the current answer's final write has been started
    first_token_seen: bool = False
    ended: bool = False  # the last event (TurnEnded) has been given to the caller


class ChatEngine:
    def __init__(
        self,
        db: Database,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None = None,
        observer: TurnObserver | None = None,
    ) -> None:
        self._db = db
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._observer = observer or TurnObserver()
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments
        )
        self._active: set[_Run] = set()
        self._leases = LeaseKeeper(db, config.lease_seconds)
        self._load = LoopLoad()
        self._finalizers: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def catalogue(self) -> ModelCatalogue:
        return self._catalogue

    # --- shutdown ------------------------------------------------------------------

    @property
    def active_turns(self) -> int:
        return len(self._active)

    async def wait_idle(self, limit: float) -> bool:
        """Wait for running turns to end by themselves; False if some still run."""
        try:
            async with asyncio.timeout(limit):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    def stop_all(self) -> None:
        """Ask every running turn to end now (CANCELLED, partial answer stored)."""
        for run in self._active:
            run.stop_requested = True
            if run.stream is not None:
                run.stream.stop()

    async def drain_writes(self) -> None:
        """Let the final writes of cancelled turns reach the database."""
        while self._finalizers:
            await asyncio.gather(*list(self._finalizers), return_exceptions=True)
        await self._leases.close()
        self._load.close()

    # --- StreamChat / SendMessage --------------------------------------------------

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = parse_session_name(req.session, "session")
        check_request_id(req.request_id)
        check_text("text", req.text)
        if not req.text.strip() and not req.attachments:
            raise InvalidArgument("text must not be empty", reason="EMPTY_MESSAGE", field="text")
        if len(req.text) > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"text must be at most {MAX_TEXT_CHARS} characters",
                reason="MESSAGE_TOO_LONG",
                field="text",
            )
        files = attachment_rules.prepare(req.attachments, self._limits)
        if req.model:
            self._catalogue.get(req.model)

        started = await self._start_turn(req, session_id, files)
        if isinstance(started, TurnEnded):  # an idempotent replay
            yield started
            return
        run = started
        async with _Driving(self, run):
            assert run.claimed is not None and run.stream is not None
            try:
                user_msg, answer, denied = await run.claimed
            except BaseException:
                run.stream.cancel()
                raise
            # Stored: a cut-off turn's finalizer has nothing to wait for, and the task is
            # not kept alive by every held stream.
            run.claimed = None
            run.user_message, run.message = user_msg, answer
            yield TurnStarted(user_message=user_msg, answer_name=answer.name, model=run.model)
            for call in denied:
                yield ToolCallUpdate(call)
            async for event in self._rounds(run):
                yield event

    async def _start_turn(
        self, req: TurnRequest, session_id: str, files: list[Attachment]
    ) -> _Run | TurnEnded:
        """Read the context, send the model request and start storing the user's message;
        or the stored result of a request_id seen before.

        A coroutine of its own, so what only the start needs (the history's rows, the
        connection) is freed when it returns rather than held by every running stream.
        """
        replay: TurnEnded | None = None
        async with self._db.read() as tx:
            first = None
            if req.request_id:
                first = await self._keys(tx, req.user_id).get(TURN_SCOPE, req.request_id)
            if first is not None:
                replay = await self._replay(tx, req.user_id, first.resource)
            else:
                session, history = await MessageRepository(tx, req.user_id).context(
                    session_id,
                    req.memory_limit,
                    self._config.memory_default,
                    self._config.memory_max,
                )
        if replay is not None:  # yielded outside: the client may be slow to read it
            return replay

        model = req.model or session.model or self._catalogue.default_name
        targets = self._targets(model)
        tools = self._offered_tools(session.tool_names)
        text, images = with_attachments(req.text, files)
        request = ProviderRequest(
            model=model,
            messages=(
                *to_chat_messages(history),
                ChatMessage(role=ChatRole.USER, text=text, images=images),
            ),
            system_prompt=session.system_prompt or self._config.default_system_prompt,
            tools=_specs(tools),
            temperature=req.temperature,
            max_output_tokens=req.max_output_tokens or None,
        )
        answer_id = new_message_id()
        run = _Run(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=req.turn_id or uuid.uuid4().hex,  # [resume]
            model=model,
            targets=targets,
            tools=tools,
            request=request,
            message=Message(session_id=session_id, id=answer_id, seq=0, role=Role.ASSISTANT),
            started=req.received,
            deadline=req.deadline,
            relay_text=req.relay_text,
        )
        # The upstream request leaves now; the user's message is stored meanwhile, and
        # nothing reaches the client before that store has committed.
        run.stream = self._round_stream(run)
        pending = any(
            c.state is ToolCallState.PENDING_APPROVAL for m in history for c in m.tool_calls
        )
        run.claimed = asyncio.create_task(self._begin(run, req, files, answer_id, pending))
        return run

    async def _begin(
        self,
        run: _Run,
        req: TurnRequest,
        files: list[Attachment],
        answer_id: str,
        pending_calls: bool,
    ) -> tuple[Message, Message, list[ToolCall]]:
        title = title_from_message(req.text) or (files[0].filename if files else "")
        # The common turn (no files, no request id, nothing waiting) is one statement on
        # PostgreSQL (TurnRepository.begin), sent without BEGIN and COMMIT.
        one_statement = not files and not req.request_id and not pending_calls
        unit = self._db.statement() if one_statement else self._db.transaction()
        async with unit as tx:
            if req.request_id and not await self._keys(tx, req.user_id).put(
                TURN_SCOPE, req.request_id, answer_id
            ):
                raise _turn_in_progress()
            turns = TurnRepository(tx, req.user_id)
            user_msg, answer = await turns.begin(
                run.session_id, self._claim(run), req.text, files, run.model, title, answer_id
            )
            # A new message answers any question still open: the waiting calls are denied.
            # Waiting calls belong to the session's last message, which the history read
            # always includes, so most turns skip this statement.
            denied: list[ToolCall] = []
            if pending_calls:
                denied = await turns.deny_all_pending(
                    run.session_id, "Not approved: the user sent a new message."
                )
        return user_msg, answer, denied

    # --- ResolveToolCalls ----------------------------------------------------------

    async def resolve(self, req: ResolveRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = parse_session_name(req.session, "session")
        check_request_id(req.request_id)
        check_decisions(req.decisions)
        if req.request_id:
            replay: TurnEnded | None = None
            async with self._db.read() as tx:
                first = await self._keys(tx, req.user_id).get(RESOLVE_SCOPE, req.request_id)
                if first is not None:
                    replay = await self._replay(tx, req.user_id, first.resource)
            if replay is not None:  # yielded outside: the client may be slow to read it
                yield replay
                return
        await self._expire_pending(req.user_id, session_id)
        turn_id = req.turn_id or uuid.uuid4().hex  # [resume]
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, req.user_id)
            session = await SessionRepository(tx, req.user_id).get(session_id)
            pending = {p.call.id: p for p in await turns.pending_calls(session_id)}
            await self._check_known(tx, req.user_id, session_id, req.decisions, pending)
            message_id = next(iter(pending.values())).message_id
            messages = MessageRepository(tx, req.user_id)
            round_msg = await messages.get(session_id, message_id)
            user_msg = await messages.last_user_before(session_id, round_msg.seq) or round_msg
            model = round_msg.model or session.model or self._catalogue.default_name
            targets = self._targets(model)
            claim = TurnClaim(turn_id, self._config.replica_id, self._config.lease_seconds)
            await turns.claim(session_id, claim)
            # Running again: a crash while the approved tools run is swept like any other.
            await turns.write_message(round_msg, state=MessageState.STREAMING)
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
                if not await turns.decide(p.message_id, call, approved=d.approved):
                    raise already_decided(call.id)
                if call.state is ToolCallState.APPROVED and info is not None:
                    approved.append((call, info))
                decided.append(call)
            if req.request_id and not await self._keys(tx, req.user_id).put(
                RESOLVE_SCOPE, req.request_id, message_id
            ):
                raise _turn_in_progress()
        history_limit = memory_window(
            0, session.memory_limit, self._config.memory_default, self._config.memory_max
        )
        run = _Run(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=turn_id,
            model=model,
            targets=targets,
            tools=self._offered_tools(session.tool_names),
            request=ProviderRequest(
                model=model,
                messages=(),
                system_prompt=session.system_prompt or self._config.default_system_prompt,
            ),
            message=round_msg,
            started=time.monotonic(),
            deadline=req.deadline,
            user_message=user_msg,
        )
        remaining = list(pending.values())
        async with _Driving(self, run):
            async for event in self._resume(run, decided, approved, remaining, history_limit):
                yield event

    async def _resume(
        self,
        run: _Run,
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
        async for event in self._run_tools(run, approved):
            yield event
        if remaining:
            async for event in self._await_approval(run, [p.call for p in remaining]):
                yield event
            return
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, run.user_id)
            await self._complete_round_message(turns, run)
            history = await MessageRepository(tx, run.user_id).recent(run.session_id, history_limit)
            run.message = await turns.placeholder(run.session_id, run.model)
        run.request = dataclasses.replace(
            run.request, messages=tuple(to_chat_messages(history)), tools=_specs(run.tools)
        )
        run.rounds = 1
        run.stream = self._round_stream(run)
        async for event in self._rounds(run):
            yield event

    # --- the rounds of a turn ------------------------------------------------------

    async def _rounds(self, run: _Run) -> AsyncGenerator[TurnEvent, None]:
        while True:
            stream = run.stream
            assert stream is not None
            while (delta := await stream.next_event()) is not None:
                yield delta
            if stream.first_token_at is not None and not run.first_token_seen:
                # The first text of the answer, in whichever round (tools may come first).
                run.first_token_seen = True
                self._observer.first_token(run.model, stream.first_token_at - run.started)
            finished = stream.finished
            if finished is not None:
                run.input_tokens += finished.input_tokens
                run.output_tokens += finished.output_tokens
                self._observer.tokens(run.model, finished.input_tokens, finished.output_tokens)
            if stream.error is not None:
                provider = stream.error.metadata.get("provider", "unknown")
                self._observer.provider_error(provider, stream.error.reason)
            error: AichatError | None = None
            if stream.stopped and not stream.done:
                stream.cancel()
                error = Unavailable(
                    "the server is shutting down; the partial answer was stored: send the "
                    "next message again (another replica will take it)",
                    reason="SERVER_SHUTTING_DOWN",
                    retry_after=1.0,
                )
                outcome = TurnOutcome.CANCELLED
            elif stream.error is not None:
                outcome, error = TurnOutcome.FAILED, stream.error
            elif finished is None:
                outcome = TurnOutcome.FAILED
                error = Internal(
                    "the model's answer ended unexpectedly", reason="PROVIDER_STREAM_INTERRUPTED"
                )
            elif stream.tool_calls and run.tools:
                async for event in self._tool_round(run, stream):
                    yield event
                if run.stream is stream:  # the round ended the turn (approval asked)
                    return
                continue
            else:
                outcome = TurnOutcome.COMPLETED
            async for event in self._end(run, outcome, error, stream):
                yield event
            return

    async def _end(
        self, run: _Run, outcome: TurnOutcome, error: AichatError | None, stream: RoundStream
    ) -> AsyncGenerator[TurnEvent, None]:
        completed = outcome is TurnOutcome.COMPLETED
        m = run.message
        m.text = stream.text
        m.state = MessageState.COMPLETE if completed else MessageState.INCOMPLETE
        m.finish_reason = (
            stream.finished.finish_reason if completed and stream.finished else outcome.value
        )
        if stream.finished is not None:
            m.input_tokens, m.output_tokens = (
                stream.finished.input_tokens,
                stream.finished.output_tokens,
            )
        m.model = run.model

        usage = _usage_of(run, stream)

        async def write() -> None:
            # One statement on PostgreSQL (TurnRepository.finish).
            async with self._db.statement() as tx:
                await TurnRepository(tx, run.user_id).finish(run.session_id, run.turn_id, m, usage)

        # Shielded: a client leaving right now must not lose the answer.
        run.finalized = True
        await self._shielded(write())
        run.ended = True
        yield TurnEnded(
            outcome=outcome,
            message=m,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            error=error,
            user_message=run.user_message,
        )

    async def _tool_round(self, run: _Run, stream: RoundStream) -> AsyncGenerator[TurnEvent, None]:
        """Store the calls, run the allowed ones, then ask approval or start the next round."""
        m = run.message
        m.text, m.model, m.finish_reason = stream.text, run.model, "tool_calls"
        if stream.finished is not None:
            m.input_tokens = stream.finished.input_tokens
            m.output_tokens = stream.finished.output_tokens
        calls: list[ToolCall] = []
        runnable: list[tuple[ToolCall, ToolInfo]] = []
        for request in stream.tool_calls:
            info = run.tools.get(request.name)
            # Model-chosen strings are cut to what their columns hold.
            call = ToolCall(
                id=(request.id or f"call_{uuid.uuid4().hex[:12]}")[:128],
                tool_name=request.name[:128],
                arguments=dict(request.arguments),
                state=ToolCallState.RUNNING,
                server=info.server if info else "",
            )
            reason = info.approval_reason() if info else None
            if info is None:
                call.state, call.is_error = ToolCallState.FAILED, True
                call.result_text = f"unknown tool {request.name!r}: it is not offered here"
            elif reason is not None:
                # Whatever the model read (tool output included), only the user approves.
                call.state, call.approval_reason = ToolCallState.PENDING_APPROVAL, reason
            else:
                runnable.append((call, info))
            calls.append(call)
        m.tool_calls = calls
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, run.user_id)
            await turns.write_message(m, state=MessageState.STREAMING)
            await turns.add_calls(run.session_id, m.id, calls)
            await _record_usage(tx, run, stream)
        for call in calls:
            if call.state is not ToolCallState.RUNNING:  # runnable ones report as they start
                yield ToolCallUpdate(call)
        async for event in self._run_tools(run, runnable):
            yield event
        pending = [c for c in calls if c.state is ToolCallState.PENDING_APPROVAL]
        if pending:
            async for event in self._await_approval(run, pending):
                yield event
            return
        await self._next_round(run, stream, calls)

    async def _run_tools(
        self, run: _Run, runnable: list[tuple[ToolCall, ToolInfo]]
    ) -> AsyncGenerator[TurnEvent, None]:
        if not runnable or self._tools is None:
            return
        for call, _ in runnable:
            call.state = ToolCallState.RUNNING
            yield ToolCallUpdate(call)
        async for event in run_calls(
            self._tools,
            runnable,
            user_id=run.user_id,
            timeout=self._tool_timeout(run),
            heartbeat=self._config.heartbeat_seconds,
            started=run.started,
            observer=self._observer,
        ):
            if isinstance(event, ToolCallUpdate):
                async with self._db.transaction() as tx:
                    await TurnRepository(tx, run.user_id).update_call(run.message.id, event.call)
            yield event

    async def _await_approval(
        self, run: _Run, pending: list[ToolCall]
    ) -> AsyncGenerator[TurnEvent, None]:
        run.finalized = True
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, run.user_id)
            await self._complete_round_message(turns, run)
            await turns.release(run.session_id, run.turn_id)
        yield ApprovalRequired(pending)
        run.ended = True
        yield TurnEnded(
            outcome=TurnOutcome.AWAITING_APPROVAL,
            message=run.message,
            input_tokens=run.input_tokens,
            output_tokens=run.output_tokens,
            user_message=run.user_message,
            pending=pending,
        )

    async def _complete_round_message(self, turns: TurnRepository, run: _Run) -> None:
        run.message.state = MessageState.COMPLETE
        await turns.write_message(run.message)

    async def _next_round(self, run: _Run, stream: RoundStream, calls: list[ToolCall]) -> None:
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, run.user_id)
            await self._complete_round_message(turns, run)
            placeholder = await turns.placeholder(run.session_id, run.model)
        run.rounds += 1
        messages = [*run.request.messages, assistant_message(stream.text, calls)]
        messages += [tool_result_message(c) for c in calls]
        tools = _specs(run.tools)
        if run.rounds >= self._config.max_tool_rounds:
            tools = ()
            messages.append(ChatMessage(role=ChatRole.USER, text=NO_MORE_TOOLS))
        run.request = dataclasses.replace(run.request, messages=tuple(messages), tools=tools)
        run.message = placeholder
        run.stream = self._round_stream(run)

    # --- helpers -------------------------------------------------------------------

    def _round_stream(self, run: _Run) -> RoundStream:
        return RoundStream(
            run.request,
            run.targets,
            self._config.retry,
            self._config.heartbeat_seconds,
            run.started,
            self._load,
            self._config.busy_flush_seconds,
            run.relay_text,
        )

    def _keys(self, tx: Tx, user_id: str) -> IdempotencyRepository:
        return IdempotencyRepository(tx, user_id, self._config.idempotency_ttl_seconds)

    def _claim(self, run: _Run) -> TurnClaim:
        return TurnClaim(run.turn_id, self._config.replica_id, self._config.lease_seconds)

    def _targets(self, model: str) -> list[StreamTarget]:
        targets = self._catalogue.stream_targets(model)
        if not any(self._catalogue.is_configured(t.label) for t in targets):
            self._catalogue.provider_for(model)  # raises PROVIDER_NOT_CONFIGURED
        return targets

    def _offered_tools(self, names: list[str]) -> dict[str, ToolInfo]:
        if self._tools is None:
            return {}
        tools = self._tools.tools()
        if names:
            wanted = set(names)
            tools = [t for t in tools if t.model_name in wanted or t.resource_name in wanted]
        return {t.model_name: t for t in tools}

    def _tool_info(self, model_name: str) -> ToolInfo | None:
        return self._tools.find(model_name) if self._tools is not None else None

    def _tool_timeout(self, run: _Run) -> float:
        timeout = self._config.tool_timeout_seconds
        if run.deadline is not None:
            # Never past the caller's deadline: leave a moment to report the result.
            timeout = min(timeout, max(0.1, run.deadline - time.monotonic() - 0.2))
        return timeout

    async def _expire_pending(self, user_id: str, session_id: str) -> None:
        ttl_us = int(self._config.approval_ttl_seconds * 1e6)
        async with self._db.transaction() as tx:
            turns = TurnRepository(tx, user_id)
            now = now_us()
            for p in await turns.pending_calls(session_id):
                if now - p.create_time_us > ttl_us:
                    p.call.state = ToolCallState.DENIED
                    p.call.result_text = "Not approved: the approval request expired."
                    await turns.decide(p.message_id, p.call, approved=False)

    async def _check_known(
        self,
        tx: Tx,
        user_id: str,
        session_id: str,
        decisions: list[Decision],
        pending: dict[str, PendingCall],
    ) -> None:
        for d in decisions:
            if d.tool_call_id in pending:
                continue
            state = await TurnRepository(tx, user_id).call_state(session_id, d.tool_call_id)
            if state is None:
                raise NotFound(
                    f"tool call {d.tool_call_id[:80]!r} was not found in this session",
                    reason="TOOL_CALL_NOT_FOUND",
                    metadata={"tool_call_id": d.tool_call_id[:128]},
                )
            if state is ToolCallState.DENIED:
                # Expired, superseded by a new message, or denied before.
                raise FailedPrecondition(
                    f"tool call {d.tool_call_id[:80]!r} is no longer waiting for approval",
                    reason="TOOL_CALL_NOT_PENDING",
                    metadata={"tool_call_id": d.tool_call_id[:128], "state": state.value},
                )
            raise already_decided(d.tool_call_id)

    async def _shielded(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        await asyncio.shield(task)

    def _finalize_in_background(self, run: _Run, reason: str = "cancelled") -> None:
        """Store what a turn had when it was cut off, and free its session."""
        stream = run.stream
        if stream is not None:
            stream.cancel()
        text = stream.text if stream is not None else ""
        finished = stream.finished if stream is not None else None

        async def finalize() -> None:
            if run.claimed is not None:
                try:
                    await run.claimed
                except BaseException:
                    return  # nothing was stored, so there is nothing to finish
            m = run.message
            async with self._db.transaction() as tx:
                turns = TurnRepository(tx, run.user_id)
                if not run.finalized:
                    m.text, m.state, m.finish_reason = text, MessageState.INCOMPLETE, reason
                    if finished is not None:
                        m.input_tokens = finished.input_tokens
                        m.output_tokens = finished.output_tokens
                    m.model = m.model or run.model
                    await turns.write_message(m)
                await turns.fail_unfinished_calls(m.id, f"the turn was {reason} while the tool ran")
                await turns.release(run.session_id, run.turn_id)

        task = asyncio.create_task(finalize())
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        task.add_done_callback(_log_failure)
        # [resume] once stored (or not), the turn's event log writes its last event.
        task.add_done_callback(
            lambda _: self._observer.turn_cut_off(run.turn_id, run.message, reason)
        )

    async def _replay(self, tx: Tx, user_id: str, answer_id: str) -> TurnEnded:
        user_msg, answer = await TurnRepository(tx, user_id).turn_result(answer_id)
        if answer is None:
            raise session_not_found("(deleted)")
        if answer.state is MessageState.STREAMING:
            raise _turn_in_progress()
        error: AichatError | None = None
        pending = [c for c in answer.tool_calls if c.state is ToolCallState.PENDING_APPROVAL]
        if pending:
            outcome = TurnOutcome.AWAITING_APPROVAL
        elif answer.state is MessageState.COMPLETE:
            outcome = TurnOutcome.COMPLETED
        elif answer.finish_reason == TurnOutcome.CANCELLED.value:
            outcome = TurnOutcome.CANCELLED
            error = Cancelled("this request's turn was cancelled", reason="TURN_CANCELLED")
        else:
            outcome = TurnOutcome.FAILED
            error = Aborted(
                "this request's turn failed earlier; send the message again with a new request_id",
                reason="TURN_FAILED",
            )
        return TurnEnded(
            outcome=outcome,
            message=answer,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            error=error,
            user_message=user_msg,
            pending=pending,
        )


class _Driving:
    """The bookkeeping every running turn needs, whatever ends it.

    Entered around a turn's events: the turn counts as active and its lease is renewed.
    If the events stop before the last one (the client went away, its deadline passed,
    an error), the upstream call is closed and what the turn had is stored in the
    background, and its session freed. A class rather than a generator layer around the
    events: each message of every held stream would pass through that layer.
    """

    __slots__ = ("_engine", "_lease", "_run")

    def __init__(self, engine: ChatEngine, run: _Run) -> None:
        self._engine = engine
        self._run = run
        self._lease: Lease | None = None

    async def __aenter__(self) -> None:
        engine, run = self._engine, self._run
        engine._active.add(run)
        engine._idle.clear()
        engine._load.hold()
        self._lease = engine._leases.hold(run.user_id, run.session_id, run.turn_id)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        engine, run = self._engine, self._run
        try:
            if kind is not None and not run.ended:
                cut_off = issubclass(kind, asyncio.CancelledError | GeneratorExit)
                engine._finalize_in_background(run, "cancelled" if cut_off else "error")
        finally:
            if run.stream is not None:
                run.stream.cancel()
            if self._lease is not None:
                engine._leases.drop(self._lease)
            engine._load.release()
            engine._active.discard(run)
            if not engine._active:
                engine._idle.set()


def _usage_of(run: _Run, stream: RoundStream) -> tuple[str, int, int] | None:
    """(model, input tokens, output tokens) of a model call that reported any."""
    finished = stream.finished
    if finished is None or not (finished.input_tokens or finished.output_tokens):
        return None
    return run.model, finished.input_tokens, finished.output_tokens


async def _record_usage(tx: Tx, run: _Run, stream: RoundStream) -> None:
    usage = _usage_of(run, stream)
    if usage is not None:
        await add_usage(tx, run.user_id, *usage)


def _specs(tools: dict[str, ToolInfo]) -> tuple[ToolSpec, ...]:
    return tuple(
        ToolSpec(name=t.model_name, description=t.description, input_schema=t.input_schema)
        for t in tools.values()
    )


def _turn_in_progress() -> Aborted:
    return Aborted(
        "a turn with this request_id is still running", reason="TURN_IN_PROGRESS", retry_after=1.0
    )


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "could not store a cut-off turn's partial answer: %s", type(task.exception()).__name__
        )
