"""The bundled read-only SQL server against the machine's PostgreSQL, through the real pool.

Every write attempt must fail with a clear error and leave the data as it was: through
the tool (where the guard answers first) and against the executor alone (where only
PostgreSQL stands in the way).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aichat_backend.tools.pool import MCPPool
from aichat_backend.tools.readonly_db import (
    DatabaseRefused,
    QueryLimits,
    as_table,
    run_read_only,
)
from tests.integration.tools.readonly_pg import ReadOnlyDatabase, readonly_db
from tests.integration.tools.support import call, make_pool, tool
from tests.support.tool_stack import servers_up

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]
__all__ = ["readonly_db"]  # the fixture, imported for this module


def sql_entry(url: str, **env: str) -> dict[str, object]:
    return {
        "command": sys.executable,
        "args": ["-m", "aichat_backend.tools.sql_server"],
        "env": {"AICHAT_SQL_TOOL_DATABASE_URL": url, **env},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(readonly_db: ReadOnlyDatabase) -> AsyncIterator[MCPPool]:
    pool = make_pool(
        {
            "sql": sql_entry(readonly_db.url, AICHAT_SQL_TOOL_STATEMENT_TIMEOUT_MS="1000"),
            "sql_as_superuser": sql_entry(readonly_db.admin_url),
        }
    )
    await pool.start()
    await servers_up(pool)
    yield pool
    await pool.aclose()


async def test_a_query_comes_back_as_a_table(pool: MCPPool) -> None:
    result = await call(pool, "sql__query", sql="SELECT id, label FROM items WHERE id <= 2")
    assert not result.is_error, result.text
    assert result.text.splitlines() == [
        "| id | label |",
        "|---|---|",
        "| 1 | item 1 |",
        "| 2 | item 2 |",
        "(2 rows)",
    ]
    tables = await call(pool, "sql__list_tables")
    assert "public.items" in tables.text and "public.users" in tables.text
    assert "public.audit" not in tables.text  # the role may not read it
    # Read-only by its annotations: the model's calls run without asking.
    assert tool(pool, "sql__query").approval_reason() is None


async def test_rows_are_capped(pool: MCPPool) -> None:
    result = await call(pool, "sql__query", sql="SELECT * FROM items ORDER BY id")
    assert not result.is_error
    lines = result.text.splitlines()
    assert len(lines) == 2 + 100 + 1
    assert "first 100 rows" in lines[-1]


WRITES = [
    "INSERT INTO items (label, price) VALUES ('x', 1)",
    "SELECT 1; DROP TABLE items",
    "DROP TABLE items",
    "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "SELECT bump()",
    "SET TRANSACTION READ WRITE",
    "BEGIN; UPDATE items SET price = 0; COMMIT",
    "WITH gone AS (DELETE FROM items RETURNING *) SELECT count(*) FROM gone",
    "SELECT * FROM items FOR UPDATE",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT nextval('items_id_seq')",
    "SELECT 1 /* ; */ ; DELETE FROM items",
    "SELECT $$;$$; DELETE FROM items",
    "SELECT * INTO copy_of_items FROM items",
    "EXPLAIN ANALYZE DELETE FROM items",
]


@pytest.mark.parametrize("sql", WRITES)
async def test_writes_fail_and_change_nothing(
    pool: MCPPool, readonly_db: ReadOnlyDatabase, tmp_path: Path, sql: str
) -> None:
    marker = tmp_path / "copy-ran"
    before = await readonly_db.fingerprint()
    result = await call(pool, "sql__query", sql=sql.format(marker=marker))
    assert result.is_error, result.text
    assert result.text  # a reason the model can read
    assert await readonly_db.fingerprint() == before
    assert not marker.exists()


@pytest.mark.parametrize("sql", WRITES)
async def test_the_database_refuses_them_even_without_the_guard(
    readonly_db: ReadOnlyDatabase, tmp_path: Path, sql: str
) -> None:
    marker = tmp_path / "copy-ran"
    before = await readonly_db.fingerprint()
    with pytest.raises(DatabaseRefused):
        await run_read_only(readonly_db.url, sql.format(marker=marker))
    assert await readonly_db.fingerprint() == before
    assert not marker.exists()


async def test_a_slow_query_stops_at_the_statement_timeout(pool: MCPPool) -> None:
    result = await call(pool, "sql__query", sql="SELECT pg_sleep(30)")
    assert result.is_error
    assert "statement timeout" in result.text


async def test_a_superuser_connection_is_refused(
    pool: MCPPool, readonly_db: ReadOnlyDatabase, tmp_path: Path
) -> None:
    result = await call(pool, "sql_as_superuser__query", sql="SELECT 1")
    assert result.is_error
    assert "superuser" in result.text
    marker = tmp_path / "copy-ran"
    with pytest.raises(DatabaseRefused, match="superuser"):
        await run_read_only(readonly_db.admin_url, f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
    assert not marker.exists()


async def test_session_state_does_not_carry_to_the_next_call(
    readonly_db: ReadOnlyDatabase,
) -> None:
    await run_read_only(readonly_db.url, "SELECT pg_advisory_lock(42)")
    # A new connection per call: the lock went with the old one.
    result = await run_read_only(readonly_db.url, "SELECT pg_try_advisory_lock(42) AS free")
    assert result.rows == [["true"]]  # PostgreSQL's own text for a boolean
    # A setting changed at session level is rolled back with the call, and the next call
    # is read-only all the same.
    await run_read_only(
        readonly_db.url, "SELECT set_config('default_transaction_read_only', 'off', false)"
    )
    shown = await run_read_only(readonly_db.url, "SHOW default_transaction_read_only")
    assert shown.rows == [["on"]]


async def test_values_are_cut_and_tables_escaped(readonly_db: ReadOnlyDatabase) -> None:
    limits = QueryLimits(max_cell_chars=10)
    result = await run_read_only(
        readonly_db.url, "SELECT repeat('x', 50) AS big, 'a|b\nc' AS odd, NULL AS none", (), limits
    )
    assert result.rows == [["xxxxxxxxxx… (cut at 10 chars)", "a|b\nc", "NULL"]]
    assert as_table(result).splitlines()[2] == "| xxxxxxxxxx… (cut at 10 chars) | a\\|b c | NULL |"


async def test_a_wide_result_stops_before_it_is_too_long(pool: MCPPool) -> None:
    result = await call(pool, "sql__query", sql="SELECT id, repeat(label, 40) FROM items")
    assert not result.is_error
    assert len(result.text) <= 20_000 + 200
    assert "too long to read" in result.text.splitlines()[-1]


async def test_a_parameter_without_a_value_is_a_clear_error(pool: MCPPool) -> None:
    result = await call(pool, "sql__query", sql="SELECT $1::int")
    assert result.is_error
    assert "could not be run" in result.text and "argument" in result.text
