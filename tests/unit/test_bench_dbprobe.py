"""The benchmark's database probe: statements named by what they do to which table, and
every unit of work timed once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from aichat_backend.config import Settings
from aichat_backend.devtools.bench_dbprobe import _classify, timed_unit
from aichat_backend.store.database import Database


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


async def test_each_unit_of_work_is_timed_once(database_url: str, tmp_path: Path) -> None:
    records: list[list[Any]] = []

    class Probed(Database):
        pass

    for name in ("transaction", "read", "statement"):
        setattr(Probed, name, timed_unit(getattr(Database, name), records.append))
    db = Probed(Settings(database_url=database_url, data_dir=str(tmp_path)))
    try:
        # statement() (the begin and the finish of a turn on PostgreSQL) is a unit of its
        # own there; on SQLite it is a transaction() inside, which must not count twice.
        for unit in (db.statement, db.transaction, db.read):
            async with unit() as tx:
                await tx.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    assert [r[0] for r in records] == ["tx", "tx", "tx"]
    assert all(r[1] <= r[2] and r[4] is True for r in records)
