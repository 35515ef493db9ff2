"""A tool call's arguments between the model's JSON text and the engine's dict.

Shared by every adapter: each provider streams the arguments as JSON text, and a model
that got the JSON wrong must not fail the turn.
"""

from __future__ import annotations

import json
from typing import Any


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool arguments as a dict; JSON a model got wrong is kept as ``{"_raw": ...}``.

    The engine can then report the bad call back to the model instead of the turn
    failing on a parse error.
    """
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def arguments_json(arguments: dict[str, Any]) -> str:
    """Inverse of :func:`parse_arguments`: unparseable arguments go back verbatim."""
    raw = arguments.get("_raw")
    if len(arguments) == 1 and isinstance(raw, str):
        return raw
    return json.dumps(arguments)
