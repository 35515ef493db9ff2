"""Turn events as log frames and back; the last events the log writes by itself.

A text delta is logged as its text (rebuilt on replay); any other event as its
serialized ``StreamChatResponse``. The log writes a last event itself when the engine
cut a turn off (its caller left, its detached deadline passed, an error) and when a
crash left a log without one.
"""

from __future__ import annotations

from aichat.v1 import chat_service_pb2 as cpb
from google.rpc import error_details_pb2, status_pb2

from aichat_backend import errors as err
from aichat_backend.api import convert
from aichat_backend.api.errors import GRPC_CODE, to_status
from aichat_backend.domain import Message, MessageState, ToolCallState
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_request_id
from aichat_backend.turns.frames import END, EVENT, KEEPALIVE, TEXT, Frame
from aichat_backend.turns.log import TurnBuffer


def render(frame: Frame, name: str) -> cpb.StreamChatResponse:
    """The stream message of a frame (the turn's ``name`` for rebuilt text deltas)."""
    if isinstance(frame.rendered, cpb.StreamChatResponse):
        return frame.rendered
    if frame.kind == TEXT:
        out = cpb.StreamChatResponse(sequence=frame.seq, turn=name)
        out.text_delta.text = frame.payload.decode()
        return out
    if frame.kind == KEEPALIVE:
        # A waiting reader's heartbeat: no event of the turn, so no sequence number.
        out = cpb.StreamChatResponse(turn=name)
        out.heartbeat.elapsed.FromMicroseconds(int.from_bytes(frame.payload, "big"))
        return out
    return cpb.StreamChatResponse.FromString(frame.payload)


def shrink_end(frame: Frame, room: int) -> Frame:
    """A turn's last event made to fit the ``room`` its log has left (past its size bound):
    first without the answer's text (stored with the message: ListMessages has it), then
    without the message's calls and files, then with the outcome and error alone."""
    out = cpb.StreamChatResponse.FromString(frame.payload)
    ended = out.turn_ended

    def without_text() -> None:
        ended.message.ClearField("text")

    def without_calls() -> None:
        ended.message.ClearField("tool_calls")
        ended.message.ClearField("attachments")

    def outcome_only() -> None:
        ended.ClearField("message")
        ended.ClearField("answer_messages")

    for step in (without_text, without_calls, outcome_only):
        if Frame(frame.seq, END, b"").size() + out.ByteSize() <= room:
            break
        step()
    return Frame(frame.seq, END, out.SerializeToString())


def _ended(
    seq: int, name: str, outcome: int, message: Message | None, error: err.AichatError | None
) -> cpb.StreamChatResponse:
    ended = cpb.TurnEnded(outcome=outcome)  # type: ignore[arg-type]
    if message is not None:
        ended.message.CopyFrom(convert.message_to_pb(message))
        ended.usage.CopyFrom(convert.usage_to_pb(message, message.model))
    if error is not None:
        ended.error.CopyFrom(to_status(error, current_request_id()))
    return cpb.StreamChatResponse(sequence=seq, turn=name, turn_ended=ended)


def cut_off_end(buf: TurnBuffer, message: Message, reason: str) -> Frame:
    """The last event of a turn the engine cut off, from its answer as stored."""
    error: err.AichatError | None = None
    if any(c.state is ToolCallState.PENDING_APPROVAL for c in message.tool_calls):
        outcome = cpb.TURN_OUTCOME_AWAITING_APPROVAL
    elif message.state is MessageState.COMPLETE:
        outcome = cpb.TURN_OUTCOME_COMPLETED
    elif buf.deadline_hit:
        outcome = cpb.TURN_OUTCOME_CANCELLED
        error = err.DeadlineExceeded(
            "the detached turn ran past its time limit; the partial answer was stored",
            reason=Reason.TURN_DEADLINE_EXCEEDED,
        )
    elif buf.cancelled:
        outcome = cpb.TURN_OUTCOME_CANCELLED
        error = err.Cancelled(
            "the turn was cancelled (CancelTurn); the partial answer was stored",
            reason=Reason.TURN_CANCELLED,
        )
    elif reason == "cancelled":
        outcome = cpb.TURN_OUTCOME_CANCELLED
        error = err.Cancelled(
            "the turn's caller hung up, which cancels it; the partial answer was stored",
            reason=Reason.TURN_CANCELLED,
        )
    else:
        outcome = cpb.TURN_OUTCOME_FAILED
        error = (
            buf.error
            if isinstance(buf.error, err.AichatError)
            else err.Internal(
                "the turn failed; the partial answer was stored", reason=Reason.TURN_FAILED
            )
        )
    out = _ended(buf.next_seq, buf.name, outcome, message, error)
    return Frame(out.sequence, END, out.SerializeToString(), out)


def reasoning_text(frames: list[Frame]) -> str:
    """The reasoning deltas among a round's logged events, joined (crash recovery)."""
    parts: list[str] = []
    for f in frames:
        if f.kind == EVENT:
            event = cpb.StreamChatResponse.FromString(f.payload)
            if event.HasField("reasoning_delta"):
                parts.append(event.reasoning_delta.text)
    return "".join(parts)


def interrupted_end(message: Message | None, name: str, seq: int) -> bytes:
    """The last event of a turn whose server died (kill -9, a crash)."""
    error = err.Unavailable(
        "the server running this turn stopped; what it had streamed was stored",
        reason=Reason.TURN_INTERRUPTED,
    )
    return _ended(seq, name, cpb.TURN_OUTCOME_FAILED, message, error).SerializeToString()


_KINDS = {code.value[0]: kind for kind, code in GRPC_CODE.items()}
_CLASSES: dict[err.ErrorKind, type[err.AichatError]] = {
    cls.kind: cls
    for cls in (
        err.Cancelled,
        err.InvalidArgument,
        err.DeadlineExceeded,
        err.NotFound,
        err.AlreadyExists,
        err.PermissionDenied,
        err.ResourceExhausted,
        err.FailedPrecondition,
        err.Aborted,
        err.Unimplemented,
        err.Internal,
        err.Unavailable,
        err.Unauthenticated,
    )
}


def error_from_status(status: status_pb2.Status) -> err.AichatError:
    """A stored status as the error a replayed failed turn ends its RPC with."""
    kind = _KINDS.get(status.code, err.ErrorKind.INTERNAL)
    info = error_details_pb2.ErrorInfo()
    retry: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            found = error_details_pb2.RetryInfo()
            detail.Unpack(found)
            retry = found.retry_delay.ToNanoseconds() / 1e9
    metadata = {k: v for k, v in info.metadata.items() if k != "request_id"}
    return _CLASSES[kind](
        status.message, reason=_reason(info.reason), metadata=metadata, retry_after=retry
    )


def _reason(text: str) -> Reason | None:
    """A stored reason as the enum; one this build no longer declares is the kind's own."""
    return Reason.__members__.get(text)
