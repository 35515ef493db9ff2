"""MCP types to the pool's domain types: a listed tool to ``ToolInfo``, a result to text.

Nothing of the MCP SDK crosses ``aichat_backend.tools.base``; this is where it stops.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from aichat_backend.tools.base import ToolAnnotations, ToolInfo
from aichat_backend.tools.config import ServerConfig


def tool_info(config: ServerConfig, tool: types.Tool, model_name: str) -> ToolInfo:
    """What the engine sees of one listed tool: its annotations and effective policy."""
    return ToolInfo(
        server=config.name,
        tool=tool.name,
        model_name=model_name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        annotations=tool_annotations(tool),
        approval=config.approval_for(tool.name),
    )


def tool_annotations(tool: types.Tool) -> ToolAnnotations:
    a = tool.annotations
    if a is None:
        return ToolAnnotations(title=tool.title or "", destructive=True, open_world=True)
    read_only = bool(a.read_only_hint)
    return ToolAnnotations(
        title=a.title or tool.title or "",
        read_only=read_only,
        # The spec's defaults: a tool that may write is assumed destructive and open-world.
        destructive=(not read_only) if a.destructive_hint is None else a.destructive_hint,
        idempotent=bool(a.idempotent_hint),
        open_world=True if a.open_world_hint is None else a.open_world_hint,
    )


def result_content(answer: types.CallToolResult) -> tuple[str, dict[str, Any] | None]:
    """A call's result as the text the model reads, plus its structured content if any."""
    parts: list[str] = []
    for block in answer.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link {block.uri}{' ' + block.name if block.name else ''}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[binary resource {resource.uri} {resource.mime_type or ''}]".strip())
        else:
            parts.append(f"[{getattr(block, 'type', 'unknown')} content]")
    structured_raw = answer.structured_content
    structured: dict[str, Any] | None
    if structured_raw is None or isinstance(structured_raw, dict):
        structured = structured_raw
    else:
        structured = {"result": structured_raw}
    text = "\n".join(parts)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=str)
    return text, structured
