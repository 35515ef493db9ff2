"""Other replicas' turns: PostgreSQL LISTEN on the channel every flush NOTIFYs (and on
the one CancelTurn NOTIFYs: the replica running the turn stops it at once).

One connection per process listens (outside the pool: a LISTEN holds its connection).
A reader of a turn running elsewhere registers a ``Watch`` and is woken when a flush
of that turn commits; it then reads the new rows itself, so a lost notification costs
latency (readers also poll every few seconds), never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from aichat_backend.store.turn_events_repo import CANCEL_CHANNEL, NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Watch:
    __slots__ = ("_event", "turn_id")

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Until woken or ``timeout`` passes, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


class Watches:
    """Readers waiting for turns stored by others (any backend: SQLite has no listener
    and its readers simply poll); and CancelTurn's word from other replicas."""

    def __init__(self) -> None:
        self._by_turn: dict[str, set[Watch]] = {}
        # Called with a turn id another replica was asked to cancel (see turns/cancel.py).
        self.on_cancel: Callable[[str], object] | None = None

    def watch(self, turn_id: str) -> Watch:
        w = Watch(turn_id)
        self._by_turn.setdefault(turn_id, set()).add(w)
        return w

    def unwatch(self, w: Watch) -> None:
        found = self._by_turn.get(w.turn_id)
        if found is not None:
            found.discard(w)
            if not found:
                del self._by_turn[w.turn_id]

    def notified(self, payload: str) -> None:
        if not self._by_turn:
            return
        for item in payload.split(","):
            for w in self._by_turn.get(item.partition(":")[0], ()):
                w.wake()

    def cancel_asked(self, turn_id: str) -> None:
        if self.on_cancel is not None:
            try:
                self.on_cancel(turn_id)
            except Exception:  # a listener callback must not end the listener
                log.exception("could not cancel a turn another replica was asked to stop")

    async def start(self) -> None:
        """Nothing to start without a listener."""

    async def close(self) -> None:
        """Nothing to close without a listener."""


def asyncpg_connect_args(sqlalchemy_url: str) -> dict[str, Any]:
    url = make_url(sqlalchemy_url)
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }
    ssl = url.query.get("ssl")
    if isinstance(ssl, str):
        args["ssl"] = ssl
    return {k: v for k, v in args.items() if v is not None}


class PgListener(Watches):
    """Watches woken by PostgreSQL NOTIFY; reconnects with backoff if the link drops."""

    def __init__(self, sqlalchemy_url: str, connect_timeout: float) -> None:
        super().__init__()
        self._args = asyncpg_connect_args(sqlalchemy_url)
        self._timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), context=contextvars.Context()
        )

    async def _run(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # the driver, present with PostgreSQL

        delay = 0.2
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(**self._args, timeout=self._timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                await conn.add_listener(CANCEL_CHANNEL, self._on_cancel)
                self.connected.set()
                delay = 0.2
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("turn events listener: %s; retrying", type(exc).__name__)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 1.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notified(payload)

    def _on_cancel(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.cancel_asked(payload)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
