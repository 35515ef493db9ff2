"""ExportSession documents: text, Markdown or JSON, with a download file name."""

from __future__ import annotations

import datetime as dt
import json
import re

from aichat.v1 import session_service_pb2 as spb
from google.protobuf import json_format

from aichat_backend import domain
from aichat_backend.api.convert import message_to_pb, session_to_pb


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tools_used(messages: list[domain.Message]) -> list[str]:
    return sorted({c.tool_name for m in messages for c in m.tool_calls})


def _models_used(session: domain.Session, messages: list[domain.Message]) -> list[str]:
    used = sorted({m.model for m in messages if m.model})
    return used or ([session.model] if session.model else [])


def filename_for(session: domain.Session, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", session.display_name or session.id).strip("-.")
    return f"{(stem or session.id)[:60]}.{extension}"


def render(
    fmt: int, session: domain.Session, messages: list[domain.Message]
) -> tuple[str, str, bytes]:
    """(content type, file name, body) of the export."""
    if fmt == spb.EXPORT_FORMAT_JSON:
        doc = {
            "session": json_format.MessageToDict(session_to_pb(session)),
            "messages": [json_format.MessageToDict(message_to_pb(m)) for m in messages],
        }
        body = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        return "application/json", filename_for(session, "json"), body.encode()
    markdown = fmt == spb.EXPORT_FORMAT_MARKDOWN
    title = session.display_name or session.name
    tools = ", ".join(_tools_used(messages)) or "none"
    models = ", ".join(_models_used(session, messages)) or "server default"
    lines: list[str] = []
    if markdown:
        lines += [
            f"# {title}",
            "",
            f"- Session: `{session.name}`",
            f"- Created: {_when(session.create_time_us)}",
            f"- Model: {models}",
            f"- Tools used: {tools}",
            f"- Messages: {len(messages)}",
            "",
        ]
    else:
        lines += [
            f"Chat: {title}",
            f"Session: {session.name}",
            f"Created: {_when(session.create_time_us)}",
            f"Model: {models}",
            f"Tools used: {tools}",
            f"Messages: {len(messages)}",
            "=" * 60,
            "",
        ]
    for m in messages:
        who = m.role.value.capitalize()
        suffix = "" if m.state is domain.MessageState.COMPLETE else f" ({m.state.value})"
        header = f"{who} · {_when(m.create_time_us)}{suffix}"
        lines.append(f"## {header}" if markdown else f"[{header}]")
        if markdown:
            lines.append("")
        if m.text:
            lines.append(m.text)
        for a in m.attachments:
            lines.append(
                f"{'- ' if markdown else '  '}attachment: {a.filename} "
                f"({a.mime_type}, {a.size_bytes} bytes)"
            )
        if m.feedback is not None:
            comment = f": {m.feedback.comment}" if m.feedback.comment else ""
            lines.append(
                f"{'- ' if markdown else '  '}feedback: {m.feedback.rating.value}{comment}"
            )
        for c in m.tool_calls:
            args = json.dumps(c.arguments, ensure_ascii=False)
            lines.append(
                f"{'- ' if markdown else '  '}tool {c.tool_name}({args}) → "
                f"{c.state.value}: {c.result_text[:500]}"
            )
        lines.append("")
    if markdown:
        return (
            "text/markdown; charset=utf-8",
            filename_for(session, "md"),
            "\n".join(lines).encode(),
        )
    return "text/plain; charset=utf-8", filename_for(session, "txt"), "\n".join(lines).encode()
