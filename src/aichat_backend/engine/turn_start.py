"""Starting a StreamChat / SendMessage turn: checks, context, the first write, replays.

The path to the first token is kept short: the history is read, the upstream request
leaves, and the user's message is stored meanwhile (``TurnStore.begin_turn``); nothing
reaches the client before that store has committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

from aichat_backend.domain import Attachment, Message, Role, ToolCallState
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.context import to_chat_messages, with_attachments
from aichat_backend.engine.events import ToolCallUpdate, TurnEnded, TurnEvent, TurnStarted
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.pdf_extractor import PdfExtractor
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import (
    ChatConfig,
    TurnRequest,
    check_reasoning_options,
    check_turn_request,
)
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.sessions import title_from_message
from aichat_backend.engine.turn_run import TurnRun, offered_tools, stream_targets, tool_specs
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.records import (
    TURN_SCOPE,
    BegunTurn,
    HistoryWindow,
    NewTurn,
    TurnClaim,
    TurnContext,
)
from aichat_backend.tools.base import ToolProvider

DENIED_BY_NEW_MESSAGE = "Not approved: the user sent a new message."


class TurnStarter:
    def __init__(
        self,
        store: TurnStore,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None,
        lifecycle: TurnLifecycle,
        rounds: TurnRounds,
        pdf: PdfExtractor,
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._lifecycle = lifecycle
        self._rounds = rounds
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments, pdf
        )

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = check_turn_request(req)
        files = await attachment_rules.prepare(req.attachments, self._limits, req.user_id)
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
                begun: BegunTurn = await run.claimed
            except BaseException:
                run.stream.cancel()
                raise
            # Stored: a cut-off turn's finalizer has nothing to wait for, and the task is
            # not kept alive by every held stream.
            run.claimed = None
            run.user_message, run.message = begun.user_message, begun.answer
            run.answers.append(begun.answer.name)
            yield TurnStarted(begun.user_message, begun.answer.name, run.model)
            for call in begun.denied:
                yield ToolCallUpdate(call)
            async for event in self._rounds.run(run):
                yield event

    async def _start_turn(
        self, req: TurnRequest, session_id: str, files: list[Attachment]
    ) -> TurnRun | TurnEnded:
        """Read the context, send the model request and start storing the user's message;
        or the stored result of a request_id seen before.

        A coroutine of its own, so what only the start needs (the history) is freed when
        it returns rather than held by every running stream.
        """
        if req.request_id:
            stored = await self._store.find_replay(req.user_id, TURN_SCOPE, req.request_id)
            if stored is not None:
                return replay(stored)
        window = HistoryWindow(
            req.memory_limit, self._config.memory_default, self._config.memory_max
        )
        context = await self._store.load_context(req.user_id, session_id, window)
        run = self._new_run(req, session_id, context, files)
        # The upstream request leaves now; the user's message is stored meanwhile, and
        # nothing reaches the client before that store has committed.
        run.stream = self._rounds.open_stream(run)
        waiting = any(
            c.state is ToolCallState.PENDING_APPROVAL for m in context.history for c in m.tool_calls
        )
        new_turn = NewTurn(
            session_id=session_id,
            claim=TurnClaim(run.turn_id, self._config.replica_id, self._config.lease_seconds),
            text=req.text,
            attachments=files,
            model=run.model,
            title=title_from_message(req.text) or (files[0].filename if files else ""),
            answer_id=run.message.id,
            request_id=req.request_id,
            # A new message answers any question still open: the waiting calls are denied.
            # They belong to the session's last message, which the history always holds.
            deny_pending=DENIED_BY_NEW_MESSAGE if waiting else None,
        )
        run.claimed = asyncio.create_task(self._store.begin_turn(req.user_id, new_turn))
        return run

    def _new_run(
        self, req: TurnRequest, session_id: str, context: TurnContext, files: list[Attachment]
    ) -> TurnRun:
        session = context.session
        model = req.model or session.model or self._catalogue.default_name
        check_reasoning_options(req, self._catalogue.get(model))
        tools = offered_tools(self._tools, session.tool_names)
        text, images = with_attachments(req.text, files)
        request = ProviderRequest(
            model=model,
            messages=(
                *to_chat_messages(context.history),
                ChatMessage(role=ChatRole.USER, text=text, images=images),
            ),
            system_prompt=session.system_prompt or self._config.default_system_prompt,
            tools=tool_specs(tools),
            temperature=req.temperature,
            max_output_tokens=req.max_output_tokens or None,
            reasoning_effort=req.reasoning_effort,
            thinking_budget_tokens=req.thinking_budget_tokens,
        )
        answer_id = uuid.uuid4().hex
        return TurnRun(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=req.turn_id or uuid.uuid4().hex,
            model=model,
            targets=stream_targets(self._catalogue, model),
            tools=tools,
            request=request,
            message=Message(session_id=session_id, id=answer_id, seq=0, role=Role.ASSISTANT),
            started=req.received,
            deadline=req.deadline,
            relay_text=req.relay_text,
        )
