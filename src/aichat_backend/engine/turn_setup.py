"""What a turn will send and store, built from what was read before it starts.

A pure step between the read and the first write: the run of a new turn (its model,
tools, planned context and provider request), the ``NewTurn`` record its first write
stores, and the run a resolution resumes with its next round's request. No I/O here:
``turn_start`` and ``resolve`` do the reads and writes around it.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from aichat_backend.domain import (
    Attachment,
    Message,
    Role,
    Session,
    ToolCallState,
    memory_window,
)
from aichat_backend.engine.context import to_chat_messages, with_attachments
from aichat_backend.engine.context_budget import message_tokens
from aichat_backend.engine.context_plan import ContextPlanner
from aichat_backend.engine.conversation import (
    Given,
    check_client_tools,
    first_user_text,
    model_context,
)
from aichat_backend.engine.planned_context import ContextPlan
from aichat_backend.engine.requests import (
    ChatConfig,
    ResolveRequest,
    TurnRequest,
    check_reasoning_options,
)
from aichat_backend.engine.sessions import title_from_message
from aichat_backend.engine.turn_run import TurnRun, offered_tools, stream_targets, tool_specs
from aichat_backend.providers.base import ChatMessage, ChatRole, ProviderRequest
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.records import NewTurn, TurnClaim, TurnContext
from aichat_backend.tools.base import ToolProvider

DENIED_BY_NEW_MESSAGE = "Not approved: the user sent a new message."


class TurnSetup:
    def __init__(
        self,
        catalogue: ModelCatalogue,
        config: ChatConfig,
        tools: ToolProvider | None,
        planner: ContextPlanner,
    ) -> None:
        self._catalogue = catalogue
        self._config = config
        self._tools = tools
        self._planner = planner

    def new_run(
        self,
        req: TurnRequest,
        session_id: str,
        context: TurnContext,
        files: list[Attachment],
        given: Given,
    ) -> TurnRun:
        """The run of a new turn: its model, tools and provider request, whose history
        is the caller's conversation as given, or the newest messages that fit."""
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

    def new_turn(
        self,
        req: TurnRequest,
        session_id: str,
        run: TurnRun,
        context: TurnContext,
        files: list[Attachment],
        given: Given,
        fingerprint: str,
    ) -> NewTurn:
        """What the turn's first write stores: its claim, the user's message, the answer's
        placeholder, the title of a new session, and the calls a new message denies."""
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

    def resumed_run(
        self, req: ResolveRequest, session_id: str, session: Session, round_msg: Message
    ) -> TurnRun:
        """The run a resolution resumes: the round whose calls were decided, its model
        and the session's tools; its request is filled for the next round (next_round)."""
        model = round_msg.model or session.model or self._catalogue.default_name
        return TurnRun(
            user_id=req.user_id,
            session_id=session_id,
            turn_id=req.turn_id or uuid.uuid4().hex,
            model=model,
            targets=stream_targets(self._catalogue, model),
            tools=offered_tools(self._tools, session.tool_names, session.tools_disabled),
            request=ProviderRequest(
                model=model,
                messages=(),
                system_prompt=session.system_prompt or self._config.default_system_prompt,
            ),
            message=round_msg,
            started=time.monotonic(),
            deadline=req.deadline,
            answers=[round_msg.name],
        )

    def next_round(self, run: TurnRun, context: list[Message], history: int) -> ContextPlan:
        """The next round's request of a resumed run, from the history read again.

        The turn's own messages (its user message on) always go; before them, the
        newest of the conversation that fit the window (context_plan), as StreamChat."""
        own = next((i for i in range(len(context) - 1, -1, -1) if context[i].role is Role.USER), 0)
        specs = tool_specs(run.tools)
        plan = self._planner.plan(
            list(context[:own]),
            run.request.system_prompt,
            specs,
            None,
            run.model,
            None,
            len(context),
            turn_tokens=sum(message_tokens(m) for m in context[own:]),
            read_limit=history,
        )
        run.context = plan
        run.request = dataclasses.replace(
            run.request,
            system_prompt=self._planner.system_prompt(plan),
            messages=(*self._planner.history(plan), *to_chat_messages(context[own:])),
            tools=specs,
        )
        run.rounds = 1
        return plan
