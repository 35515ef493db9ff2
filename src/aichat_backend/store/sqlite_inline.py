"""SQLite run inline on the event loop: the connection behind ``Tx``, and the WAL
checkpointer that keeps fsyncs off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import Connection, Dialect, Result
from sqlalchemy.sql.base import Executable
from sqlalchemy.util.typing import TupleAny

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 1.0


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
