"""Bundled MCP server: read-only SQL over a configured PostgreSQL database.

Run by the pool over stdio (``python -m aichat_backend.tools.sql_server``), configured by
its entry's ``env`` in the servers file:

- ``AICHAT_SQL_TOOL_DATABASE_URL`` (required): an ordinary role with SELECT grants only;
  a superuser or a member of the server-file/program roles is refused;
- ``AICHAT_SQL_TOOL_STATEMENT_TIMEOUT_MS`` (5000) and ``AICHAT_SQL_TOOL_MAX_ROWS`` (100);
- ``AICHAT_SQL_TOOL_MAX_CONNECTIONS`` (4) and ``…_MAX_CONNECTIONS_PER_USER`` (2): database
  connections open at once; a query past them waits its turn, then is refused.

Three layers stand between the model and a write: ``sql_guard`` (one statement, starting
with a read keyword: a clear error for the obvious cases), then PostgreSQL itself (one
command per prepared statement, a read-only transaction that is rolled back, the role's
grants). Both tools are annotated read-only, so they run without asking.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from aichat_backend.tools.caller import caller_id
from aichat_backend.tools.readonly_db import (
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_USER,
    ConnectionSlots,
    DatabaseRefused,
    QueryLimits,
    as_table,
)
from aichat_backend.tools.sql_guard import RefusedQuery, check_read_only

SERVER_NAME = "aichat-sql"
_LIST_TABLES = """
SELECT table_schema || '.' || table_name AS "table",
       string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS columns
FROM information_schema.columns
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
GROUP BY table_schema, table_name
ORDER BY 1
"""


class SqlToolSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AICHAT_SQL_TOOL_", extra="ignore")

    database_url: str = Field(
        description="PostgreSQL URL of a read-only role (required); a role that can become "
        "a superuser or read server files is refused."
    )
    statement_timeout_ms: int = Field(
        default=5_000, gt=0, le=600_000, description="Statement timeout of one query."
    )
    max_rows: int = Field(
        default=100, gt=0, le=10_000, description="Rows returned by one query (the rest is cut)."
    )
    max_connections: int = Field(
        default=MAX_CONNECTIONS,
        gt=0,
        le=100,
        description="Database connections this server holds at most.",
    )
    max_connections_per_user: int = Field(
        default=MAX_CONNECTIONS_PER_USER,
        gt=0,
        le=100,
        description="Database connections one user's queries hold at most.",
    )

    def limits(self) -> QueryLimits:
        return QueryLimits(statement_timeout_ms=self.statement_timeout_ms, max_rows=self.max_rows)


def build_server(settings: SqlToolSettings, *, log_level: str = "WARNING") -> MCPServer:
    url, limits = settings.database_url, settings.limits()
    connections = ConnectionSlots(settings.max_connections, settings.max_connections_per_user)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        instructions=(
            "Read-only SQL over a PostgreSQL database: list_tables shows what you may read; "
            "query runs one SELECT (or WITH, VALUES, TABLE, EXPLAIN, SHOW) statement."
        ),
        log_level=log_level,  # type: ignore[arg-type]
    )
    read_only = {"read_only_hint": True, "destructive_hint": False, "open_world_hint": False}

    @server.tool(annotations=ToolAnnotations(title="Run a read-only SQL query", **read_only))
    async def query(sql: str, ctx: Context) -> str:
        """Run one read-only SQL statement (PostgreSQL) and get the rows as a table.

        Writes, DDL and several statements at once are refused. Results stop after a
        fixed number of rows: add WHERE or LIMIT to see the ones you need."""
        try:
            statement = check_read_only(sql)
            result = await connections.run(caller_id(ctx), url, statement, (), limits)
            return as_table(result, limits.max_output_chars)
        except (RefusedQuery, DatabaseRefused) as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=ToolAnnotations(title="List the tables", **read_only))
    async def list_tables(ctx: Context) -> str:
        """List the tables and columns this tool may read."""
        try:
            result = await connections.run(caller_id(ctx), url, _LIST_TABLES, (), limits)
            return as_table(result, limits.max_output_chars)
        except DatabaseRefused as exc:
            raise ToolError(str(exc)) from None

    return server


def main() -> int:
    build_server(SqlToolSettings()).run("stdio")  # type: ignore[call-arg]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
