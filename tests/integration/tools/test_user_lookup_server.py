"""The bundled user lookup: the caller's own row only, whatever the model asks for."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aichat_backend.tools.pool import MCPPool
from tests.integration.tools.readonly_pg import ReadOnlyDatabase, readonly_db
from tests.integration.tools.support import call, make_pool, tool
from tests.support.tool_stack import servers_up

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]
__all__ = ["readonly_db"]


def lookup_entry(url: str, **env: str) -> dict[str, object]:
    return {
        "command": sys.executable,
        "args": ["-m", "aichat_backend.tools.user_lookup_server"],
        "env": {"AICHAT_USER_LOOKUP_DATABASE_URL": url, **env},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(readonly_db: ReadOnlyDatabase) -> AsyncIterator[MCPPool]:
    pool = make_pool(
        {
            "me": lookup_entry(readonly_db.url, AICHAT_USER_LOOKUP_COLUMNS="id, name, plan"),
            "me_all": lookup_entry(readonly_db.url),
        }
    )
    await pool.start()
    await servers_up(pool)
    yield pool
    await pool.aclose()


async def test_the_caller_gets_their_own_record(pool: MCPPool) -> None:
    alice = await call(pool, "me__my_profile", user="alice")
    assert not alice.is_error, alice.text
    assert alice.text.splitlines() == ["id: alice", "name: Alice A.", "plan: pro"]
    every_column = await call(pool, "me_all__my_profile", user="bob")
    assert "email: bob@example.com" in every_column.text
    assert tool(pool, "me__my_profile").approval_reason() is None  # read-only
    assert tool(pool, "me__my_profile").input_schema.get("properties", {}) == {}


@pytest.mark.parametrize(
    "arguments",
    [
        {"user_id": "bob"},
        {"id": "bob", "where": "1=1"},
        {"_meta": {"io.aichat/user_id": "bob"}},
    ],
)
async def test_another_users_row_is_never_returned(
    pool: MCPPool, arguments: dict[str, object]
) -> None:
    result = await call(pool, "me_all__my_profile", user="alice", **arguments)
    assert "bob" not in result.text.lower()
    if not result.is_error:
        assert "id: alice" in result.text


@pytest.mark.parametrize("user", ["nobody", "%", "' OR '1'='1", "alice' --", "ALICE"])
async def test_an_unknown_or_crafted_id_finds_nothing(pool: MCPPool, user: str) -> None:
    result = await call(pool, "me_all__my_profile", user=user)
    assert not result.is_error, result.text
    assert result.text == "There is no record for the current user."


async def test_an_id_that_looks_like_sql_is_only_ever_a_value(pool: MCPPool) -> None:
    # The row whose id really is that text is that user's own record, and only it.
    result = await call(pool, "me_all__my_profile", user="x' OR '1'='1")
    assert result.text.splitlines()[:2] == ["id: x' OR '1'='1", "name: Tricky"]
