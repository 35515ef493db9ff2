"""Frames: a turn's events as the log stores them, and their batch encoding.

A frame is one event with its sequence number. Text deltas are kept as their text (a
crash's partial answer is rebuilt from them without knowing the wire format); every
other event is an opaque payload rendered by the API layer. A batch row holds the
frames ``first_seq..last_seq`` as ``kind (1 byte) | length (4 bytes) | payload``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

TEXT = 1  # payload: UTF-8 text of a delta
EVENT = 2  # payload: an event rendered by the API layer
END = 3  # payload: the turn's last event, rendered by the API layer
ROUND_BREAK = 4  # payload: an event rendered by the API layer that ends a round's text
# Never stored: a reader's keep-alive while it waits for the turn (no sequence number of
# its own); payload: microseconds since the turn started, 8 bytes big-endian.
KEEPALIVE = 5

_HEAD = struct.Struct(">BI")


@dataclass(slots=True)
class Frame:
    seq: int
    kind: int
    payload: bytes
    # The rendered event itself, for readers in this process (saves a parse).
    rendered: object | None = None

    @property
    def final(self) -> bool:
        return self.kind == END

    def size(self) -> int:
        return _HEAD.size + len(self.payload)


def encode(frames: Iterable[Frame]) -> bytes:
    parts: list[bytes] = []
    for f in frames:
        parts.append(_HEAD.pack(f.kind, len(f.payload)))
        parts.append(f.payload)
    return b"".join(parts)


def decode(first_seq: int, data: bytes) -> Iterator[Frame]:
    offset, seq, size = 0, first_seq, len(data)
    while offset < size:
        kind, length = _HEAD.unpack_from(data, offset)
        offset += _HEAD.size
        yield Frame(seq, kind, data[offset : offset + length])
        offset += length
        seq += 1


def last_round(frames: Iterable[Frame]) -> list[Frame]:
    """The frames of the round a turn was in when its log stopped: those after the last
    round break (a tool call or an approval ends a round's answer)."""
    out: list[Frame] = []
    for f in frames:
        if f.kind == ROUND_BREAK:
            out.clear()
        else:
            out.append(f)
    return out


def last_round_text(frames: Iterable[Frame]) -> str:
    """The text of the round a turn was in when its log stopped."""
    parts = [f.payload for f in last_round(frames) if f.kind == TEXT]
    return b"".join(parts).decode("utf-8", errors="replace")


def frames_after(batches: Iterable[tuple[int, bytes]], after: int) -> list[Frame]:
    """The frames of stored batches with ``seq > after``, and the last one whatever its seq."""
    return [f for first, data in batches for f in decode(first, data) if f.seq > after or f.final]


def all_frames(batches: Iterable[tuple[int, bytes]]) -> list[Frame]:
    return [f for first, data in batches for f in decode(first, data)]


def keepalive(elapsed_us: int) -> Frame:
    return Frame(0, KEEPALIVE, max(elapsed_us, 0).to_bytes(8, "big"))
