"""The bundled MCP server (``aichat-backend mcp-tasks``): seed 004's task tools + a calculator.

Every task belongs to the user named in the request ``_meta`` under ``io.aichat/user_id``
(the backend puts it there on every call): a call without one is a tool error, and no
query ever reaches another user's rows. A task id of another user reads as "not found",
the same as one that does not exist. Tasks live in this server's own SQLite file, not in
the backend's database: the server is a separate program with its own data.

Annotations drive the backend's default approval policy: ``list_tasks`` and
``calculate`` are read-only (they run at once); the others change data and so ask the
user first; ``delete_task`` is marked destructive.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel

from aichat_backend.tools.base import USER_ID_META_KEY
from aichat_backend.tools.calculator import CalculationError, calculate
from aichat_backend.tools.caller import caller_id

SERVER_NAME = "aichat-tasks"
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_TASKS_PER_USER = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    completed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks (user_id, id);
"""


class Task(BaseModel):
    id: int
    title: str
    description: str
    completed: bool
    created_at: str
    updated_at: str


class TaskList(BaseModel):
    tasks: list[Task]
    count: int


class DeletedTask(BaseModel):
    deleted: bool
    task: Task


class Calculation(BaseModel):
    expression: str
    result: int | float


class TaskStore:
    """Tasks in one SQLite file; every method takes the owner and filters by it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from the server's event loop only; statements are short.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute("PRAGMA journal_mode = WAL")  # several server processes may share it
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, user: str, title: str, description: str) -> Task:
        (count,) = self._db.execute(
            "SELECT count(*) FROM tasks WHERE user_id = ?", (user,)
        ).fetchone()
        if count >= MAX_TASKS_PER_USER:
            raise ToolError(f"you already have {MAX_TASKS_PER_USER} tasks; delete some first")
        now = _now()
        cursor = self._db.execute(
            "INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at)"
            " VALUES (?, ?, ?, 0, ?, ?)",
            (user, title, description, now, now),
        )
        assert cursor.lastrowid is not None
        return self.get(user, cursor.lastrowid)

    def get(self, user: str, task_id: int) -> Task:
        row = self._db.execute(
            "SELECT * FROM tasks WHERE user_id = ? AND id = ?", (user, task_id)
        ).fetchone()
        if row is None:
            raise ToolError(f"task {task_id} not found")
        return _task(row)

    def list(self, user: str, status: str) -> list[Task]:
        query = "SELECT * FROM tasks WHERE user_id = ?"
        if status == "pending":
            query += " AND completed = 0"
        elif status == "completed":
            query += " AND completed = 1"
        return [_task(r) for r in self._db.execute(query + " ORDER BY id", (user,))]

    def update(self, user: str, task_id: int, **changes: Any) -> Task:
        self.get(user, task_id)  # not found → ToolError before anything changes
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self._db.execute(
            f"UPDATE tasks SET {assignments}, updated_at = ? WHERE user_id = ? AND id = ?",
            (*changes.values(), _now(), user, task_id),
        )
        return self.get(user, task_id)

    def delete(self, user: str, task_id: int) -> Task:
        task = self.get(user, task_id)
        self._db.execute("DELETE FROM tasks WHERE user_id = ? AND id = ?", (user, task_id))
        return task


def build_server(db_path: Path, *, log_level: str = "WARNING") -> MCPServer:
    store = TaskStore(db_path)
    server: MCPServer = MCPServer(
        SERVER_NAME,
        instructions=(
            "Task tools act for the user named in the request _meta "
            f"({USER_ID_META_KEY}); calculate evaluates arithmetic safely."
        ),
        log_level=log_level,  # type: ignore[arg-type]
    )

    @server.tool(
        annotations=ToolAnnotations(
            title="Add a task",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        )
    )
    def add_task(title: str, ctx: Context, description: str = "") -> Task:
        """Add a task to the user's list."""
        return store.add(caller_id(ctx), _title(title), _description(description))

    @server.tool(
        annotations=ToolAnnotations(title="List tasks", read_only_hint=True, open_world_hint=False)
    )
    def list_tasks(
        ctx: Context, status: Literal["all", "pending", "completed"] = "all"
    ) -> TaskList:
        """List the user's tasks: all of them, or only pending or completed ones."""
        tasks = store.list(caller_id(ctx), status)
        return TaskList(tasks=tasks, count=len(tasks))

    @server.tool(
        annotations=ToolAnnotations(
            title="Complete a task",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        )
    )
    def complete_task(task_id: int, ctx: Context) -> Task:
        """Mark one of the user's tasks as completed."""
        return store.update(caller_id(ctx), task_id, completed=1)

    @server.tool(
        annotations=ToolAnnotations(
            title="Update a task",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        )
    )
    def update_task(
        task_id: int, ctx: Context, title: str | None = None, description: str | None = None
    ) -> Task:
        """Change the title and/or description of one of the user's tasks."""
        user = caller_id(ctx)
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = _title(title)
        if description is not None:
            changes["description"] = _description(description)
        if not changes:
            raise ToolError("give a new title or description")
        return store.update(user, task_id, **changes)

    @server.tool(
        annotations=ToolAnnotations(
            title="Delete a task",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        )
    )
    def delete_task(task_id: int, ctx: Context) -> DeletedTask:
        """Delete one of the user's tasks for good."""
        return DeletedTask(deleted=True, task=store.delete(caller_id(ctx), task_id))

    @server.tool(
        name="calculate",  # the Python name avoids shadowing the evaluator
        annotations=ToolAnnotations(title="Calculator", read_only_hint=True, open_world_hint=False),
    )
    def calculate_tool(expression: str) -> Calculation:
        """Evaluate an arithmetic expression: + - * / // % **, parentheses, pi, e, and
        abs round min max sqrt exp log log10 log2 sin cos tan asin acos atan floor ceil
        factorial."""
        try:
            return Calculation(expression=expression, result=calculate(expression))
        except CalculationError as exc:
            raise ToolError(str(exc)) from None

    return server


def run(transport: Literal["stdio", "http"], *, db: Path, host: str, port: int) -> int:
    if transport == "stdio":
        build_server(db).run("stdio")
    else:
        build_server(db, log_level="INFO").run("streamable-http", host=host, port=port)
    return 0


def _title(title: str) -> str:
    title = title.strip()
    if not title:
        raise ToolError("a task needs a title")
    if len(title) > MAX_TITLE:
        raise ToolError(f"titles are limited to {MAX_TITLE} characters")
    return title


def _description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise ToolError(f"descriptions are limited to {MAX_DESCRIPTION} characters")
    return description.strip()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        completed=bool(row["completed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
