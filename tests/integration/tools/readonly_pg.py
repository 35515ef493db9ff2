"""A throwaway PostgreSQL database for the bundled SQL tools, and an ordinary role on it.

The tools refuse a superuser, so the tests connect as a fresh LOGIN role with SELECT on
the two tables only (the machine's PostgreSQL trusts local connections). Both the database
and the role are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import postgres
from tests.support.ci import IN_CI

SETUP = """
CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL, price int NOT NULL);
INSERT INTO items (label, price) SELECT 'item ' || n, n * 10 FROM generate_series(1, 250) n;
CREATE TABLE users (id text PRIMARY KEY, name text NOT NULL, email text NOT NULL, plan text);
INSERT INTO users VALUES ('alice', 'Alice A.', 'alice@example.com', 'pro'),
                         ('bob', 'Bob B.', 'bob@example.com', 'free'),
                         ('x'' OR ''1''=''1', 'Tricky', 'tricky@example.com', 'free');
CREATE TABLE audit (n int);
-- A function with a side effect, callable by the tool's role (and SECURITY DEFINER, so
-- only the read-only transaction stands in its way).
CREATE FUNCTION bump() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS
  $$ BEGIN INSERT INTO audit VALUES (1); UPDATE items SET price = 0; RETURN 1; END $$;
"""
# What a write would change: a digest of every table the tests try to write to.
FINGERPRINT = """
SELECT (SELECT md5(string_agg(id || label || price, ',' ORDER BY id)) FROM items)
    || (SELECT md5(string_agg(id || name || email, ',' ORDER BY id)) FROM users)
    || (SELECT count(*) FROM audit)::text
    || (SELECT count(*) FROM pg_largeobject_metadata)::text
    || (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')::text
"""


@dataclass(frozen=True)
class ReadOnlyDatabase:
    admin_url: str  # the superuser's (setup, fingerprints)
    url: str  # the ordinary role's, as a deployment would configure it
    role: str

    async def fingerprint(self) -> str:
        return await _fetchval(self.admin_url, FINGERPRINT)


async def _fetchval(url: str, sql: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url, timeout=5)
    try:
        return str(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _execute(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def readonly_db() -> Iterator[ReadOnlyDatabase]:
    problem = postgres.available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name, sqlalchemy_url = postgres.create_database()
    admin_url = sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")
    role = f"aichat_ro_{uuid.uuid4().hex[:10]}"
    host = admin_url.split("://", 1)[1].split("@", 1)[1].rsplit("/", 1)[0]
    try:
        asyncio.run(_execute(admin_url, SETUP))
        asyncio.run(
            _execute(
                admin_url,
                f'CREATE ROLE "{role}" LOGIN; GRANT CONNECT ON DATABASE "{name}" TO "{role}";'
                f'GRANT USAGE ON SCHEMA public TO "{role}";'
                f'GRANT SELECT ON items, users TO "{role}";',
            )
        )
        yield ReadOnlyDatabase(admin_url, f"postgresql://{role}@{host}/{name}", role)
    finally:
        postgres.drop_database(name)
        asyncio.run(_execute(postgres.ADMIN_DSN, f'DROP ROLE IF EXISTS "{role}"'))
