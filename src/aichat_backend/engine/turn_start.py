"""Starting a StreamChat / SendMessage turn: checks, context, the first write, replays.

The path to the first token is kept short: the history is read, the upstream request
leaves, and the user's message is stored meanwhile (``TurnStore.begin_turn``); nothing
reaches the client before that store has committed. A request with a request_id stores
first and calls the model after (one round trip more, for those requests only): the key
is taken before the upstream call, so a concurrent duplicate finds it and reads the first
turn's stream instead of calling the model again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

from aichat_backend.domain import Attachment, Message, Role, ToolCallState, memory_window
from aichat_backend.engine import attachments as attachment_rules
from aichat_backend.engine.context import with_attachments
from aichat_backend.engine.context_plan import ContextPlanner
from aichat_backend.engine.conversation import (
    Given,
    check_client_tools,
    first_user_text,
    given_messages,
    model_context,
)
from aichat_backend.engine.events import (
    ToolCallUpdate,
    TurnEnded,
    TurnEvent,
    TurnStarted,
)
from aichat_backend.engine.lifecycle import TurnLifecycle
from aichat_backend.engine.pdf_extractor import PdfExtractor
from aichat_backend.engine.replay import replay
from aichat_backend.engine.requests import (
    ChatConfig,
    TurnRequest,
    check_reasoning_options,
    check_turn_request,
    turn_fingerprint,
)
from aichat_backend.engine.rounds import TurnRounds
from aichat_backend.engine.sessions import title_from_message
from aichat_backend.engine.titles import TitleWriter, starts_conversation
from aichat_backend.engine.turn_branch import branch_point
from aichat_backend.engine.turn_run import TurnRun, offered_tools, stream_targets, tool_specs
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.errors import Aborted
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.reasons import Reason
from aichat_backend.records import (
    DENIED_BY_BRANCH,
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
        planner: ContextPlanner,
        titles: TitleWriter | None = None,
    ) -> None:
        self._planner = planner
        self._store = store
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._lifecycle = lifecycle
        self._rounds = rounds
        self._titles = titles
        self._limits = attachment_rules.AttachmentLimits(
            config.max_attachment_bytes, config.max_attachments, pdf
        )

    async def stream_turn(self, req: TurnRequest) -> AsyncGenerator[TurnEvent, None]:
        session_id = check_turn_request(req)
        files = await attachment_rules.prepare(req.attachments, self._limits, req.user_id)
        given: Given = ([], [])
        if req.conversation is not None:
            given = await given_messages(req.conversation, session_id, self._limits, req.user_id)
        if req.model:
            self._catalogue.get(req.model)
        started = await self._start_turn(req, session_id, files, given)
        if isinstance(started, TurnEnded):  # an idempotent replay
            yield started
            return
        run = started
        async with self._lifecycle.driving(run):
            assert run.claimed is not None
            try:
                begun: BegunTurn = await run.claimed
            except BaseException:
                if run.stream is not None:
                    run.stream.cancel()
                raise
            # Stored: a cut-off turn's finalizer has nothing to wait for, and the task is
            # not kept alive by every held stream.
            run.claimed = None
            run.user_message, run.message = begun.user_message, begun.answer
            run.answers.append(begun.answer.name)
            plan = run.context
            fill = None
            if plan is not None:
                fill = plan.fill(plan.whole_tokens() if plan.pending else None)
            yield TurnStarted(begun.user_message, begun.answer.name, run.model, context=fill)
            for call in begun.denied:
                yield ToolCallUpdate(call)
            if run.stream is None:  # the conversation outgrew the window: compact first
                assert plan is not None
                async for compacted in self._planner.compact(run, plan):
                    yield compacted
                run.stream = self._rounds.open_stream(run)
            elif plan is not None and plan.retain:
                self._lifecycle.spawn(self._planner.carry_on(run, plan))
            titles = self._titles if run.unnamed and starts_conversation(req, begun) else None
            async for event in self._rounds.run(run):
                if titles is not None and isinstance(event, TurnEnded):
                    # Before the last event leaves (the generator may end at that yield).
                    event.title_pending = titles.after_first_answer(req.user_id, req.text, event)
                yield event

    async def _start_turn(
        self, req: TurnRequest, session_id: str, files: list[Attachment], given: Given
    ) -> TurnRun | TurnEnded:
        """Read the context, send the model request and start storing the user's message;
        or the stored result of a request_id seen before.

        A coroutine of its own, so what only the start needs (the history) is freed when
        it returns rather than held by every running stream.
        """
        fingerprint = ""
        if req.request_id:
            fingerprint = turn_fingerprint(req, session_id)
            stored = await self._store.find_replay(req.user_id, TURN_SCOPE, req.request_id)
            if stored is not None:
                return replay(stored, fingerprint)  # or the running turn to read
        window = HistoryWindow(
            req.memory_limit, self._config.memory_default, self._config.memory_max
        )
        point = await branch_point(self._store, req, session_id, window)
        context, files = point.context, files if point.files is None else point.files
        run = self._new_run(req, session_id, context, files, given)
        run.unnamed = not context.session.display_name
        new_turn = self._new_turn(req, session_id, run, context, files, given, fingerprint)
        new_turn.parent_id, new_turn.question = point.parent_id, point.question
        if req.regenerate or req.edit_of:
            # It replaces an answer, or a question above one: what waits is superseded,
            # wherever it is in the tree (the path read shows only this branch).
            new_turn.deny_pending = DENIED_BY_BRANCH
        if req.request_id:
            # The key first, then the model: a duplicate that took it meanwhile wins, and
            # this request reads that turn (or its result) instead.
            try:
                begun = await self._store.begin_turn(req.user_id, new_turn)
            except Aborted as exc:
                if exc.reason is not Reason.TURN_IN_PROGRESS:
                    raise
                stored = await self._store.find_replay(req.user_id, TURN_SCOPE, req.request_id)
                if stored is None:
                    raise
                return replay(stored, fingerprint)
            claimed: asyncio.Future[BegunTurn] = asyncio.get_running_loop().create_future()
            claimed.set_result(begun)
            run.claimed = claimed
            if run.context is None or not run.context.pending:
                run.stream = self._rounds.open_stream(run)
            return run
        # The upstream request leaves now; the user's message is stored meanwhile, and
        # nothing reaches the client before that store has committed. (Unless the
        # conversation must be compacted first: stream_turn does that after TurnStarted.)
        if run.context is None or not run.context.pending:
            run.stream = self._rounds.open_stream(run)
        run.claimed = asyncio.create_task(self._store.begin_turn(req.user_id, new_turn))
        return run

    def _new_turn(
        self,
        req: TurnRequest,
        session_id: str,
        run: TurnRun,
        context: TurnContext,
        files: list[Attachment],
        given: Given,
        fingerprint: str,
    ) -> NewTurn:
        waiting = any(
            c.state is ToolCallState.PENDING_APPROVAL for m in context.history for c in m.tool_calls
        )
        return NewTurn(
            session_id=session_id,
            claim=TurnClaim(run.turn_id, self._config.replica_id, self._config.lease_seconds),
            text=req.text,
            attachments=files,
            model=run.model,
            title=title_from_message(first_user_text(given[0], req.text))
            or (files[0].filename if files else ""),
            answer_id=run.message.id,
            request_id=req.request_id,
            fingerprint=fingerprint,
            # A new message answers any question still open: the waiting calls are denied.
            # They belong to the session's last message, which the history always holds.
            deny_pending=DENIED_BY_NEW_MESSAGE if waiting else None,
            earlier=given[0],
            rounds=given[1],
        )

    def _new_run(
        self,
        req: TurnRequest,
        session_id: str,
        context: TurnContext,
        files: list[Attachment],
        given: Given,
    ) -> TurnRun:
        session = context.session
        model = req.model or session.model or self._catalogue.default_name
        check_reasoning_options(req, self._catalogue.get(model))
        tools = (
            offered_tools(self._tools, session.tool_names, session.tools_disabled)
            if req.offer_tools
            else {}
        )
        client_tools = req.client_tools if req.offer_tools else ()
        check_client_tools(client_tools, tools)
        text, images = with_attachments(req.text, files)
        user = ChatMessage(role=ChatRole.USER, text=text, images=images)
        system_prompt = session.system_prompt or self._config.default_system_prompt
        specs = tool_specs(tools) + client_tools
        plan = None
        if req.conversation is not None:  # the caller's whole conversation, as given
            messages = model_context(given[0], user, given[1])
        else:  # the newest messages that fit the model's window (context_plan)
            plan = self._planner.plan(
                context.history,
                system_prompt,
                specs,
                user,
                model,
                req.max_output_tokens or None,
                session.message_count,
                read_limit=memory_window(
                    req.memory_limit,
                    session.memory_limit,
                    self._config.memory_default,
                    self._config.memory_max,
                ),
            )
            messages = (*self._planner.history(plan), user)
            system_prompt = self._planner.system_prompt(plan)
        request = ProviderRequest(
            model=model,
            messages=messages,
            system_prompt=system_prompt,
            tools=specs,
            temperature=req.temperature,
            max_output_tokens=req.max_output_tokens or None,
            stop=req.stop,
            end_user=req.end_user,
            reasoning_effort=req.reasoning_effort,
            thinking_budget_tokens=req.thinking_budget_tokens,
        )
        # The turn's first answer carries the turn's id: a crash recovery finds a turn that
        # died before its event log was first stored by its answer.
        turn_id = answer_id = req.turn_id or uuid.uuid4().hex
        return TurnRun(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=turn_id,
            model=model,
            targets=stream_targets(self._catalogue, model),
            tools=tools,
            request=request,
            message=Message(session_id=session_id, id=answer_id, seq=0, role=Role.ASSISTANT),
            started=req.received,
            deadline=req.deadline,
            relay_text=req.relay_text,
            client_tools=client_tools,
            context=plan,
        )
