"""One engine, short transactions, and a database that fails fast instead of hanging.

``Database.transaction()`` is the only way code touches SQL: one connection per request
(or per step of a chat turn), bounded in time, with driver errors that mean "the
database is unreachable" turned into ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, Engine, Result, create_engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.typing import TupleAny

from aichat_backend.config import Settings
from aichat_backend.errors import DatabaseUnavailable, InvalidArgument

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration's revision: a database there needs no alembic at start-up.
# tests/unit/test_schema_revision.py fails when a new migration is added without this.
SCHEMA_REVISION = "0003"  # [resume] the lead re-chains 0003 after 0002


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
        self._checkpoints: WalCheckpointer | None = None
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
            if url.database and url.database != ":memory:":
                self._checkpoints = WalCheckpointer(url.database)
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
        async with self._bounded():
            if self._inline is not None:
                async with self._inline_lock:
                    with self._inline.begin() as conn:
                        yield InlineConnection(conn)
                if self._checkpoints is not None:
                    self._checkpoints.wrote()
            else:
                assert self._engine is not None
                async with self._engine.begin() as aconn:
                    yield aconn

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Tx]:
        """A unit of work PostgreSQL receives as one statement, atomic by itself.

        There it is sent without BEGIN and COMMIT (two round trips fewer); the caller
        promises one statement (repositories say which of their methods qualify). On
        SQLite it is an ordinary transaction: inline, BEGIN and COMMIT cost nothing.
        """
        if self._inline is not None:
            async with self.transaction() as tx:
                yield tx
            return
        async with self._bounded(), self._autocommit() as tx:
            yield tx

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A connection for reads only, each statement seeing committed data.

        On PostgreSQL it runs in autocommit mode: no BEGIN and COMMIT round trips (two
        of the six before a turn's upstream request could leave). Under READ COMMITTED,
        statements in a transaction see no more consistent a picture than this. SQLite
        opens no transaction for a SELECT either way.
        """
        async with self._bounded():
            if self._inline is not None:
                async with self._inline_lock:
                    with self._inline.connect() as conn:
                        yield InlineConnection(conn)
            else:
                async with self._autocommit() as aconn:
                    yield aconn

    @asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A PostgreSQL connection whose every statement commits on its own."""
        assert self._engine is not None
        async with self._engine.connect() as aconn:
            await aconn.execution_options(isolation_level="AUTOCOMMIT")
            yield aconn

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """Bounded in time; driver errors become the service's own."""
        try:
            async with asyncio.timeout(self.request_timeout):
                yield
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
        """Bring the schema to the newest revision (idempotent; run at every start).

        A database already at ``SCHEMA_REVISION`` is left alone without loading alembic,
        which would stay resident (~10 MB) in a process that needed it for one query.
        """
        if await self.at_newest_revision():
            return
        if self._inline is not None:
            async with self._inline_lock:
                with self._inline.begin() as conn:
                    _upgrade_to_head(conn)
            return
        assert self._engine is not None
        async with self._engine.begin() as aconn:
            await aconn.run_sync(_upgrade_to_head)

    async def at_newest_revision(self) -> bool:
        return await self._schema_revision() == SCHEMA_REVISION

    async def _schema_revision(self) -> str | None:
        query = text("SELECT version_num FROM alembic_version")
        try:  # not through read(): a new database has no table, which is no outage
            if self._inline is not None:
                with self._inline.connect() as conn:
                    found = conn.scalar(query)
            else:
                assert self._engine is not None
                async with asyncio.timeout(self.request_timeout), self._engine.connect() as aconn:
                    found = await aconn.scalar(query)
        except Exception:  # no table yet, or unreachable: alembic will say what is wrong
            return None
        return str(found) if found is not None else None

    async def ping(self) -> None:
        async with self.read() as tx:
            await tx.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._checkpoints is not None:
            await self._checkpoints.stop()
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
    # No checkpoint on commit: it fsyncs, and this connection runs on the event loop
    # (a commit that checkpointed took up to 52 ms, stalling every stream). The
    # WalCheckpointer does it from a thread instead.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.close()


WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint
CHECKPOINT_INTERVAL_SECONDS = 1.0


class WalCheckpointer:
    """Copies the WAL into the database file from a worker thread, off the event loop.

    Runs once a second while transactions are happening; a PASSIVE checkpoint never
    waits for, or blocks, the writer. Its own connection lives in that one thread.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._stopped = False
        self.checkpointed = asyncio.Event()  # set after each background checkpoint

    def wrote(self) -> None:
        self._dirty = True
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)
            if not self._dirty:
                continue
            self._dirty = False
            try:
                await loop.run_in_executor(self._executor, self._checkpoint, "PASSIVE")
                self.checkpointed.set()
            except sqlite3.Error as exc:  # busy or locked: the next round tries again
                log.debug("WAL checkpoint skipped: %s", exc)

    def _checkpoint(self, mode: str) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=1.0, check_same_thread=False)
        self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        try:
            # Leave a small WAL behind: the file is whole without it.
            await loop.run_in_executor(self._executor, self._checkpoint, "TRUNCATE")
        except sqlite3.Error as exc:
            log.debug("final WAL checkpoint skipped: %s", exc)
        finally:
            if self._conn is not None:
                await loop.run_in_executor(self._executor, self._conn.close)
                self._conn = None
            self._executor.shutdown(wait=False)
