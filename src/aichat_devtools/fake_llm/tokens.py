"""How the fake upstream counts tokens: one documented rule, the same for every use.

A request's input is cut into units, in the order the provider reads them: each tool
definition, then (Anthropic) each system block, then each content block of each message
(OpenAI: each message). A unit of text counts ``ceil(UTF-8 bytes / 4)`` tokens (the
rough size of a BPE token of English); any other unit counts the same over its compact
JSON, except images, which count ``IMAGE_TOKENS`` whatever their size. Each message adds
``MESSAGE_OVERHEAD`` (its role and separators); an OpenAI request adds
``REPLY_PRIMING`` (the assistant turn it opens). ``cache_control`` markers count
nothing. The same count is what the fake reports as input usage, what its context
window refuses past, and what its prompt cache reads and writes, so a client can check
one against the other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

IMAGE_TOKENS = 85
MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
_IMAGE_TYPES = ("image", "image_url")


@dataclass(frozen=True, slots=True)
class Unit:
    """One countable part of a request; ``key`` identifies its content for the cache."""

    key: str
    tokens: int
    cache_point: bool = False  # Anthropic: the block carries ``cache_control``


def count_text(text: str) -> int:
    return -(-len(text.encode("utf-8")) // 4)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _without_marker(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return count_text(block)
    if isinstance(block, dict):
        kind = block.get("type")
        if kind in _IMAGE_TYPES:
            return IMAGE_TOKENS
        if kind == "text" and isinstance(block.get("text"), str):
            return count_text(block["text"])
    return count_text(_compact(_without_marker(block)))


def _unit(block: Any, extra: int = 0) -> Unit:
    marked = isinstance(block, dict) and "cache_control" in block
    key = _compact(_without_marker(block))
    return Unit(key, block_tokens(block) + extra, marked)


def anthropic_units(body: dict[str, Any]) -> list[Unit]:
    """tools → system → each content block of each message (Anthropic's own order)."""
    units = [_unit(tool) for tool in body.get("tools") or []]
    system = body.get("system")
    if isinstance(system, str) and system:
        units.append(_unit(system))
    elif isinstance(system, list):
        units += [_unit(block) for block in system]
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = [content] if isinstance(content, str) else list(content or [])
        role = str(message.get("role"))
        for index, block in enumerate(blocks):
            unit = _unit(block, MESSAGE_OVERHEAD if index == 0 else 0)
            units.append(Unit(role + ":" + unit.key, unit.tokens, unit.cache_point))
        if not blocks:
            units.append(Unit(role + ":", MESSAGE_OVERHEAD))
    return units


def openai_units(body: dict[str, Any]) -> list[Unit]:
    """tools → each message (OpenAI caches by message prefix, so a message is a unit)."""
    units = [_unit(tool) for tool in body.get("tools") or []]
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        tokens = MESSAGE_OVERHEAD
        if isinstance(content, str):
            tokens += count_text(content)
        elif isinstance(content, list):
            tokens += sum(block_tokens(block) for block in content)
        if message.get("tool_calls"):
            tokens += count_text(_compact(message["tool_calls"]))
        units.append(Unit(_compact(message), tokens))
    return units


def request_tokens(units: list[Unit], openai: bool) -> int:
    return sum(u.tokens for u in units) + (REPLY_PRIMING if openai else 0)


def prefix_keys(model: str, units: list[Unit]) -> list[str]:
    """A key per prefix (units[0..i]): equal keys, equal prefixes (for the same model)."""
    keys: list[str] = []
    digest = hashlib.sha256(model.encode()).hexdigest()
    for unit in units:
        digest = hashlib.sha256((digest + "\x00" + unit.key).encode()).hexdigest()
        keys.append(digest)
    return keys
