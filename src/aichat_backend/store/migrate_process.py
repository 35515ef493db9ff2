"""Schema migrations for a serving process, run in a child so alembic never lives in it.

alembic (with mako and the pygments it pulls in) stays resident once imported. A server
that created its schema in-process held ~10 MiB more for its whole life: idle RSS 120.5
MiB after a first start against 110.4 MiB after a restart on the same database (measured
on this service). The child is the `aichat-backend migrate` command itself, given the
database settings the server resolved, whatever their source (.env, YAML, environment).
"""

from __future__ import annotations

import asyncio
import sys

from aichat_backend.config import Settings, child_environment
from aichat_backend.store.database import Database

# What `migrate` needs to reach the database the way the server does, and to log alike.
_FORWARDED = (
    "db_connect_timeout_seconds",
    "db_statement_timeout_seconds",
    "db_request_timeout_seconds",
    "log_level",
    "log_format",
)


class MigrationFailed(Exception):
    """The schema could not be brought up to date; the child's log says why."""


def migrate_settings(settings: Settings) -> dict[str, str]:
    """The resolved database URL and what the child needs besides it, and nothing else: it
    cannot fail on a setting it does not use, nor read a .env or YAML file again."""
    values = {name: str(getattr(settings, name)) for name in _FORWARDED}
    values["database_url"] = settings.sqlalchemy_url()
    return values


async def migrate_in_child(settings: Settings, db: Database) -> None:
    """Bring the schema to the newest revision from a child process, if it is not there.

    A database already at the newest revision costs one query here and no child.
    """
    if await db.at_newest_revision():
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aichat_backend",
        "migrate",
        "--env-only",
        env=child_environment(migrate_settings(settings)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,  # "up to date": the server says more itself
        # stderr is the server's own: the child's log lines land in the same stream.
    )
    try:
        code = await child.wait()
    except asyncio.CancelledError:
        child.kill()  # a server stopped while starting leaves no migration running behind it
        raise
    if code != 0:
        raise MigrationFailed(
            f"the database schema could not be brought up to date (`aichat-backend migrate` "
            f"exited with {code}; its log is above)"
        )
