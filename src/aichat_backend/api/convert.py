"""Domain objects ⇄ protobuf messages. No logic beyond the mapping itself."""

from __future__ import annotations

from aichat.v1 import resources_pb2 as pb
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from aichat_backend import domain, names
from aichat_backend.api.money_pb import cost_pb
from aichat_backend.engine.usage import Tally

ROLE_TO_PB = {
    domain.Role.USER: pb.ROLE_USER,
    domain.Role.ASSISTANT: pb.ROLE_ASSISTANT,
    domain.Role.TOOL: pb.ROLE_TOOL,
    domain.Role.SYSTEM: pb.ROLE_SYSTEM,
}
STATE_TO_PB = {
    domain.MessageState.COMPLETE: pb.MESSAGE_STATE_COMPLETE,
    domain.MessageState.INCOMPLETE: pb.MESSAGE_STATE_INCOMPLETE,
    domain.MessageState.INTERRUPTED: pb.MESSAGE_STATE_INTERRUPTED,
    # A message being written is shown as incomplete until its turn ends.
    domain.MessageState.STREAMING: pb.MESSAGE_STATE_INCOMPLETE,
}
TOOL_STATE_TO_PB = {
    domain.ToolCallState.PENDING_APPROVAL: pb.TOOL_CALL_STATE_PENDING_APPROVAL,
    domain.ToolCallState.APPROVED: pb.TOOL_CALL_STATE_APPROVED,
    domain.ToolCallState.DENIED: pb.TOOL_CALL_STATE_DENIED,
    domain.ToolCallState.RUNNING: pb.TOOL_CALL_STATE_RUNNING,
    domain.ToolCallState.SUCCEEDED: pb.TOOL_CALL_STATE_SUCCEEDED,
    domain.ToolCallState.FAILED: pb.TOOL_CALL_STATE_FAILED,
    domain.ToolCallState.RETURNED: pb.TOOL_CALL_STATE_RETURNED,
}


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def session_to_pb(s: domain.Session) -> pb.Session:
    return pb.Session(
        name=s.name,
        display_name=s.display_name,
        model=s.model,
        system_prompt=s.system_prompt,
        tool_names=s.tool_names,
        memory_limit=s.memory_limit,
        labels=s.labels,
        message_count=s.message_count,
        create_time=timestamp(s.create_time_us),
        update_time=timestamp(s.update_time_us),
        tools_locked=s.tools_locked,
        tools_disabled=s.tools_disabled,
        active_turn=names.turn(s.id, s.active_turn_id) if s.active_turn_id else "",
        active_message=names.message(s.id, s.active_message_id) if s.active_message_id else "",
    )


def session_from_pb(s: pb.Session) -> domain.Session:
    """The caller-settable fields of a Session; output-only fields are ignored."""
    return domain.Session(
        user_id="",
        id="",
        display_name=s.display_name,
        model=s.model,
        system_prompt=s.system_prompt,
        tool_names=list(s.tool_names),
        tools_disabled=s.tools_disabled,
        memory_limit=s.memory_limit,
        labels=dict(s.labels),
    )


def set_fields(s: pb.Session) -> list[str]:
    """Updatable fields that hold a non-default value (an update without a mask)."""
    paths = []
    for path in domain.UPDATABLE_SESSION_FIELDS:
        value = getattr(s, path)
        if (hasattr(value, "__len__") and len(value) > 0) or (
            not hasattr(value, "__len__") and value
        ):
            paths.append(path)
    return paths


def tool_call_to_pb(c: domain.ToolCall, preview_chars: int | None = None) -> pb.ToolCall:
    args = struct_pb2.Struct()
    args.update(c.arguments)
    text = c.result_text
    if preview_chars is not None and len(text) > preview_chars:
        text = text[:preview_chars] + "…"
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(c.duration_ms)
    return pb.ToolCall(
        id=c.id,
        tool_name=c.tool_name,
        arguments=args,
        state=TOOL_STATE_TO_PB[c.state],
        result_text=text,
        is_error=c.is_error,
        duration=duration,
        server=c.server,
        approval_reason=c.approval_reason,
    )


RATING_TO_PB = {
    domain.Rating.UP: pb.FEEDBACK_RATING_THUMBS_UP,
    domain.Rating.DOWN: pb.FEEDBACK_RATING_THUMBS_DOWN,
}


def feedback_to_pb(f: domain.Feedback | None) -> pb.MessageFeedback | None:
    if f is None:
        return None
    return pb.MessageFeedback(
        rating=RATING_TO_PB[f.rating], comment=f.comment, update_time=timestamp(f.update_time_us)
    )


def message_to_pb(m: domain.Message) -> pb.Message:
    return pb.Message(
        name=m.name,
        role=ROLE_TO_PB[m.role],
        text=m.text,
        attachments=[
            pb.Attachment(
                filename=a.filename, mime_type=a.mime_type, size_bytes=a.size_bytes, sha256=a.sha256
            )
            for a in m.attachments
        ],
        tool_calls=[tool_call_to_pb(c) for c in m.tool_calls],
        state=STATE_TO_PB[m.state],
        usage=usage_to_pb(m),
        model=m.model,
        create_time=timestamp(m.create_time_us),
        finish_reason=m.finish_reason,
        feedback=feedback_to_pb(m.feedback),
        reasoning=reasoning_to_pb(m),
        parent=_sibling(m, m.parent_id),
        sibling_index=m.sibling_index,
        sibling_count=m.sibling_count,
        previous_sibling=_sibling(m, m.previous_sibling),
        next_sibling=_sibling(m, m.next_sibling),
        context_summary=summary_to_pb(m.context_summary),
    )


def summary_to_pb(s: domain.ContextSummary | None) -> pb.ContextSummary | None:
    if s is None:
        return None
    return pb.ContextSummary(
        text=s.text,
        folded_messages=s.folded_messages,
        folded_tokens=s.folded_tokens,
        summary_tokens=s.summary_tokens,
        model=s.model,
        create_time=timestamp(s.create_time_us),
    )


def _sibling(m: domain.Message, message_id: str) -> str:
    return names.message(m.session_id, message_id) if message_id else ""


def usage_to_pb(u: Tally, model: str = "") -> pb.Usage:
    """A usage (a message's, a turn's) with its parts and its cost when priced."""
    out = pb.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        model=model,
        reasoning_tokens=u.reasoning_tokens,
        cached_input_tokens=u.cached_input_tokens,
        cache_write_tokens=u.cache_write_tokens,
    )
    if u.cost is not None:
        out.cost.CopyFrom(cost_pb(u.cost))
    return out


def reasoning_to_pb(m: domain.Message) -> pb.Reasoning | None:
    if not m.reasoning:
        return None
    redacted = sum(b.redacted for b in m.reasoning)
    return pb.Reasoning(text=m.reasoning_text, redacted_blocks=redacted)
