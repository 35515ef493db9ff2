"""ExportSession documents: text, Markdown or JSON, streamed in chunks with a file name.

A session of any size can be exported: messages are read a page at a time (a page is
bounded in bytes before it is read) and the document leaves as a stream of ``HttpBody``
chunks, none near the gRPC message limit. The header (message count, models, tools) is
asked of the database, not counted from the messages. A user runs at most
``AICHAT_MAX_CONCURRENT_EXPORTS_PER_USER`` exports at once in this process
(``ExportSlots``): each holds a page and a message in memory while its client reads.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

from aichat.v1 import session_service_pb2 as spb
from google.protobuf import json_format

from aichat_backend import domain
from aichat_backend.api.convert import message_to_pb, session_to_pb
from aichat_backend.errors import InvalidArgument, ResourceExhausted
from aichat_backend.limits.slots import Slots, SlotsBusy
from aichat_backend.reasons import Reason
from aichat_backend.records import SessionSummary as Summary

CHUNK_BYTES = 1024 * 1024
# REST takes these (any case) as well as the full enum names: aliases in the contract.
SHORT_NAMES = ("text", "markdown", "json")

Pages = Callable[[], AsyncIterator[list[domain.Message]]]


def check_format(value: int) -> int:
    if value not in spb.ExportFormat.values():
        raise InvalidArgument(
            f"format must be one of: {', '.join(SHORT_NAMES)}",
            reason=Reason.INVALID_FORMAT,
            field="format",
            metadata={"valid_values": ",".join(SHORT_NAMES)},
        )
    return value


class ExportSlots:
    """At most ``per_user`` exports running at once per user in this process (0: no cap)."""

    def __init__(self, per_user: int) -> None:
        self._slots = Slots(None, per_user or None)

    def held(self, user_id: str) -> int:
        return self._slots.held(user_id)

    @asynccontextmanager
    async def hold(self, user_id: str) -> AsyncIterator[None]:
        try:
            async with self._slots.hold(user_id, wait=0, key_waits=False):
                yield
        except SlotsBusy as busy:
            raise ResourceExhausted(
                f"Too many exports at once: at most {busy.limit} running per user. "
                "Retry when one has finished.",
                reason=Reason.EXPORTS_LIMITED,
                retry_after=1.0,
                metadata={"limit": str(busy.limit)},
            ) from None


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def filename_for(session: domain.Session, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", session.display_name or session.id).strip("-.")
    return f"{(stem or session.id)[:60]}.{extension}"


def describe(fmt: int, session: domain.Session) -> tuple[str, str]:
    """(content type, file name) of the export."""
    if fmt == spb.EXPORT_FORMAT_JSON:
        return "application/json", filename_for(session, "json")
    if fmt == spb.EXPORT_FORMAT_MARKDOWN:
        return "text/markdown; charset=utf-8", filename_for(session, "md")
    return "text/plain; charset=utf-8", filename_for(session, "txt")


async def render(
    fmt: int, session: domain.Session, summary: Summary, pages: Pages, *, reasoning: bool = False
) -> AsyncIterator[bytes]:
    """The document, in chunks of at most about ``CHUNK_BYTES``; with ``reasoning`` the
    answers carry the model's reasoning before them."""
    if fmt == spb.EXPORT_FORMAT_JSON:
        parts = _json_parts(session, pages, reasoning)
    else:
        markdown = fmt == spb.EXPORT_FORMAT_MARKDOWN
        parts = _text_parts(markdown, session, summary, pages, reasoning)
    buffer = bytearray()
    async for part in parts:
        buffer += part.encode()
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


async def _json_parts(session: domain.Session, pages: Pages, reasoning: bool) -> AsyncIterator[str]:
    head = json.dumps(json_format.MessageToDict(session_to_pb(session)), ensure_ascii=False)
    yield '{\n  "session": ' + head + ',\n  "messages": ['
    first = True
    async for page in pages():
        for m in page:
            message = message_to_pb(m)
            if not reasoning:
                message.ClearField("reasoning")
            doc = json.dumps(json_format.MessageToDict(message), ensure_ascii=False)
            yield ("\n    " if first else ",\n    ") + doc
            first = False
    yield "\n  ]\n}\n"


async def _text_parts(
    markdown: bool, session: domain.Session, summary: Summary, pages: Pages, reasoning: bool
) -> AsyncIterator[str]:
    yield "\n".join(_header(markdown, session, summary)) + "\n"
    async for page in pages():
        for m in page:
            yield "\n".join(_message_lines(markdown, m, reasoning)) + "\n"


def _header(markdown: bool, session: domain.Session, summary: Summary) -> list[str]:
    title = session.display_name or session.name
    tools = ", ".join(sorted(summary.tools)) or "none"
    used = sorted(summary.models) or ([session.model] if session.model else [])
    models = ", ".join(used) or "server default"
    if markdown:
        return [
            f"# {title}",
            "",
            f"- Session: `{session.name}`",
            f"- Created: {_when(session.create_time_us)}",
            f"- Model: {models}",
            f"- Tools used: {tools}",
            f"- Messages: {summary.count}",
            "",
        ]
    return [
        f"Chat: {title}",
        f"Session: {session.name}",
        f"Created: {_when(session.create_time_us)}",
        f"Model: {models}",
        f"Tools used: {tools}",
        f"Messages: {summary.count}",
        "=" * 60,
        "",
    ]


def _message_lines(markdown: bool, m: domain.Message, reasoning: bool) -> Iterator[str]:
    who = m.role.value.capitalize()
    suffix = "" if m.state is domain.MessageState.COMPLETE else f" ({m.state.value})"
    header = f"{who} · {_when(m.create_time_us)}{suffix}"
    yield f"## {header}" if markdown else f"[{header}]"
    if markdown:
        yield ""
    thought = m.reasoning_text if reasoning else ""
    if thought and markdown:
        yield "<details><summary>Thinking</summary>"
        yield ""
        yield from (f"> {line}" for line in thought.splitlines())
        yield ""
        yield "</details>"
        yield ""
    elif thought:
        yield "  Thinking:"
        yield from (f"  | {line}" for line in thought.splitlines())
    if m.text:
        yield m.text
    bullet = "- " if markdown else "  "
    for a in m.attachments:
        yield f"{bullet}attachment: {a.filename} ({a.mime_type}, {a.size_bytes} bytes)"
    if m.feedback is not None:
        comment = f": {m.feedback.comment}" if m.feedback.comment else ""
        yield f"{bullet}feedback: {m.feedback.rating.value}{comment}"
    for c in m.tool_calls:
        args = json.dumps(c.arguments, ensure_ascii=False)
        yield f"{bullet}tool {c.tool_name}({args}) → {c.state.value}: {c.result_text[:500]}"
    yield ""
    if m.context_summary is not None:
        yield from _summary_lines(markdown, m.context_summary)


def _summary_lines(markdown: bool, s: domain.ContextSummary) -> Iterator[str]:
    """A compaction checkpoint, after the last message it folded: the messages above
    stay in the export; the model was sent this instead of them from here on."""
    said = (
        f"Summary of the {s.folded_messages} messages above, written by {s.model}: the "
        "model is sent it instead of them from here on"
    )
    if markdown:
        yield f"> **{said}**"
        yield ">"
        yield from (f"> {line}" if line else ">" for line in s.text.splitlines())
    else:
        yield f"[{said}]"
        yield from (f"  | {line}" for line in s.text.splitlines())
    yield ""
