"""The engine and connection pool for each dialect, and SQLite's connection pragmas.

PostgreSQL gets an async engine with a pool bounded in size and in connect and
statement time; SQLite a synchronous engine of one connection, used inline on the
event loop (see ``sqlite_inline``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from aichat_backend.config import Settings

WAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint


# No ping on checkout and no ROLLBACK on return: each costs a round trip per
# transaction (the benchmark saw three of each per turn on PostgreSQL), and we
# need neither. transaction() always ends its own transaction, and a connection
# that fails with a disconnect error is invalidated by SQLAlchemy, so the pool
# reconnects by itself (the fault-proxy tests prove the recovery).
_POOL_OPTIONS: dict[str, Any] = {"pool_pre_ping": False, "pool_reset_on_return": None}


def sqlite_engine(url: URL, settings: Settings) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # One connection, used inline on the event loop (see InlineConnection), one
    # transaction at a time: the lock queues them in order instead of SQLite's
    # busy handler, whose retries back off to 100 ms sleeps. The busy timeout is
    # for other processes on the same file (a second replica, `migrate`).
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": settings.db_request_timeout_seconds},
        **_POOL_OPTIONS,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    # pysqlite's legacy transactions send no BEGIN before the first write, so a
    # transaction's reads see no snapshot and a SAVEPOINT opening it commits on its own
    # RELEASE (a refused fork's nested insert outlived its rollback). The driver is put in
    # autocommit and SQLAlchemy sends BEGIN itself: SQLAlchemy's documented recipe.
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def postgres_engine(url: URL, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_connect_timeout_seconds,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds,
        },
        **_POOL_OPTIONS,
    )


def _sqlite_begin(conn: Connection) -> None:
    # On the driver's connection itself: through exec_driver_sql it cost ~15 µs a
    # transaction (SQLAlchemy's statement machinery), this is ~2 µs.
    conn.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (_sqlite_begin)
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
