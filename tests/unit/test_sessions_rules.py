from __future__ import annotations

import pytest

from aichat_backend.engine.sessions import title_from_message
from aichat_backend.errors import InvalidArgument
from aichat_backend.names import parse_session


def test_title_from_first_message() -> None:
    assert title_from_message("  How busy\nwas the primary?  ") == "How busy was the primary?"
    long = "word " * 40
    title = title_from_message(long)
    assert title.endswith("…") and len(title) <= 61


@pytest.mark.parametrize("name", ["sessions/abc", "sessions/6abf53d8-4c21-4583-b5db-5fde2e3b57f5"])
def test_valid_names(name: str) -> None:
    assert parse_session(name) == name.split("/", 1)[1]


@pytest.mark.parametrize(
    "name", ["", "abc", "sessions/", "sessions/a/b", "sessions/../x", "users/1"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_session(name)
    assert err.value.reason == "INVALID_RESOURCE_NAME"
