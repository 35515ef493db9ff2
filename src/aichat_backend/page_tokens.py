"""Opaque keyset page tokens (never offsets).

A token records which list it belongs to and a short hash of the owner, so a token
from another list or another user is refused as INVALID_ARGUMENT instead of silently
paging somewhere else. Tokens carry no secret data: queries are scoped by the caller
anyway, so a forged token can only page through the caller's own rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason


def _owner_tag(kind: str, owner: str) -> str:
    return hashlib.sha256(f"{kind}\x00{owner}".encode()).hexdigest()[:12]


def encode(kind: str, owner: str, keys: list[Any]) -> str:
    body = json.dumps({"k": kind, "o": _owner_tag(kind, owner), "v": keys}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def invalid_token() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a token this list issued to you; start again without it",
        reason=Reason.INVALID_PAGE_TOKEN,
        field="page_token",
    )


def decode(token: str, kind: str, owner: str, arity: int) -> list[Any]:
    bad = invalid_token

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad() from None
    if (
        not isinstance(body, dict)
        or body.get("k") != kind
        or body.get("o") != _owner_tag(kind, owner)
    ):
        raise bad()
    keys = body.get("v")
    if not isinstance(keys, list) or len(keys) != arity:
        raise bad()
    return keys


def clamp_page_size(page_size: int, *, default: int = 50, maximum: int = 1000) -> int:
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative", reason=Reason.INVALID_PAGE_SIZE, field="page_size"
        )
    if page_size == 0:
        return default
    return min(page_size, maximum)
