"""The benchmark's database probe names statements by what they do to which table."""

from __future__ import annotations

import pytest

from aichat_backend.devtools.bench_dbprobe import _classify


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT sessions.id FROM sessions WHERE x", ("SELECT", "sessions")),
        ("UPDATE messages SET text=$1", ("UPDATE", "messages")),
        (
            "INSERT INTO usage_daily (a) VALUES (1) ON CONFLICT DO NOTHING",
            ("INSERT", "usage_daily"),
        ),
        # A write behind a CTE is still a write, named by its main statement.
        (
            "WITH claimed AS (UPDATE sessions SET last_seq=(sessions.last_seq + 2) "
            "RETURNING sessions.last_seq) INSERT INTO messages (id) SELECT $1 FROM claimed",
            ("INSERT", "messages"),
        ),
        ("", ("?", "")),
    ],
)
def test_statements_are_named_by_their_main_part(statement: str, expected: tuple[str, str]) -> None:
    assert _classify(statement) == expected
