"""One engine, short transactions, and a database that fails fast instead of hanging.

``Database.transaction()`` is the only way code touches SQL: one session per request
(or per step of a chat turn), bounded in time, with driver errors that mean "the
database is unreachable" turned into ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool

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


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.sqlalchemy_url()
        self.request_timeout = settings.db_request_timeout_seconds
        url = make_url(self.url)
        # No ping on checkout and no ROLLBACK on return: each costs a round trip per
        # transaction (the benchmark saw three of each per turn on PostgreSQL), and we
        # need neither. transaction() always ends its own transaction, and a connection
        # that fails with a disconnect error is invalidated by SQLAlchemy, so the pool
        # reconnects by itself (the fault-proxy tests prove the recovery).
        kwargs: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": settings.db_request_timeout_seconds}
            # One connection: writers queue on the pool (FIFO) instead of in SQLite's busy
            # handler, whose retries back off to 100 ms sleeps — under bursts that made
            # single statements take seconds (measured by the benchmark: 4-10 failed turns
            # per 100-stream phase before, none after). No code holds a transaction open
            # across an await on anything but the database.
            kwargs.update(poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
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
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.dialect = url.get_backend_name()
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One session in one transaction, committed on success, bounded in time."""
        try:
            async with asyncio.timeout(self.request_timeout):
                async with self._sessions() as session, session.begin():
                    yield session
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
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def ping(self) -> None:
        async with self.transaction() as session:
            from sqlalchemy import text

            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade_to_head(connection: Connection) -> None:
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
