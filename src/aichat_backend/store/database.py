"""One engine, short transactions, and a database that fails fast instead of hanging.

``Database.transaction()`` is the only way code touches SQL: one connection per request
(or per step of a chat turn), bounded in time, with driver errors that mean "the
database is unreachable" turned into ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, Engine, Result, create_engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.typing import TupleAny

from aichat_backend.config import Settings
from aichat_backend.errors import DatabaseUnavailable, InvalidArgument

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, TimeoutError, OSError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # asyncpg reports a dropped or timed-out connection with its own exception types.
        orig = type(exc.orig).__name__ if exc.orig is not None else ""
        return orig in {
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "ConnectionFailureError",
            "CannotConnectNowError",
            "TooManyConnectionsError",
            "QueryCanceledError",
        }
    return False


def _is_bad_data(exc: BaseException) -> bool:
    """SQLSTATE class 22 (data exception): NUL in text, a string too long, and the like."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate is None:
        sqlstate = getattr(getattr(exc.orig, "__cause__", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


class Tx(Protocol):
    """What repositories may do inside ``Database.transaction()``: Core statements only.

    PostgreSQL hands out an ``AsyncConnection``; SQLite an ``InlineConnection``.
    """

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[*TupleAny]: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]: ...


class InlineConnection:
    """A synchronous SQLite connection behind the async interface of ``Tx``.

    SQLite is a library in our process: a statement on a WAL database takes a few
    microseconds. Through aiosqlite every statement, cursor, BEGIN and COMMIT was a hop
    to its thread and back (~65 µs of CPU each, measured: 201 µs for BEGIN + SELECT 1 +
    COMMIT against 3 µs inline), which made SQLite the largest cost of a chat turn.
    Running inline never blocks the loop for long: a transaction cannot yield to other
    tasks while it holds SQLite's write lock (no await inside it suspends), so nothing
    in this process waits on the lock, and commits do not fsync (synchronous=NORMAL).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[*TupleAny]:
        return self._conn.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self._conn.scalar(statement, parameters)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._conn.begin_nested():
            yield


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.sqlalchemy_url()
        self.request_timeout = settings.db_request_timeout_seconds
        url = make_url(self.url)
        self.dialect = url.get_backend_name()
        # No ping on checkout and no ROLLBACK on return: each costs a round trip per
        # transaction (the benchmark saw three of each per turn on PostgreSQL), and we
        # need neither. transaction() always ends its own transaction, and a connection
        # that fails with a disconnect error is invalidated by SQLAlchemy, so the pool
        # reconnects by itself (the fault-proxy tests prove the recovery).
        kwargs: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None}
        self._engine: AsyncEngine | None = None
        self._inline: Engine | None = None
        if self.dialect == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # One connection, used inline on the event loop (see InlineConnection), one
            # transaction at a time: the lock queues them in order instead of SQLite's
            # busy handler, whose retries back off to 100 ms sleeps. The busy timeout is
            # for other processes on the same file (a second replica, `migrate`).
            self._inline = create_engine(
                url,
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": settings.db_request_timeout_seconds},
                **kwargs,
            )
            self._inline_lock = asyncio.Lock()
            event.listen(self._inline, "connect", _sqlite_pragmas)
        else:
            kwargs.update(
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_timeout=settings.db_connect_timeout_seconds,
                pool_recycle=1800,
                connect_args={
                    "timeout": settings.db_connect_timeout_seconds,
                    "command_timeout": settings.db_statement_timeout_seconds,
                },
            )
            self._engine = create_async_engine(url, **kwargs)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One connection in one transaction, committed on success, bounded in time.

        A Core connection, not an ORM session: the repositories speak Core statements
        only, and a session's unit-of-work bookkeeping is cost without use.
        """
        try:
            async with asyncio.timeout(self.request_timeout):
                if self._inline is not None:
                    async with self._inline_lock:
                        with self._inline.begin() as conn:
                            yield InlineConnection(conn)
                else:
                    assert self._engine is not None
                    async with self._engine.begin() as aconn:
                        yield aconn
        except Exception as exc:
            if _is_bad_data(exc):
                # A value the database refuses (a backstop: validation should catch it first).
                raise InvalidArgument(
                    "a value in the request cannot be stored (invalid characters or too long)",
                    reason="INVALID_DATA",
                ) from exc
            if _is_unavailable(exc):
                log.warning("database unavailable: %s", type(exc).__name__)
                raise DatabaseUnavailable(
                    "the database is not reachable right now; try again shortly",
                    retry_after=1.0,
                ) from exc
            raise

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; run at every start)."""
        if self._inline is not None:
            async with self._inline_lock:
                with self._inline.begin() as conn:
                    _upgrade_to_head(conn)
            return
        assert self._engine is not None
        async with self._engine.begin() as aconn:
            await aconn.run_sync(_upgrade_to_head)

    async def ping(self) -> None:
        async with self.transaction() as tx:
            await tx.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._inline is not None:
            self._inline.dispose()
        if self._engine is not None:
            await self._engine.dispose()


def _upgrade_to_head(connection: Connection) -> None:
    # Imported here: alembic (with mako) is ~10 MB of a process that needs it once.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Cascading deletes need foreign keys on; WAL lets readers run beside the writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
