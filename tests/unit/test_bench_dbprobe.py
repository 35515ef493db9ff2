"""The benchmark's database probe: statements named by what they do to which table, and
every unit of work timed once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from aichat_backend.config import Settings
from aichat_backend.store.database import Database
from aichat_devtools.bench_clients import StreamResult
from aichat_devtools.bench_dbprobe import _classify, timed_unit
from aichat_devtools.bench_dbreport import analyse_db


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


def test_the_answer_write_is_not_an_early_write_even_inside_a_cte(tmp_path: Path) -> None:
    """A one-word answer's last write can start before the client has read the first
    token; it is the answer's write, not a write between request and first token. On
    PostgreSQL that write is one statement whose UPDATE of the answer sits in a CTE."""
    finish_cte = (
        "WITH answer AS (UPDATE messages SET text=$7::VARCHAR WHERE messages.id = $8) "
        "INSERT INTO usage_daily (user_id) VALUES ($1)"
    )
    begin_cte = (
        "WITH claimed AS (UPDATE sessions SET last_seq=1) INSERT INTO messages (id) SELECT 1"
    )
    records = [
        ["tx", 1.000, 1.002, "turn", True],  # the begin
        ["stmt", 1.001, 0.001, "INSERT", "messages", "turn", begin_cte],
        ["tx", 1.010, 1.012, "turn", True],  # the finish, before the client's first token
        ["stmt", 1.011, 0.001, *_classify(finish_cte), "turn", finish_cte],
        ["tx", 1.000, 1.002, "stray", True],
        ["stmt", 1.001, 0.001, "INSERT", "messages", "stray", begin_cte],
        ["stmt", 1.005, 0.001, "UPDATE", "sessions", "stray", "UPDATE sessions SET x=1"],
    ]
    probe = tmp_path / "probe.jsonl"
    probe.write_text("".join(json.dumps(r) + "\n" for r in records))
    arrivals = tmp_path / "arrivals.txt"
    arrivals.write_text("turn 1.001\nstray 1.001\n")
    turn = StreamResult(t_send=0.999, ttft=0.016)  # first token at 1.015
    db = analyse_db({"turn": turn}, probe, arrivals)
    assert db["writes_before_first_token_outside_begin_per_turn"] == 0
    assert db["answer_write_before_client_first_token_fraction"] == 1
    assert db["begin_overlapped_with_upstream_fraction"] == 1
    # A write outside both windows before the first token is counted.
    stray = StreamResult(t_send=0.999, ttft=0.016)
    db = analyse_db({"stray": stray}, probe, arrivals)
    assert db["writes_before_first_token_outside_begin_per_turn"] == 1
