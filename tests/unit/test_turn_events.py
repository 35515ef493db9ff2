"""The one table of event kinds (api/turn_events.py) covers every event, both ways.

Every engine event kind has a row, every field of StreamChatResponse's ``event`` oneof is
some row's, and each row fills exactly its field: a new event kind without its row, or a
row that leaves its message empty, fails here instead of reaching a client as an empty
message.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from aichat.v1 import chat_service_pb2 as cpb

from aichat_backend.api.turn_events import EVENT_KINDS, event_to_pb, frame_of, kind_of
from aichat_backend.domain import ContextSummary, Message, Role, ToolCall, ToolCallState
from aichat_backend.engine import events as ev
from aichat_backend.errors import Internal
from aichat_backend.turns.frames import END, TEXT

EVENT_TYPES = typing.get_args(ev.TurnEvent)
ONEOF = [f.name for f in cpb.StreamChatResponse.DESCRIPTOR.oneofs_by_name["event"].fields]


def _value(annotation: str) -> Any:
    """A non-empty value for a field typed ``annotation`` (events are plain dataclasses)."""
    samples: dict[str, Any] = {
        "str": "x",
        "int": 3,
        "float": 1.5,
        "bool": True,
        "Message": Message(session_id="s", id="m", seq=1, role=Role.ASSISTANT, text="t"),
        "ToolCall": ToolCall(id="c", tool_name="srv__t", arguments={}, state=ToolCallState.RUNNING),
        "TurnOutcome": ev.TurnOutcome.COMPLETED,
        "ContextSummary": ContextSummary("summary", 4, 900, 40, "m"),
        "ContextFill": ev.ContextFill(100, 4096, 1024, 3),
    }
    base = annotation.split(" | ")[0]
    if base.startswith("list["):
        return [_value(base[5:-1])]
    return samples.get(base)


def sample(kind: type) -> Any:
    fields = {f.name: _value(str(f.type)) for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in fields.items() if v is not None})


def test_every_event_kind_has_a_row_and_every_oneof_field_a_kind() -> None:
    assert set(EVENT_KINDS) == set(EVENT_TYPES)
    assert sorted(k.field for k in EVENT_KINDS.values()) == sorted(ONEOF)


@pytest.mark.parametrize("kind", EVENT_TYPES, ids=lambda k: k.__name__)
def test_each_row_fills_its_own_field_and_a_frame(kind: type) -> None:
    event = sample(kind)
    out = event_to_pb(event, 7)
    row = EVENT_KINDS[kind]
    assert out.sequence == 7 and out.WhichOneof("event") == row.field
    assert getattr(out, row.field).ByteSize() > 0 or kind is ev.Heartbeat
    frame = frame_of(row, out)
    assert frame.seq == 7 and frame.kind == row.frame and frame.payload
    if frame.kind != TEXT:
        assert cpb.StreamChatResponse.FromString(frame.payload) == out


def test_the_last_event_is_the_log_end_and_text_is_logged_as_text() -> None:
    assert EVENT_KINDS[ev.TurnEnded].frame == END
    assert EVENT_KINDS[ev.TextDelta].frame == TEXT


def test_an_event_without_a_row_is_refused_not_sent_empty() -> None:
    @dataclasses.dataclass
    class Unmapped:
        text: str

    with pytest.raises(Internal):
        kind_of(Unmapped("x"))  # type: ignore[arg-type]
