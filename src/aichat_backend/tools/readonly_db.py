"""Read-only access to a configured PostgreSQL database, for the bundled SQL tools.

Every query runs on a connection of its own (nothing one call does can outlive it: no
session setting, advisory lock or prepared statement reaches the next call), inside a
REPEATABLE READ READ ONLY transaction that is always rolled back, under a statement
timeout, with at most ``max_rows + 1`` rows ever fetched from the server. The session
default is read-only too. The transaction's first statement takes its snapshot, so a
``SET TRANSACTION READ WRITE`` can no longer turn it writable.

PostgreSQL lets a read-only transaction run ``COPY … TO PROGRAM``, ``pg_read_file`` and
``lo_import`` for a superuser: so the configured role must be an ordinary one. A role
that could *become* more is refused before any query runs: one that is, or is a member
(directly or through other roles, inheriting or not: ``SET ROLE`` and
``set_config('role', …)`` switch within a read-only query) of, a superuser or
``pg_execute_server_program``, ``pg_read_server_files``, ``pg_write_server_files``, and
one with ``CREATEROLE`` (which can grant itself those memberships). The role's own grants
(which tables, which functions) are the deployment's to choose.

Values are cut by PostgreSQL, not here: a query that returns rows is run as
``SELECT left(c1::text, N + 1), … FROM (<query>) AS q(c1, …)`` once its columns are
known, so a 100 MB cell crosses the wire as ``N + 1`` characters. Connections are few:
``ConnectionSlots`` bounds them per process and per user.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from aichat_backend.limits.slots import Slots, SlotsBusy
from aichat_backend.tools.sql_guard import first_word

APPLICATION_NAME = "aichat-readonly-tool"
MAX_OUTPUT_CHARS = 20_000  # the whole table, as the model reads it
MAX_CONNECTIONS, MAX_CONNECTIONS_PER_USER = 4, 2  # per tool process
_PRIVILEGED_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
# Every role the current one is, or may become (MEMBER: direct or indirect membership,
# whatever its INHERIT), that holds more than SELECT grants can give.
_ROLE_CHECK = (
    "SELECT coalesce(string_agg(r.rolname, ', ' ORDER BY r.rolname), '') FROM pg_roles r "
    "WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND (r.rolsuper OR r.rolcreaterole OR "
    f"r.rolname IN {_PRIVILEGED_ROLES!r})"
)
# What can be the inside of ``SELECT … FROM (<query>) AS q``.
_CUTTABLE = frozenset({"select", "with", "values", "table"})


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
        more = await conn.fetchval(_ROLE_CHECK)
    except BaseException:
        conn.terminate()
        raise
    if more:
        conn.terminate()
        raise DatabaseRefused(
            f"the tool's database role could become {more} (a superuser, a creator of roles, "
            "or a role that may run programs or read and write server files); configure an "
            "ordinary role with SELECT grants only"
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
        if first_word(sql) in _CUTTABLE:
            # Its columns known, the query runs again inside one that cuts every value.
            statement = await conn.prepare(_cut(sql, len(columns), limits.max_cell_chars))
        cursor = await statement.cursor(*args)
        records = await cursor.fetch(limits.max_rows + 1)
    finally:
        await transaction.rollback()
    rows = [[_cell(value, limits.max_cell_chars) for value in r.values()] for r in records]
    return QueryResult(columns, rows[: limits.max_rows], len(rows) > limits.max_rows)


def _cut(sql: str, count: int, limit: int) -> str:
    """``sql`` as a subquery whose every value is text of at most ``limit + 1`` characters
    (one more than shown, so a cut value is known to be cut)."""
    names = [f"c{n}" for n in range(1, count + 1)]
    cells = ", ".join(f"left(q.{name}::text, {limit + 1})" for name in names)
    # Newlines: a trailing "-- comment" in the query must not swallow the parenthesis.
    return f"SELECT {cells} FROM (\n{sql}\n) AS q({', '.join(names)})"


def _cell(value: Any, limit: int) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + f"… (cut at {limit} chars)"


class ConnectionSlots:
    """At most ``total`` connections from this process, ``per_user`` of them one user's;
    a query waits its turn for as long as it could have run, then is refused."""

    def __init__(self, total: int = MAX_CONNECTIONS, per_user: int = MAX_CONNECTIONS_PER_USER):
        self._slots = Slots(total, per_user)

    async def run(
        self, user: str, url: str, sql: str, args: tuple[Any, ...], limits: QueryLimits
    ) -> QueryResult:
        wait = limits.connect_timeout + limits.statement_timeout_ms / 1000
        try:
            async with self._slots.hold(user, wait=wait):
                return await run_read_only(url, sql, args, limits)
        except SlotsBusy as busy:
            who = "this user's" if busy.scope == "key" else "the tool's"
            raise DatabaseRefused(
                f"not run: {who} {busy.limit} database connections stayed busy for "
                f"{wait:g} s; send fewer queries at once"
            ) from None


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
