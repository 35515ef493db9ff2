"""Deciding on tool calls that wait for the user: the rules a decision must follow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aichat_backend.domain import ToolCall, ToolCallState
from aichat_backend.errors import FailedPrecondition, InvalidArgument, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.records import Decided, PendingCall, already_decided
from aichat_backend.tools.base import ToolInfo


@dataclass(slots=True)
class Decision:
    tool_call_id: str
    approved: bool
    edited_arguments: dict[str, Any] | None = None
    reason: str = ""


@dataclass(slots=True)
class Decisions:
    """Decisions applied to the waiting calls: what to store, run, show and still ask."""

    stored: list[Decided]  # every decision, to record once
    runnable: list[tuple[ToolCall, ToolInfo]]  # approved calls whose tool is here
    shown: list[ToolCall]  # the decided calls in the order decided
    remaining: list[PendingCall]  # calls still waiting for a decision


def check_decisions(decisions: list[Decision]) -> None:
    if not decisions:
        raise InvalidArgument(
            "decisions must name at least one tool call",
            reason=Reason.NO_DECISIONS,
            field="decisions",
        )
    ids = [d.tool_call_id for d in decisions]
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise InvalidArgument(
            "each decision needs a tool_call_id, each call at most once",
            reason=Reason.INVALID_DECISIONS,
            field="decisions.tool_call_id",
        )


def check_known(
    decisions: list[Decision],
    pending: list[PendingCall],
    others: dict[str, ToolCallState | None],
    superseded: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Refuse a decision on a call that is not waiting, saying why."""
    waiting = {p.call.id for p in pending}
    for d in decisions:
        if d.tool_call_id in waiting:
            continue
        state = others.get(d.tool_call_id)
        if state is None:
            raise NotFound(
                f"tool call {d.tool_call_id[:80]!r} was not found in this session",
                reason=Reason.TOOL_CALL_NOT_FOUND,
                metadata={"tool_call_id": d.tool_call_id[:128]},
            )
        if d.tool_call_id in superseded:
            raise FailedPrecondition(
                f"tool call {d.tool_call_id[:80]!r} was superseded: its answer was "
                "regenerated, or a message above it edited, while it waited",
                reason=Reason.TOOL_CALL_SUPERSEDED,
                metadata={"tool_call_id": d.tool_call_id[:128], "state": state.value},
            )
        if state is ToolCallState.DENIED:
            # Expired, superseded by a new message, or denied before.
            raise FailedPrecondition(
                f"tool call {d.tool_call_id[:80]!r} is no longer waiting for approval",
                reason=Reason.TOOL_CALL_NOT_PENDING,
                metadata={"tool_call_id": d.tool_call_id[:128], "state": state.value},
            )
        raise already_decided(d.tool_call_id)


def apply_decisions(
    decisions: list[Decision],
    pending: list[PendingCall],
    find_tool: Callable[[str], ToolInfo | None],
) -> Decisions:
    """Each decision applied to its waiting call (edited arguments checked against the
    tool's schema); an approved call whose tool is gone fails instead of running."""
    left = {p.call.id: p for p in pending}
    out = Decisions([], [], [], [])
    for d in decisions:
        p = left.pop(d.tool_call_id)
        call, info = p.call, find_tool(p.call.tool_name)
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
        out.stored.append(Decided(p.message_id, call, d.approved))
        if call.state is ToolCallState.APPROVED and info is not None:
            out.runnable.append((call, info))
        out.shown.append(call)
    out.remaining = list(left.values())
    return out


def validate_arguments(info: ToolInfo | None, arguments: dict[str, Any]) -> None:
    if info is None:
        return
    # Imported when first needed: edited arguments are rare, jsonschema is ~2 MB resident.
    import jsonschema

    try:
        jsonschema.validate(arguments, info.input_schema or {"type": "object"})
    except jsonschema.ValidationError as exc:
        raise InvalidArgument(
            f"edited_arguments do not match the tool's schema: {exc.message[:200]}",
            reason=Reason.INVALID_TOOL_ARGUMENTS,
            field="decisions.edited_arguments",
        ) from None
    except jsonschema.SchemaError:
        return  # the server's schema is broken; the tool itself will judge
