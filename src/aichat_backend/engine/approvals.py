"""Deciding on tool calls that wait for the user: the rules a decision must follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aichat_backend.errors import FailedPrecondition, InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.tools.base import ToolInfo


@dataclass(slots=True)
class Decision:
    tool_call_id: str
    approved: bool
    edited_arguments: dict[str, Any] | None = None
    reason: str = ""


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


def already_decided(call_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"tool call {call_id[:80]!r} was already decided",
        reason=Reason.TOOL_CALL_ALREADY_DECIDED,
        metadata={"tool_call_id": call_id[:128]},
    )
