"""A serving process creates or upgrades its schema through a child `migrate`.

What alembic imports would otherwise stay in the server for good (~10 MiB, measured in
``store/migrate_process.py``). Each check runs in a fresh interpreter, because this test
process has alembic loaded already by other tests.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import postgres
from tests.support.serve_process import child_env, run_to_exit

PROBE = """
import asyncio, sys
from aichat_backend.config import load_settings
from aichat_backend.store.database import Database
from aichat_backend.store.migrate_process import migrate_in_child

async def main() -> None:
    settings = load_settings(environ={"AICHAT_DATABASE_URL": sys.argv[1]})
    db = Database(settings)
    try:
        print("before", await db.at_newest_revision())
        await migrate_in_child(settings, db)
        print("after", await db.at_newest_revision())
        await migrate_in_child(settings, db)  # current: nothing to do, no child
    finally:
        await db.dispose()

asyncio.run(main())
print("loaded", sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako"}))
"""


@pytest.fixture(params=["sqlite", "postgres"])
def new_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database_url: str
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    # pg_database_url (already migrated by other tests) proves the server is there.
    name, url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.mark.timeout(60)
async def test_a_new_database_gets_its_schema_without_alembic_in_the_caller(
    new_database_url: str, tmp_path: Path
) -> None:
    env = child_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PROBE,
        new_database_url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split("\n")[:3] == ["before False", "after True", "loaded []"], (
        out.decode(),
        err.decode(),
    )


@pytest.mark.timeout(60)
async def test_a_schema_that_cannot_be_created_stops_serve_with_a_clear_message(
    tmp_path: Path,
) -> None:
    # Nothing listens on port 1: the child's connect fails at once.
    env = child_env(
        tmp_path,
        database_url="postgresql://postgres@127.0.0.1:1/nowhere",
        db_connect_timeout_seconds="1",
    )
    rc, _, err = await run_to_exit("serve", "--env-only", env=env, timeout=50)
    assert rc == 1, err
    assert "database schema could not be brought up to date" in err, err
    assert "Traceback" not in err, err
