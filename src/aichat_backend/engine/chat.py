"""The chat turn: context → provider stream → events → the answer stored once.

No protobuf or gRPC here: the engine takes a ``TurnRequest`` and yields ``TurnEvent``s.
Whatever ends the turn (the model, the client going away, a failure, shutdown), the user
message and every token produced so far are stored, and the last event says how it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from aichat_backend.domain import Attachment, Message, MessageState
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.context import memory_window, to_chat_messages, with_attachments
from aichat_backend.engine.events import (
    Heartbeat,
    TextDelta,
    TurnEnded,
    TurnEvent,
    TurnOutcome,
    TurnStarted,
)
from aichat_backend.engine.sessions import check_request_id, parse_session_name, title_from_message
from aichat_backend.errors import (
    Aborted,
    AichatError,
    Cancelled,
    Internal,
    InvalidArgument,
    Unavailable,
)
from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ProviderRequest,
    StreamFinished,
    TextChunk,
    ToolCallRequest,
    ToolCallsReady,
)
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.retry import RetryPolicy, StreamTarget, open_stream_with_retry
from aichat_backend.store.database import Database
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.sessions_repo import SessionRepository, session_not_found
from aichat_backend.store.turns_repo import TurnClaim, TurnRepository

log = logging.getLogger(__name__)

TURN_SCOPE = "ChatTurn"
MAX_TEXT_CHARS = 1_000_000


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


@dataclass(slots=True)
class ChatConfig:
    memory_default: int = 20
    memory_max: int = 100
    default_system_prompt: str = ""
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments: int = 10
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 60.0
    replica_id: str = "local"
    idempotency_ttl_seconds: float = 24 * 3600
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class _Turn:
    """The live state of one running turn, shared by its relay and its producer."""

    __slots__ = (
        "answer_id",
        "done",
        "error",
        "finished",
        "pending",
        "ready",
        "stop_requested",
        "tool_calls",
    )

    def __init__(self, answer_id: str) -> None:
        self.answer_id = answer_id
        self.pending: list[str] = []
        self.ready = asyncio.Event()
        self.done = False
        self.stop_requested = False
        self.error: AichatError | None = None
        self.finished: StreamFinished | None = None
        self.tool_calls: tuple[ToolCallRequest, ...] = ()


class ChatEngine:
    def __init__(self, db: Database, catalogue: ModelCatalogue, config: ChatConfig) -> None:
        self._db = db
        self._catalogue = catalogue
        self._config = config
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments
        )
        self._active: set[_Turn] = set()
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
        for turn in self._active:
            turn.stop_requested = True
            turn.ready.set()

    async def drain_writes(self) -> None:
        """Let the final writes of cancelled turns reach the database."""
        while self._finalizers:
            await asyncio.gather(*list(self._finalizers), return_exceptions=True)

    # --- the turn ------------------------------------------------------------------

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = parse_session_name(req.session, "session")
        check_request_id(req.request_id)
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

        async with self._db.transaction() as tx:
            if req.request_id:
                first = await IdempotencyRepository(
                    tx, req.user_id, self._config.idempotency_ttl_seconds
                ).get(TURN_SCOPE, req.request_id)
                if first is not None:
                    yield await self._replay(tx, req.user_id, first.resource)
                    return
            session = await SessionRepository(tx, req.user_id).get(session_id)
            window = memory_window(
                req.memory_limit,
                session.memory_limit,
                self._config.memory_default,
                self._config.memory_max,
            )
            history = await MessageRepository(tx, req.user_id).recent(session_id, window)

        model_name = req.model or session.model or self._catalogue.default_name
        targets = self._catalogue.stream_targets(model_name)
        if not any(self._catalogue.is_configured(t.label) for t in targets):
            self._catalogue.provider_for(model_name)  # raises PROVIDER_NOT_CONFIGURED
        current_text, images = with_attachments(req.text, files)
        request = ProviderRequest(
            model=model_name,
            messages=(
                *to_chat_messages(history),
                ChatMessage(role=ChatRole.USER, text=current_text, images=images),
            ),
            system_prompt=session.system_prompt or self._config.default_system_prompt,
            temperature=req.temperature,
            max_output_tokens=req.max_output_tokens or None,
        )

        turn = _Turn(new_message_id())
        started = time.monotonic()
        # The upstream request leaves now; the user's message is stored meanwhile, and
        # nothing reaches the client before that store has committed.
        producer = asyncio.create_task(self._produce(turn, request, targets))
        begin = asyncio.create_task(
            self._begin(req, session_id, turn.answer_id, model_name, req.text, files)
        )
        self._active.add(turn)
        self._idle.clear()
        renewer: asyncio.Task[None] | None = None
        text_parts: list[str] = []
        outcome: TurnOutcome | None = None
        try:
            try:
                user_msg, answer = await begin
            except BaseException:
                producer.cancel()
                raise
            renewer = asyncio.create_task(self._renew(req.user_id, session_id, turn.answer_id))
            yield TurnStarted(user_message=user_msg, answer_name=answer.name, model=model_name)

            heartbeat = self._config.heartbeat_seconds
            while True:
                if not turn.pending and not turn.done and not turn.stop_requested:
                    try:
                        async with asyncio.timeout(heartbeat):
                            await turn.ready.wait()
                    except TimeoutError:
                        yield Heartbeat(time.monotonic() - started)
                        continue
                turn.ready.clear()
                if turn.pending:
                    # Whatever piled up while the client was busy goes as one event.
                    chunk = "".join(turn.pending)
                    turn.pending.clear()
                    text_parts.append(chunk)
                    yield TextDelta(chunk)
                    continue
                if turn.stop_requested or turn.done:
                    break

            error: AichatError | None
            if turn.stop_requested and not turn.done:
                producer.cancel()
                outcome, error = (
                    TurnOutcome.CANCELLED,
                    Unavailable(
                        "the server is shutting down; the partial answer was stored: send "
                        "the next message again (another replica will take it)",
                        reason="SERVER_SHUTTING_DOWN",
                        retry_after=1.0,
                    ),
                )
            elif turn.error is not None:
                outcome, error = TurnOutcome.FAILED, turn.error
            elif turn.finished is None:
                outcome, error = (
                    TurnOutcome.FAILED,
                    Internal(
                        "the model's answer ended unexpectedly",
                        reason="PROVIDER_STREAM_INTERRUPTED",
                    ),
                )
            else:
                outcome, error = TurnOutcome.COMPLETED, None
            finished = turn.finished or StreamFinished(finish_reason="")
            completed = outcome is TurnOutcome.COMPLETED
            state = MessageState.COMPLETE if completed else MessageState.INCOMPLETE
            reason = finished.finish_reason if outcome is TurnOutcome.COMPLETED else outcome.value
            stored = await self._finish_shielded(
                begin,
                req.user_id,
                session_id,
                turn.answer_id,
                "".join(text_parts),
                state,
                reason,
                finished,
                model_name,
            )
            answer.text, answer.state, answer.finish_reason = "".join(text_parts), state, reason
            answer.input_tokens = finished.input_tokens
            answer.output_tokens = finished.output_tokens
            if not stored:
                raise Internal("the answer could not be stored", reason="ANSWER_NOT_STORED")
            yield TurnEnded(
                outcome=outcome,
                message=answer,
                input_tokens=finished.input_tokens,
                output_tokens=finished.output_tokens,
                error=error,
                user_message=user_msg,
            )
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away or its deadline passed: close upstream now, keep
            # every token produced so far.
            producer.cancel()
            if outcome is None:
                self._finish_in_background(
                    begin,
                    req.user_id,
                    session_id,
                    turn.answer_id,
                    "".join(text_parts),
                    turn.finished,
                    model_name,
                )
            raise
        finally:
            producer.cancel()
            if renewer is not None:
                renewer.cancel()
            self._active.discard(turn)
            if not self._active:
                self._idle.set()

    # --- helpers -------------------------------------------------------------------

    async def _produce(
        self, turn: _Turn, request: ProviderRequest, targets: Sequence[StreamTarget]
    ) -> None:
        try:
            policy = self._config.retry
            async with open_stream_with_retry(request, targets, policy=policy) as events:
                async for event in events:
                    if isinstance(event, TextChunk):
                        if event.text:
                            turn.pending.append(event.text)
                            turn.ready.set()
                    elif isinstance(event, ToolCallsReady):
                        turn.tool_calls = event.calls
                    elif isinstance(event, StreamFinished):
                        turn.finished = event
        except AichatError as exc:
            turn.error = exc
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("provider stream failed unexpectedly")
            turn.error = Internal("the model call failed unexpectedly", reason="PROVIDER_FAILED")
        finally:
            turn.done = True
            turn.ready.set()

    async def _begin(
        self,
        req: TurnRequest,
        session_id: str,
        answer_id: str,
        model: str,
        text: str,
        files: list[Attachment],
    ) -> tuple[Message, Message]:
        title = title_from_message(text) or (files[0].filename if files else "")
        async with self._db.transaction() as tx:
            if req.request_id and not await IdempotencyRepository(
                tx, req.user_id, self._config.idempotency_ttl_seconds
            ).put(TURN_SCOPE, req.request_id, answer_id):
                raise _turn_in_progress()
            return await TurnRepository(tx, req.user_id).begin(
                session_id,
                TurnClaim(answer_id, self._config.replica_id, self._config.lease_seconds),
                text,
                files,
                model,
                title,
            )

    async def _renew(self, user_id: str, session_id: str, answer_id: str) -> None:
        lease = self._config.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with self._db.transaction() as tx:
                    await TurnRepository(tx, user_id).renew(session_id, answer_id, lease)
            except AichatError:
                log.warning("could not renew the turn's lease")

    async def _finish(
        self,
        begin: asyncio.Task[tuple[Message, Message]],
        user_id: str,
        session_id: str,
        answer_id: str,
        text: str,
        state: MessageState,
        reason: str,
        finished: StreamFinished | None,
        model: str,
    ) -> None:
        try:
            await begin
        except BaseException:
            return  # nothing was stored, so there is nothing to finish
        async with self._db.transaction() as tx:
            await TurnRepository(tx, user_id).finish(
                session_id,
                answer_id,
                text=text,
                state=state,
                finish_reason=reason,
                input_tokens=finished.input_tokens if finished else 0,
                output_tokens=finished.output_tokens if finished else 0,
                model=model,
            )

    async def _finish_shielded(self, *args, **kwargs) -> bool:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(self._finish(*args, **kwargs))
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        try:
            await asyncio.shield(task)
        except AichatError:
            log.error("could not store the answer")
            return False
        return True

    def _finish_in_background(
        self,
        begin: asyncio.Task[tuple[Message, Message]],
        user_id: str,
        session_id: str,
        answer_id: str,
        text: str,
        finished: StreamFinished | None,
        model: str,
    ) -> None:
        task = asyncio.create_task(
            self._finish(
                begin,
                user_id,
                session_id,
                answer_id,
                text,
                MessageState.INCOMPLETE,
                TurnOutcome.CANCELLED.value,
                finished,
                model,
            )
        )
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)
        task.add_done_callback(_log_failure)

    async def _replay(self, tx: AsyncSession, user_id: str, answer_id: str) -> TurnEnded:
        user_msg, answer = await TurnRepository(tx, user_id).answer(answer_id)
        if answer is None:
            raise session_not_found("(deleted)")
        if answer.state is MessageState.STREAMING:
            raise _turn_in_progress()
        error: AichatError | None
        if answer.state is MessageState.COMPLETE:
            outcome, error = TurnOutcome.COMPLETED, None
        elif answer.finish_reason == TurnOutcome.CANCELLED.value:
            outcome, error = (
                TurnOutcome.CANCELLED,
                Cancelled("this request's turn was cancelled", reason="TURN_CANCELLED"),
            )
        else:
            outcome, error = (
                TurnOutcome.FAILED,
                Aborted(
                    "this request's turn failed earlier; send the message again with a new "
                    "request_id",
                    reason="TURN_FAILED",
                ),
            )
        return TurnEnded(
            outcome=outcome,
            message=answer,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            error=error,
            user_message=user_msg,
        )


def _turn_in_progress() -> Aborted:
    return Aborted(
        "a turn with this request_id is still running", reason="TURN_IN_PROGRESS", retry_after=1.0
    )


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "could not store a cancelled turn's partial answer: %s", type(task.exception()).__name__
        )
