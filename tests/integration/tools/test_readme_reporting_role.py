"""docs/tools.md's example role for the SQL tool, run as written: it cannot read the chat tables.

The ``sql`` block under the bundled tool servers is applied to a real chat database (the
backend's own migrations) and a reporting database, with the example's names replaced by
this test's. The tool's role then reads the reporting tables it was granted, and nothing
of the chat database: not even a connection.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aichat_backend.config import Settings
from aichat_backend.store.database import Database
from aichat_backend.tools.readonly_db import DatabaseRefused, run_read_only
from tests.integration.tools.readonly_pg import _execute
from tests.support import postgres

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

README = Path(__file__).parents[3] / "docs" / "tools.md"
SPLIT = "-- Then, connected to the reporting database:"


def readme_example() -> str:
    text = README.read_text()
    start = text.index("Keep the chat\ndatabase out of its reach")
    match = re.search(r"```sql\n(.*?)```", text[start:], re.DOTALL)
    assert match, "no sql block after the SQL tool's paragraph"
    return match.group(1)


class Names:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.chat_db, self.reporting_db = f"ai_chat_{tag}", f"reporting_{tag}"
        self.backend, self.tool = f"ai_chat_user_{tag}", f"aichat_reporting_{tag}"

    def apply(self, sql: str) -> str:
        for name, mine in [
            ("ai_chat_user", self.backend),
            ("aichat_reporting", self.tool),
            ("ai_chat", self.chat_db),
            ("reporting", self.reporting_db),
        ]:
            sql = re.sub(rf"\b{name}\b", f'"{mine}"', sql)
        return sql

    def url(self, role: str, database: str) -> str:
        host = postgres.ADMIN_DSN.split("://", 1)[1].split("@", 1)[1].rsplit("/", 1)[0]
        return f"postgresql://{role}:change-me@{host}/{database}"


@pytest.fixture(scope="module")
def reachable() -> None:
    if (problem := postgres.available()) is not None:
        pytest.skip(f"PostgreSQL unreachable: {problem}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def names(reachable: None) -> AsyncIterator[Names]:
    names = Names()
    admin = postgres.ADMIN_DSN
    for database in (names.chat_db, names.reporting_db):
        await _execute(admin, f'CREATE DATABASE "{database}"')
    try:
        await _execute(admin, f'CREATE ROLE "{names.backend}" LOGIN')
        # The chat tables, made by the backend's own migrations, with a message in them.
        chat_admin = admin.rsplit("/", 1)[0] + f"/{names.chat_db}"
        db = Database(Settings(database_url=chat_admin.replace("://", "+asyncpg://", 1)))
        await db.migrate()
        await db.dispose()
        reporting_admin = admin.rsplit("/", 1)[0] + f"/{names.reporting_db}"
        await _execute(
            reporting_admin,
            "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2);"
            "CREATE TABLE customers (id int); CREATE TABLE payroll (salary int);",
        )
        on_server, on_reporting = readme_example().split(SPLIT)
        await _execute(admin, names.apply(on_server))
        await _execute(reporting_admin, names.apply(on_reporting))
        yield names
    finally:
        for database in (names.chat_db, names.reporting_db):
            await _execute(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (names.tool, names.backend):
            await _execute(admin, f'DROP ROLE IF EXISTS "{role}"')


async def test_the_tools_role_reads_what_it_was_granted(names: Names) -> None:
    url = names.url(names.tool, names.reporting_db)
    result = await run_read_only(url, "SELECT count(*) AS n FROM orders")
    assert result.rows == [["2"]]
    with pytest.raises(DatabaseRefused, match="permission denied for table payroll"):
        await run_read_only(url, "SELECT * FROM payroll")


async def test_the_tools_role_cannot_reach_the_chat_tables(names: Names) -> None:
    with pytest.raises(DatabaseRefused, match=f'permission denied for database "{names.chat_db}"'):
        await run_read_only(names.url(names.tool, names.chat_db), "SELECT * FROM messages")
    # Nor through the reporting database (no link between them).
    with pytest.raises(DatabaseRefused, match='relation "messages" does not exist'):
        await run_read_only(names.url(names.tool, names.reporting_db), "SELECT * FROM messages")


async def test_the_backends_role_still_connects_to_the_chat_database(names: Names) -> None:
    result = await run_read_only(names.url(names.backend, names.chat_db), "SELECT 1 AS one")
    assert result.rows == [["1"]]
