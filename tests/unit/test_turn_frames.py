"""The event log's encoding, its crash-recovery text rule and its NOTIFY payloads."""

from __future__ import annotations

import pytest

from aichat_backend.errors import FailedPrecondition
from aichat_backend.store.turn_events_repo import NOTIFY_MAX_BYTES, LogRow, notify_payloads
from aichat_backend.turns.frames import (
    END,
    EVENT,
    ROUND_BREAK,
    TEXT,
    Frame,
    decode,
    encode,
    last_round_text,
)
from aichat_backend.turns.reader import _Cursor


def test_batches_round_trip() -> None:
    frames = [
        Frame(7, EVENT, b"\x00\x01"),
        Frame(8, TEXT, "héllo ".encode()),
        Frame(9, TEXT, b""),
        Frame(10, END, b"x" * 70_000),
    ]
    back = list(decode(7, encode(frames)))
    assert [(f.seq, f.kind, f.payload) for f in back] == [
        (f.seq, f.kind, f.payload) for f in frames
    ]
    assert back[-1].final and not back[0].final


def test_last_round_text_is_the_text_after_the_last_round_break() -> None:
    frames = [
        Frame(1, EVENT, b"started"),
        Frame(2, TEXT, b"Let me look. "),
        Frame(3, ROUND_BREAK, b"tool call"),
        Frame(4, TEXT, b"It is "),
        Frame(5, EVENT, b"heartbeat"),
        Frame(6, TEXT, "42 €".encode()),
    ]
    assert last_round_text(frames) == "It is 42 €"
    assert last_round_text(frames[:3]) == ""


def test_cursor_gives_each_frame_once_and_refuses_gaps() -> None:
    cursor = _Cursor(2, "sessions/s/turns/t")
    assert [cursor.take(Frame(s, TEXT, b"")) for s in (1, 2, 3, 3, 4)] == [
        False,
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(FailedPrecondition) as err:
        cursor.take(Frame(6, TEXT, b""))
    assert err.value.reason == "TURN_LOG_TRUNCATED"
    past = _Cursor(100, "sessions/s/turns/t")
    assert not past.take(Frame(5, TEXT, b""))
    assert past.take(Frame(9, END, b"")) and past.done  # past the end: the last event, once
    assert not past.take(Frame(9, END, b""))


def test_notify_payloads_stay_under_postgres_limit() -> None:
    rows = [
        LogRow(f"{i:032x}", "u", "s", "r", "", 123456, 0, 0, 0, False, 0, 0) for i in range(1000)
    ]
    payloads = notify_payloads(rows)
    assert all(len(p.encode()) < NOTIFY_MAX_BYTES for p in payloads) and len(payloads) > 1
    items = [item for p in payloads for item in p.split(",")]
    assert items == [f"{r.turn_id}:{r.last_seq}" for r in rows]
