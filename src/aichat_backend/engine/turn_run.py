"""The live state of one running turn, and the small rules every part of a turn shares."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aichat_backend.domain import Message, ToolCall, ToolCallState
from aichat_backend.engine.round_stream import RoundStream
from aichat_backend.money import Cost
from aichat_backend.providers.base import ProviderRequest, ToolCallRequest, ToolSpec
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.providers.retry import StreamTarget
from aichat_backend.tools.base import ToolInfo, ToolProvider

if TYPE_CHECKING:
    from aichat_backend.engine.planned_context import ContextPlan


@dataclass(slots=True, eq=False)  # identity-hashed: runs live in a set
class TurnRun:
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
    # The usage of the turn's model calls so far (engine/usage.py).
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost: Cost | None = None
    stop_requested: bool = False
    claimed: asyncio.Future[Any] | None = None  # the claim (and first writes), when in flight
    user_message: Message | None = None
    finalized: bool = False  # the current answer's final write has been started
    first_token_seen: bool = False
    ended: bool = False  # the last event (TurnEnded) has been given to the caller
    answers: list[str] = field(default_factory=list)  # the turn's answer messages so far
    # The caller's own functions (OpenAI-compatible API): offered, never run here.
    client_tools: tuple[ToolSpec, ...] = ()
    # The context chosen by tokens (None: a conversation the caller gave whole, or a
    # resolution), and the provider's count of the input of the turn's last model call.
    context: ContextPlan | None = None
    last_input_tokens: int = 0
    # The session had no name when the turn began (nobody named it: a title model may).
    unnamed: bool = False

    def offered_specs(self) -> tuple[ToolSpec, ...]:
        """Every tool the model is offered: the session's (run here) and the caller's."""
        return tool_specs(self.tools) + self.client_tools

    def calls_client(self, calls: Sequence[ToolCallRequest]) -> bool:
        """Whether a round's calls name any of the caller's own functions."""
        own = {t.name for t in self.client_tools}
        return bool(own) and any(c.name in own for c in calls)


def stream_targets(catalogue: ModelCatalogue, model: str) -> list[StreamTarget]:
    """The model and its fallbacks; refused when none of them can be called here."""
    targets = catalogue.stream_targets(model)
    if not any(catalogue.is_configured(t.label) for t in targets):
        catalogue.provider_for(model)  # raises PROVIDER_NOT_CONFIGURED
    return targets


def offered_tools(
    tools: ToolProvider | None, names: list[str], disabled: bool = False
) -> dict[str, ToolInfo]:
    """The tools a session offers the model (all, those its ``tool_names`` pick, or none
    when it disabled them)."""
    if tools is None or disabled:
        return {}
    found = tools.tools()
    if names:
        wanted = set(names)
        found = [t for t in found if t.model_name in wanted or t.resource_name in wanted]
    return {t.model_name: t for t in found}


def tool_specs(tools: dict[str, ToolInfo]) -> tuple[ToolSpec, ...]:
    return tuple(
        ToolSpec(name=t.model_name, description=t.description, input_schema=t.input_schema)
        for t in tools.values()
    )


def answered_by(run: TurnRun, stream: RoundStream) -> str:
    """The catalogue name of the model that answered this round (a fallback, maybe);
    the turn's model when none answered."""
    return stream.answered_by or run.model


NOT_RUN_WITH_CALLER = (
    "not run: the same answer called the caller's own functions, so the turn went back to "
    "the caller; call it again if it is still needed"
)


def returned_calls(run: TurnRun, requests: Sequence[ToolCallRequest]) -> list[ToolCall]:
    """A round's calls when it called the caller's functions: those are RETURNED to the
    caller; any tool of the session's in the same round is not run (the turn ends here)."""
    own = {t.name for t in run.client_tools}
    calls: list[ToolCall] = []
    for i, r in enumerate(requests):
        call = ToolCall(
            id=(r.id or f"call_{uuid.uuid4().hex[:12]}_{i}")[:128],
            tool_name=r.name[:128],
            arguments=dict(r.arguments),
            state=ToolCallState.RETURNED,
        )
        if r.name not in own:
            call.state, call.is_error, call.result_text = (
                ToolCallState.FAILED,
                True,
                NOT_RUN_WITH_CALLER,
            )
        calls.append(call)
    return calls
