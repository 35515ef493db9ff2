"""Read-only access to a configured PostgreSQL database, for the bundled SQL tools.

Every query runs on a connection of its own (nothing one call does can outlive it: no
session setting, advisory lock or prepared statement reaches the next call), inside a
REPEATABLE READ READ ONLY transaction that is always rolled back, under a statement
timeout, with at most ``max_rows + 1`` rows ever fetched from the server. The session
default is read-only too. The transaction's first statement takes its snapshot, so a
``SET TRANSACTION READ WRITE`` can no longer turn it writable.

PostgreSQL lets a read-only transaction run ``COPY … TO PROGRAM``, ``pg_read_file`` and
``lo_import`` for a superuser: so the configured role must be an ordinary one, and a
connection as a superuser or a member of ``pg_execute_server_program``,
``pg_read_server_files`` or ``pg_write_server_files`` is refused before any query runs.
The role's own grants (which tables, which functions) are the deployment's to choose.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

APPLICATION_NAME = "aichat-readonly-tool"
MAX_OUTPUT_CHARS = 20_000  # the whole table, as the model reads it
_PRIVILEGED_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
_ROLE_CHECK = (
    "SELECT r.rolsuper, "
    + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in _PRIVILEGED_ROLES)
    + " FROM pg_roles r WHERE r.rolname = current_user"
)


class DatabaseRefused(Exception):
    """The database (or our check of the role) refused the query: the message says why."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    statement_timeout_ms: int = 5_000
    max_rows: int = 100
    max_cell_chars: int = 500
    max_output_chars: int = MAX_OUTPUT_CHARS
    connect_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[list[str]]  # each value rendered as text, cut to ``max_cell_chars``
    more: bool  # the query had more rows than ``max_rows``


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style ``postgresql+asyncpg://`` URL also works."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


async def run_read_only(
    url: str, sql: str, args: tuple[Any, ...] = (), limits: QueryLimits | None = None
) -> QueryResult:
    """Run one statement read-only; ``DatabaseRefused`` says why it could not."""
    limits = limits or QueryLimits()
    try:
        # The client-side bound covers what the statement timeout does not (connecting).
        async with asyncio.timeout(limits.connect_timeout + limits.statement_timeout_ms / 1000):
            conn = await _connect(url, limits)
            try:
                return await _query(conn, sql, args, limits)
            finally:
                conn.terminate()  # never back to a pool: nothing carries to the next call
    except TimeoutError:
        raise DatabaseRefused(
            f"the query did not finish within {limits.statement_timeout_ms / 1000:g} s"
        ) from None
    except asyncpg.QueryCanceledError:
        raise DatabaseRefused(
            f"the query ran past the {limits.statement_timeout_ms / 1000:g} s statement timeout"
        ) from None
    except asyncpg.PostgresError as exc:
        raise DatabaseRefused(
            f"the database refused the query: {exc} (SQLSTATE {exc.sqlstate})"
        ) from None
    except OSError as exc:
        raise DatabaseRefused(f"the database is unreachable ({type(exc).__name__})") from None
    except asyncpg.InterfaceError as exc:  # e.g. a $1 in the query with no value for it
        raise DatabaseRefused(f"the query could not be run: {exc}") from None


async def _connect(url: str, limits: QueryLimits) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        asyncpg_dsn(url),
        timeout=limits.connect_timeout,
        statement_cache_size=0,
        server_settings={
            "application_name": APPLICATION_NAME,
            "default_transaction_read_only": "on",
        },
    )
    try:
        row = await conn.fetchrow(_ROLE_CHECK)
    except BaseException:
        conn.terminate()
        raise
    if row is None or any(row.values()):
        conn.terminate()
        raise DatabaseRefused(
            "the tool's database role is a superuser or may run programs or read and write "
            "server files; configure an ordinary role with SELECT grants only"
        )
    return conn


async def _query(
    conn: asyncpg.Connection, sql: str, args: tuple[Any, ...], limits: QueryLimits
) -> QueryResult:
    transaction = conn.transaction(isolation="repeatable_read", readonly=True)
    await transaction.start()
    try:
        timeout = str(limits.statement_timeout_ms)
        # A SELECT first: it takes the snapshot (no more SET TRANSACTION READ WRITE after
        # it) and sets this transaction's timeouts.
        await conn.fetchval(
            "SELECT set_config('statement_timeout', $1, true),"
            " set_config('lock_timeout', $1, true),"
            " set_config('idle_in_transaction_session_timeout', $1, true)",
            timeout,
        )
        # A prepared statement holds exactly one command: the protocol refuses "a; b".
        statement = await conn.prepare(sql)
        columns = [attribute.name for attribute in statement.get_attributes()]
        if not columns:  # a statement that returns no rows (refused above for writes)
            await statement.fetch(*args)
            return QueryResult([], [], False)
        cursor = await statement.cursor(*args)
        records = await cursor.fetch(limits.max_rows + 1)
    finally:
        await transaction.rollback()
    rows = [[_cell(value, limits.max_cell_chars) for value in r.values()] for r in records]
    return QueryResult(columns, rows[: limits.max_rows], len(rows) > limits.max_rows)


def _cell(value: Any, limit: int) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def as_table(result: QueryResult, max_chars: int = MAX_OUTPUT_CHARS) -> str:
    """The result as a Markdown table the model can read, with the row count under it.

    Rows stop before the table would pass ``max_chars``; the last line says so.
    """
    if not result.columns:
        return "(the statement returned no rows)"

    def line(values: list[str]) -> str:
        cells = (v.replace("|", "\\|").replace("\r", " ").replace("\n", " ") for v in values)
        return "| " + " | ".join(cells) + " |"

    lines = [line(result.columns), "|" + "---|" * len(result.columns)]
    size = sum(len(text) + 1 for text in lines)
    for row in result.rows:
        text = line(row)
        size += len(text) + 1
        if size > max_chars:
            break
        lines.append(text)
    count = len(lines) - 2
    if count < len(result.rows):
        lines.append(f"(first {count} rows; the rest would be too long to read: select less)")
    elif result.more:
        lines.append(f"(first {count} rows; the query has more: narrow it or add LIMIT)")
    else:
        lines.append(f"({count} row{'s' if count != 1 else ''})")
    return "\n".join(lines)
