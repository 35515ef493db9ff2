"""Resource names (AIP-122): the one module that formats, parses and validates them.

Nothing else in the package spells ``"sessions/"`` or ``"toolServers/"``: a name's shape
is decided here, and a malformed name is refused here with one reason
(``INVALID_RESOURCE_NAME``) and the field it came in.

Shapes:
    sessions/{session}
    sessions/{session}/messages/{message}
    sessions/{session}/turns/{turn}
    toolServers/{tool_server}
    toolServers/{tool_server}/tools/{tool}
    rateLimitBypasses/{rate_limit_bypass}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason

SESSIONS = "sessions"
MESSAGES = "messages"
TURNS = "turns"
TOOL_SERVERS = "toolServers"
TOOLS = "tools"
RATE_LIMIT_BYPASSES = "rateLimitBypasses"

# Server-generated ids are UUIDs; client-chosen session ids follow AIP-122 (lower case,
# digits, hyphens). Both shapes are accepted wherever a name is parsed.
_ID = r"[a-z0-9][a-z0-9-]{0,62}"
# Tool server and tool names come from configuration and MCP servers, not from us.
_TOOL_PART = r"[^/\s]{1,128}"

_SESSION_RE = re.compile(rf"^{SESSIONS}/({_ID})$")
_MESSAGE_RE = re.compile(rf"^{SESSIONS}/({_ID})/{MESSAGES}/({_ID})$")
_TURN_RE = re.compile(rf"^{SESSIONS}/({_ID})/{TURNS}/({_ID})$")
_TOOL_SERVER_RE = re.compile(rf"^{TOOL_SERVERS}/({_TOOL_PART})$")
_TOOL_RE = re.compile(rf"^{TOOL_SERVERS}/({_TOOL_PART})/{TOOLS}/({_TOOL_PART})$")
_BYPASS_RE = re.compile(rf"^{RATE_LIMIT_BYPASSES}/({_ID})$")


@dataclass(frozen=True, slots=True)
class MessageName:
    session_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class TurnName:
    session_id: str
    turn_id: str


@dataclass(frozen=True, slots=True)
class ToolName:
    server: str
    tool: str


def _refuse(name: str, field: str, shape: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} must look like {shape}, got {(name or '')[:80]!r}",
        reason=Reason.INVALID_RESOURCE_NAME,
        field=field,
    )


# --- format ---------------------------------------------------------------------------


def session(session_id: str) -> str:
    return f"{SESSIONS}/{session_id}"


def message(session_id: str, message_id: str) -> str:
    return f"{SESSIONS}/{session_id}/{MESSAGES}/{message_id}"


def turn(session_id: str, turn_id: str) -> str:
    return f"{SESSIONS}/{session_id}/{TURNS}/{turn_id}"


def tool_server(server: str) -> str:
    return f"{TOOL_SERVERS}/{server}"


def tool(server: str, tool_name: str) -> str:
    return f"{TOOL_SERVERS}/{server}/{TOOLS}/{tool_name}"


def rate_limit_bypass(bypass_id: str) -> str:
    return f"{RATE_LIMIT_BYPASSES}/{bypass_id}"


# --- parse (raise InvalidArgument INVALID_RESOURCE_NAME naming ``field``) -------------


def parse_session(name: str, field: str = "name") -> str:
    """The session id in ``sessions/{session}``."""
    match = _SESSION_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "sessions/{session}")
    return match.group(1)


def parse_message(name: str, field: str = "name") -> MessageName:
    match = _MESSAGE_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "sessions/{session}/messages/{message}")
    return MessageName(match.group(1), match.group(2))


def parse_turn(name: str, field: str = "name") -> TurnName:
    match = _TURN_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "sessions/{session}/turns/{turn}")
    return TurnName(match.group(1), match.group(2))


def parse_tool_server(name: str, field: str = "name") -> str:
    match = _TOOL_SERVER_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "toolServers/{tool_server}")
    return match.group(1)


def parse_tool(name: str, field: str = "name") -> ToolName:
    match = _TOOL_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "toolServers/{tool_server}/tools/{tool}")
    return ToolName(match.group(1), match.group(2))


def parse_rate_limit_bypass(name: str, field: str = "name") -> str:
    match = _BYPASS_RE.match(name or "")
    if not match:
        raise _refuse(name, field, "rateLimitBypasses/{rate_limit_bypass}")
    return match.group(1)


# --- recognise (no error: for lookups that accept more than one spelling) -------------


def is_tool_name(name: str) -> bool:
    """Whether ``name`` is a tool's resource name (as opposed to its model-facing name)."""
    return name.startswith(TOOL_SERVERS + "/")
