"""One engine, short transactions, and a database that fails fast instead of hanging.

``Database.transaction()`` is the only way code touches SQL: one connection per request
(or per step of a chat turn), bounded in time, with driver errors that mean "the
database is unreachable" turned into ``DatabaseUnavailable``.

Around it: ``engines`` builds each dialect's engine and pool, ``sqlite_inline`` runs
SQLite on the event loop, ``db_errors`` sorts driver errors, ``schema_upgrade`` runs
the migrations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Dialect, Engine, Result, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.typing import TupleAny

from aichat_backend.config import Settings
from aichat_backend.errors import DatabaseUnavailable, InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.store.db_errors import is_bad_data, is_unavailable
from aichat_backend.store.engines import postgres_engine, sqlite_engine
from aichat_backend.store.schema_upgrade import MIGRATIONS_DIR, REVISION_QUERY, upgrade_to_head
from aichat_backend.store.sqlite_inline import InlineConnection, WalCheckpointer

__all__ = [
    "MIGRATIONS_DIR",
    "SCHEMA_REVISION",
    "Database",
    "InlineConnection",
    "Tx",
    "WalCheckpointer",
]

log = logging.getLogger(__name__)

# The newest migration's revision: a database there needs no alembic at start-up.
# tests/unit/test_schema_revision.py fails when a new migration is added without this.
SCHEMA_REVISION = "0010"


class Tx(Protocol):
    """What repositories may do inside ``Database.transaction()``: Core statements only.

    PostgreSQL hands out an ``AsyncConnection``; SQLite an ``InlineConnection``.
    """

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[*TupleAny]: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]: ...


class Database:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.sqlalchemy_url()
        self.request_timeout = settings.db_request_timeout_seconds
        url = make_url(self.url)
        self.dialect = url.get_backend_name()
        self._engine: AsyncEngine | None = None
        self._inline: Engine | None = None
        self._checkpoints: WalCheckpointer | None = None
        if self.dialect == "sqlite":
            self._inline = sqlite_engine(url, settings)
            self._inline_lock = asyncio.Lock()
            if url.database and url.database != ":memory:":
                self._checkpoints = WalCheckpointer(url.database)
        else:
            self._engine = postgres_engine(url, settings)

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
            if is_bad_data(exc):
                # A value the database refuses (a backstop: validation should catch it first).
                raise InvalidArgument(
                    "a value in the request cannot be stored (invalid characters or too long)",
                    reason=Reason.INVALID_DATA,
                ) from exc
            if is_unavailable(exc):
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
                    upgrade_to_head(conn)
            return
        assert self._engine is not None
        async with self._engine.begin() as aconn:
            await aconn.run_sync(upgrade_to_head)

    async def at_newest_revision(self) -> bool:
        return await self._schema_revision() == SCHEMA_REVISION

    async def _schema_revision(self) -> str | None:
        try:  # not through read(): a new database has no table, which is no outage
            if self._inline is not None:
                with self._inline.connect() as conn:
                    found = conn.scalar(REVISION_QUERY)
            else:
                assert self._engine is not None
                async with asyncio.timeout(self.request_timeout), self._engine.connect() as aconn:
                    found = await aconn.scalar(REVISION_QUERY)
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
