"""Bundled MCP server: the calling user's own record, from a configured read-only database.

The user is the one the backend names in ``_meta["io.aichat/user_id"]``; the tool takes no
arguments, so nothing the model says can point it at someone else. The query is fixed:
``SELECT <columns> FROM <table> WHERE <id column>::text = $1``, with the caller's id as
the only parameter, run read-only (see ``readonly_db``: an ordinary role, a rolled-back
read-only transaction, a statement timeout).

Run by the pool over stdio (``python -m aichat_backend.tools.user_lookup_server``) with
``AICHAT_USER_LOOKUP_DATABASE_URL`` (required), ``AICHAT_USER_LOOKUP_TABLE`` (``users``;
``schema.table`` allowed), ``AICHAT_USER_LOOKUP_ID_COLUMN`` (``id``) and
``AICHAT_USER_LOOKUP_COLUMNS`` (comma-separated; empty: every column the role may read).
"""

from __future__ import annotations

import re

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aichat_backend.tools.caller import caller_id
from aichat_backend.tools.readonly_db import ConnectionSlots, DatabaseRefused, QueryLimits

SERVER_NAME = "aichat-user-lookup"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _quoted(name: str, what: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"{what} must be a plain SQL name (letters, digits, _), got {name!r}")
    return ".".join(f'"{p}"' for p in parts)


class UserLookupSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AICHAT_USER_LOOKUP_", extra="ignore")

    database_url: str = Field(description="PostgreSQL URL of the user table's database (required).")
    table: str = Field(default="users", description="The user table (`schema.table` allowed).")
    id_column: str = Field(default="id", description="Its column holding the caller's user id.")
    columns: str = Field(
        default="", description="Comma-separated columns returned (empty: all of them)."
    )

    @field_validator("table", "id_column")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        _quoted(value, "the table and id column")
        return value

    @field_validator("columns")
    @classmethod
    def _plain_names(cls, value: str) -> str:
        for column in filter(None, (c.strip() for c in value.split(","))):
            if "." in column:
                raise ValueError(f"a column is a plain name, got {column!r}")
            _quoted(column, "each column")
        return value

    def query(self) -> str:
        columns = [c.strip() for c in self.columns.split(",") if c.strip()]
        selected = ", ".join(_quoted(c, "column") for c in columns) if columns else "*"
        table, key = _quoted(self.table, "table"), _quoted(self.id_column, "id column")
        return f"SELECT {selected} FROM {table} WHERE {key}::text = $1 LIMIT 2"


def build_server(settings: UserLookupSettings, *, log_level: str = "WARNING") -> MCPServer:
    url, sql, limits = settings.database_url, settings.query(), QueryLimits(max_rows=2)
    connections = ConnectionSlots()  # a burst of calls holds a few connections, not one each
    server: MCPServer = MCPServer(
        SERVER_NAME,
        instructions="my_profile returns the record of the user you are talking to.",
        log_level=log_level,  # type: ignore[arg-type]
    )

    @server.tool(
        annotations=ToolAnnotations(
            title="Look up my profile",
            read_only_hint=True,
            destructive_hint=False,
            open_world_hint=False,
        )
    )
    async def my_profile(ctx: Context) -> str:
        """The current user's own record (name, plan, and so on). Takes no arguments:
        it can only ever look up the user you are talking to."""
        user = caller_id(ctx)
        try:
            result = await connections.run(user, url, sql, (user,), limits)
        except DatabaseRefused as exc:
            raise ToolError(str(exc)) from None
        if not result.rows:
            return "There is no record for the current user."
        if len(result.rows) > 1:
            raise ToolError("the user table has more than one row for this user id")
        [row] = result.rows
        pairs = zip(result.columns, row, strict=True)
        return "\n".join(f"{column}: {value}" for column, value in pairs)

    return server


def main() -> int:
    build_server(UserLookupSettings()).run("stdio")  # type: ignore[call-arg]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
