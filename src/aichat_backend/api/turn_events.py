"""The one table of a turn's event kinds: each engine event, its stream message and its
frame in the turn's log.

Adding an event kind touches four hand-written files: the event (engine/events.py and its
place in ``TurnEvent``), its message in the contract (chat_service.proto's
``StreamChatResponse.event`` oneof), its row here, and the engine module that yields it.
tests/unit/test_turn_events.py fails when an event kind or a oneof field has no row, or
a row leaves its message empty; an event without a row is refused here, never sent empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb

from aichat_backend.api import convert
from aichat_backend.api.errors import to_status
from aichat_backend.engine import events as ev
from aichat_backend.errors import Internal
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_request_id
from aichat_backend.turns.frames import END, EVENT, ROUND_BREAK, TEXT, Frame

OUTCOME_TO_PB = {
    ev.TurnOutcome.COMPLETED: cpb.TURN_OUTCOME_COMPLETED,
    ev.TurnOutcome.AWAITING_APPROVAL: cpb.TURN_OUTCOME_AWAITING_APPROVAL,
    ev.TurnOutcome.CANCELLED: cpb.TURN_OUTCOME_CANCELLED,
    ev.TurnOutcome.FAILED: cpb.TURN_OUTCOME_FAILED,
}
TOOL_PREVIEW_CHARS = 2000


@dataclass(frozen=True, slots=True)
class EventKind:
    field: str  # its field in StreamChatResponse's ``event`` oneof
    frame: int  # its frame kind in the turn's log (turns/frames.py)
    fill: Callable[[Any, cpb.StreamChatResponse], None]  # the event into that field


def usage_pb(e: ev.TurnEnded) -> rpb.Usage:
    return convert.usage_to_pb(e, e.model)


def _turn_started(e: ev.TurnStarted, out: cpb.StreamChatResponse) -> None:
    out.turn_started.user_message = e.user_message.name
    out.turn_started.answer_message = e.answer_name
    out.turn_started.model = e.model
    out.turn_started.continues_answer = e.continues_answer
    if e.context is not None:
        out.turn_started.context.CopyFrom(context_pb(e.context))


def context_pb(c: ev.ContextFill) -> cpb.ContextWindowUsage:
    return cpb.ContextWindowUsage(
        tokens=c.tokens,
        window_tokens=c.window_tokens,
        output_reserve_tokens=c.output_reserve_tokens,
        messages=c.messages,
        omitted_messages=c.omitted_messages,
        summarized=c.summarized,
    )


def _context_compacted(e: ev.ContextCompacted, out: cpb.StreamChatResponse) -> None:
    c = out.context_compacted
    c.through_message = e.through_name
    c.folded_messages = e.folded_messages
    c.tokens_before = e.tokens_before
    c.tokens_after = e.tokens_after
    c.window_tokens = e.window_tokens
    summary = convert.summary_to_pb(e.summary)
    assert summary is not None
    c.summary.CopyFrom(summary)
    c.after_refusal = e.after_refusal


def _text_delta(e: ev.TextDelta, out: cpb.StreamChatResponse) -> None:
    out.text_delta.text = e.text


def _reasoning_delta(e: ev.ReasoningDelta, out: cpb.StreamChatResponse) -> None:
    out.reasoning_delta.text = e.text


def _heartbeat(e: ev.Heartbeat, out: cpb.StreamChatResponse) -> None:
    out.heartbeat.elapsed.FromNanoseconds(int(e.elapsed_seconds * 1e9))


def _tool_call(e: ev.ToolCallUpdate, out: cpb.StreamChatResponse) -> None:
    out.tool_call.CopyFrom(convert.tool_call_to_pb(e.call, TOOL_PREVIEW_CHARS))


def _approval_required(e: ev.ApprovalRequired, out: cpb.StreamChatResponse) -> None:
    out.approval_required.tool_calls.extend(convert.tool_call_to_pb(c) for c in e.calls)


def _turn_ended(e: ev.TurnEnded, out: cpb.StreamChatResponse) -> None:
    ended = out.turn_ended
    ended.outcome = OUTCOME_TO_PB[e.outcome]
    ended.message.CopyFrom(convert.message_to_pb(e.message))
    ended.usage.CopyFrom(usage_pb(e))
    ended.answer_messages.extend(e.answers)
    if e.context is not None:
        ended.context.CopyFrom(context_pb(e.context))
    ended.title_pending = e.title_pending
    if e.error is not None:
        ended.error.CopyFrom(to_status(e.error, current_request_id()))


EVENT_KINDS: dict[type[ev.TurnEvent], EventKind] = {
    ev.TurnStarted: EventKind("turn_started", EVENT, _turn_started),
    ev.TextDelta: EventKind("text_delta", TEXT, _text_delta),
    # Reasoning is replayed on resume, but is not the answer's text a crash restores.
    ev.ReasoningDelta: EventKind("reasoning_delta", EVENT, _reasoning_delta),
    ev.Heartbeat: EventKind("heartbeat", EVENT, _heartbeat),
    # A tool call or an approval ends a round's text (what a crash recovery needs).
    ev.ToolCallUpdate: EventKind("tool_call", ROUND_BREAK, _tool_call),
    ev.ApprovalRequired: EventKind("approval_required", ROUND_BREAK, _approval_required),
    ev.ContextCompacted: EventKind("context_compacted", EVENT, _context_compacted),
    ev.TurnEnded: EventKind("turn_ended", END, _turn_ended),
}


def kind_of(event: ev.TurnEvent) -> EventKind:
    kind = EVENT_KINDS.get(type(event))
    if kind is None:  # a new event kind without its row: refused, never sent empty
        raise Internal(
            f"the turn produced an event of an unknown kind ({type(event).__name__})",
            reason=Reason.INTERNAL,
        )
    return kind


def event_to_pb(event: ev.TurnEvent, sequence: int) -> cpb.StreamChatResponse:
    out = cpb.StreamChatResponse(sequence=sequence)
    kind_of(event).fill(event, out)
    return out


def frame_of(kind: EventKind, out: cpb.StreamChatResponse) -> Frame:
    """The log's frame of an event rendered as ``out``: a text delta as its text (a crash
    rebuilds the partial answer from it), any other event as its serialized message."""
    if kind.frame == TEXT:
        return Frame(out.sequence, TEXT, out.text_delta.text.encode(), out)
    return Frame(out.sequence, kind.frame, out.SerializeToString(), out)
