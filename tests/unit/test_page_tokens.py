from __future__ import annotations

import pytest

from aichat_backend import page_tokens
from aichat_backend.errors import InvalidArgument


def test_roundtrip() -> None:
    token = page_tokens.encode("sessions", "alice", [123, "abc"])
    assert page_tokens.decode(token, "sessions", "alice", 2) == [123, "abc"]


@pytest.mark.parametrize(
    ("kind", "owner", "arity"),
    [("sessions", "bob", 2), ("messages:x", "alice", 2), ("sessions", "alice", 1)],
)
def test_foreign_tokens_are_refused(kind: str, owner: str, arity: int) -> None:
    token = page_tokens.encode("sessions", "alice", [123, "abc"])
    with pytest.raises(InvalidArgument) as err:
        page_tokens.decode(token, kind, owner, arity)
    assert err.value.reason == "INVALID_PAGE_TOKEN"
    assert err.value.field == "page_token"


@pytest.mark.parametrize("token", ["", "!!!", "bm90IGpzb24", "W10"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument):
        page_tokens.decode(token, "sessions", "alice", 2)


def test_page_size_bounds() -> None:
    assert page_tokens.clamp_page_size(0) == 50
    assert page_tokens.clamp_page_size(5000) == 1000
    assert page_tokens.clamp_page_size(7) == 7
    with pytest.raises(InvalidArgument):
        page_tokens.clamp_page_size(-1)
