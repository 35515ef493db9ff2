"""The backend, run as ``aichat-backend serve``, with every SQL statement written down.

For the benchmark's "database statements and time per turn": SQLAlchemy's cursor events
(count, verb, table, time from send to result) and every ``Database.transaction()`` (wall
time from entering to committed), each tagged with the RPC's request id and stamped with
CLOCK_MONOTONIC, which every process on the machine shares — so the benchmark can line
statements up with the moment the upstream saw the request and the moment the client got
its first token. Used only in its own phase: the timing arms run the plain CLI.

    BENCH_DBPROBE_OUT=/tmp/x.jsonl python -m aichat_devtools.bench_dbprobe
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from aichat_backend.store.database import Tx

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)
_MAIN_VERB = re.compile(r"\b(INSERT|UPDATE|DELETE|SELECT)\b", re.IGNORECASE)


def _classify(statement: str) -> tuple[str, str]:
    """(verb, table) of a statement; a ``WITH`` statement is named by its main part
    (``WITH claimed AS (UPDATE …) INSERT INTO messages …`` is an INSERT into messages),
    so a write hidden behind a CTE still counts as a write."""
    text = statement.strip()
    if not text:
        return "?", ""
    body = text
    if text[:4].upper() == "WITH":
        depth, main = 0, len(text)
        for i, ch in enumerate(text):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i > 4 and _MAIN_VERB.match(text, i):
                main = i
                break
        body = text[main:]
    verb = body.split(None, 1)[0].upper() if body else "?"
    table = _TABLE.search(body)
    return verb, table.group(1) if table else ""


def install(path: str) -> None:
    from aichat_backend import request_context
    from aichat_backend.store.database import Database

    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    starts: dict[int, float] = {}

    def write(record: list[Any]) -> None:
        out.write(json.dumps(record) + "\n")

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        starts[id(cursor)] = time.monotonic()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        end = time.monotonic()
        start = starts.pop(id(cursor), end)
        verb, table = _classify(statement)
        write(
            [
                "stmt",
                start,
                end - start,
                verb,
                table,
                request_context.current_request_id(),
                " ".join(statement.split())[:160],
            ]
        )

    @event.listens_for(Engine, "commit")
    def commit(conn: Any) -> None:
        write(["commit", time.monotonic(), request_context.current_request_id()])

    # Reads and one-statement units count as units of work too (the begin of a turn is
    # one statement on PostgreSQL), so the figures compare with earlier runs.
    for name in ("transaction", "read", "statement"):
        setattr(Database, name, timed_unit(getattr(Database, name), write))


# Depth of probed units in this task: SQLite's statement() is a transaction(), which
# must count once.
_unit_depth: ContextVar[int] = ContextVar("bench_dbprobe_depth", default=0)


def timed_unit(original: Any, write: Callable[[list[Any]], None]) -> Any:
    """``original`` (a ``Database`` unit-of-work method), writing ``["tx", start, end,
    request id, ok]`` for each outermost unit."""

    @asynccontextmanager
    async def wrapper(self: Any) -> AsyncIterator[Tx]:
        from aichat_backend import request_context

        depth = _unit_depth.get()
        token = _unit_depth.set(depth + 1)
        start = time.monotonic()
        ok = False
        try:
            async with original(self) as tx:
                yield tx
            ok = True
        finally:
            _unit_depth.reset(token)
            if depth == 0:
                write(["tx", start, time.monotonic(), request_context.current_request_id(), ok])

    return wrapper


def main() -> None:
    install(os.environ["BENCH_DBPROBE_OUT"])
    from aichat_backend.cli import main as cli_main

    raise SystemExit(cli_main(sys.argv[1:] or ["serve", "--env-only"]))


if __name__ == "__main__":
    main()
