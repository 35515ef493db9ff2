"""Names offered to the model: ``{server}__{tool}``, valid for every provider, unique.

Providers accept function names matching ``^[a-zA-Z0-9_-]{1,64}$``. A name that already
fits is used as is; one that does not (other characters, too long) is cleaned, cut and
given a short hash of the original pair, so two different tools never end up with the
same name and a tool keeps its name across restarts. Names that still collide (``a__b`` +
``c`` against ``a`` + ``b__c``) all take the hash form.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

from aichat_backend.tools.base import MODEL_NAME_PATTERN

MAX_LENGTH = 64
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_VALID = re.compile(MODEL_NAME_PATTERN)

ToolKey = tuple[str, str]  # (server, tool)


def _digest(server: str, tool: str, extra: int = 0) -> str:
    material = f"{server}\x00{tool}" + (f"\x00{extra}" if extra else "")
    return hashlib.sha256(material.encode()).hexdigest()[:_HASH_LENGTH]


def _hashed(server: str, tool: str, extra: int = 0) -> str:
    cleaned = _INVALID.sub("_", f"{server}__{tool}")
    return f"{cleaned[: MAX_LENGTH - _HASH_LENGTH - 1]}_{_digest(server, tool, extra)}"


def plain_name(server: str, tool: str) -> str:
    """The name one tool gets on its own (before any collision with another)."""
    name = f"{server}__{tool}"
    return name if _VALID.match(name) else _hashed(server, tool)


def model_names(keys: Iterable[ToolKey]) -> dict[ToolKey, str]:
    """A unique valid model name for every (server, tool) pair."""
    unique = sorted(set(keys))
    by_name: dict[str, list[ToolKey]] = defaultdict(list)
    for key in unique:
        by_name[plain_name(*key)].append(key)
    names: dict[ToolKey, str] = {}
    taken: set[str] = {name for name, owners in by_name.items() if len(owners) == 1}
    for name, owners in by_name.items():
        if len(owners) == 1:
            names[owners[0]] = name
            continue
        for key in owners:  # sorted, so the outcome does not depend on arrival order
            extra = 0
            candidate = _hashed(*key)
            while candidate in taken:  # a hash collision: practically never
                extra += 1
                candidate = _hashed(*key, extra=extra)
            taken.add(candidate)
            names[key] = candidate
    return names
