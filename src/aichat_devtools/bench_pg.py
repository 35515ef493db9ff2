"""The PostgreSQL side of a run: the admin connection, one fresh database per backend,
and the server's statistics the report compares between phases.
"""

from __future__ import annotations

import uuid

from aichat_devtools.bench_run import Run


async def pg_admin_connect(run: Run) -> bool:
    try:
        import asyncpg  # type: ignore[import-untyped]

        run.pg_conn = await asyncpg.connect(run.pg_admin, timeout=5)
        return True
    except Exception as exc:
        run.skipped["B-postgres"] = f"PostgreSQL unreachable: {type(exc).__name__}: {exc}"
        return False


async def pg_create(run: Run) -> str:
    name = f"aichat_bench_{uuid.uuid4().hex[:10]}"
    await run.pg_conn.execute(f'CREATE DATABASE "{name}"')
    run.pg_databases.append(name)
    host = run.pg_admin.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host}/{name}"


async def pg_stats(run: Run, database: str) -> dict[str, float]:
    await run.pg_conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await run.pg_conn.fetchrow(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted,"
        " tup_updated, tup_deleted, blks_hit, blks_read, active_time, session_time"
        " FROM pg_stat_database WHERE datname = $1",
        database,
    )
    return {k: float(v or 0) for k, v in dict(row or {}).items()}
