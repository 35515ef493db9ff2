"""Starting a StreamChat / SendMessage turn: checks, context, the first write, replays.

The path to the first token is kept short: the history is read, the upstream request
leaves, and the user's message is stored meanwhile (one statement on PostgreSQL for the
common turn); nothing reaches the client before that store has committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

from aichat_backend import names
from aichat_backend.domain import Attachment, Message, Role, ToolCall, ToolCallState
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.context import to_chat_messages, with_attachments
from aichat_backend.engine.events import ToolCallUpdate, TurnEnded, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.pdf_extractor import PdfExtractor
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import MAX_TEXT_CHARS, TURN_SCOPE, ChatConfig, TurnRequest
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.sessions import check_request_id, check_text, title_from_message
from aichat_backend.engine.turn_run import (
    TurnRun,
    offered_tools,
    stream_targets,
    tool_specs,
    turn_in_progress,
)
from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason
from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.database import Database, Tx
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.tool_calls_repo import ToolCallRepository
from aichat_backend.store.turn_leases import TurnClaim
from aichat_backend.tools.base import ToolProvider


class TurnStarter:
    def __init__(
        self,
        db: Database,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None,
        lifecycle: TurnLifecycle,
        rounds: TurnRounds,
        pdf: PdfExtractor,
    ) -> None:
        self._db = db
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._lifecycle = lifecycle
        self._rounds = rounds
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments, pdf
        )

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = names.parse_session(req.session, "session")
        check_request_id(req.request_id)
        check_text("text", req.text)
        if not req.text.strip() and not req.attachments:
            raise InvalidArgument(
                "text must not be empty", reason=Reason.EMPTY_MESSAGE, field="text"
            )
        if len(req.text) > MAX_TEXT_CHARS:
            raise InvalidArgument(
                f"text must be at most {MAX_TEXT_CHARS} characters",
                reason=Reason.MESSAGE_TOO_LONG,
                field="text",
            )
        files = await attachment_rules.prepare(req.attachments, self._limits)
        if req.model:
            self._catalogue.get(req.model)

        started = await self._start_turn(req, session_id, files)
        if isinstance(started, TurnEnded):  # an idempotent replay
            yield started
            return
        run = started
        async with self._lifecycle.driving(run):
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
            run.answers.append(answer.name)
            yield TurnStarted(user_message=user_msg, answer_name=answer.name, model=run.model)
            for call in denied:
                yield ToolCallUpdate(call)
            async for event in self._rounds.run(run):
                yield event

    def _keys(self, tx: Tx, user_id: str) -> IdempotencyRepository:
        return IdempotencyRepository(tx, user_id, self._config.idempotency_ttl_seconds)

    async def _start_turn(
        self, req: TurnRequest, session_id: str, files: list[Attachment]
    ) -> TurnRun | TurnEnded:
        """Read the context, send the model request and start storing the user's message;
        or the stored result of a request_id seen before.

        A coroutine of its own, so what only the start needs (the history's rows, the
        connection) is freed when it returns rather than held by every running stream.
        """
        first_result: TurnEnded | None = None
        async with self._db.read() as tx:
            first = None
            if req.request_id:
                first = await self._keys(tx, req.user_id).get(TURN_SCOPE, req.request_id)
            if first is not None:
                first_result = await replay(tx, req.user_id, first.resource)
            else:
                session, history = await MessageRepository(tx, req.user_id).context(
                    session_id,
                    req.memory_limit,
                    self._config.memory_default,
                    self._config.memory_max,
                )
        if first_result is not None:  # yielded outside: the client may be slow to read it
            return first_result

        model = req.model or session.model or self._catalogue.default_name
        targets = stream_targets(self._catalogue, model)
        tools = offered_tools(self._tools, session.tool_names, session.tools_disabled)
        text, images = with_attachments(req.text, files)
        request = ProviderRequest(
            model=model,
            messages=(
                *to_chat_messages(history),
                ChatMessage(role=ChatRole.USER, text=text, images=images),
            ),
            system_prompt=session.system_prompt or self._config.default_system_prompt,
            tools=tool_specs(tools),
            temperature=req.temperature,
            max_output_tokens=req.max_output_tokens or None,
        )
        answer_id = new_message_id()
        run = TurnRun(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=req.turn_id or uuid.uuid4().hex,
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
        run.stream = self._rounds.open_stream(run)
        pending = any(
            c.state is ToolCallState.PENDING_APPROVAL for m in history for c in m.tool_calls
        )
        run.claimed = asyncio.create_task(self._begin(run, req, files, answer_id, pending))
        return run

    async def _begin(
        self,
        run: TurnRun,
        req: TurnRequest,
        files: list[Attachment],
        answer_id: str,
        pending_calls: bool,
    ) -> tuple[Message, Message, list[ToolCall]]:
        title = title_from_message(req.text) or (files[0].filename if files else "")
        # The common turn (no files, no request id, nothing waiting) is one statement on
        # PostgreSQL (AnswerRepository.begin), sent without BEGIN and COMMIT.
        one_statement = not files and not req.request_id and not pending_calls
        unit = self._db.statement() if one_statement else self._db.transaction()
        async with unit as tx:
            if req.request_id and not await self._keys(tx, req.user_id).put(
                TURN_SCOPE, req.request_id, answer_id
            ):
                raise turn_in_progress()
            claim = TurnClaim(run.turn_id, self._config.replica_id, self._config.lease_seconds)
            user_msg, answer = await AnswerRepository(tx, req.user_id).begin(
                run.session_id, claim, req.text, files, run.model, title, answer_id
            )
            # A new message answers any question still open: the waiting calls are denied.
            # Waiting calls belong to the session's last message, which the history read
            # always includes, so most turns skip this statement.
            denied: list[ToolCall] = []
            if pending_calls:
                denied = await ToolCallRepository(tx, req.user_id).deny_all_pending(
                    run.session_id, "Not approved: the user sent a new message."
                )
        return user_msg, answer, denied
