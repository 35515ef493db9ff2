"""Command line: `aichat-backend serve | migrate | health | web-config | mcp-tasks`.

The development commands (the local demo, dev tokens, the benchmark) are `aichat-dev`,
from the separate `aichat_devtools` package: nothing here imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from aichat_backend import logs

if TYPE_CHECKING:
    import grpc

    from aichat_backend.config import Settings

EXIT_CONFIG = 2


def _settings(args: argparse.Namespace) -> Settings:
    # Imported here, not at the top: `mcp-tasks`, started once per stdio connection,
    # reads no settings, and pydantic-settings is a tenth of its start.
    from aichat_backend.config import ConfigError, load_settings

    try:
        return load_settings(env_only=getattr(args, "env_only", False))
    except ConfigError as exc:
        print(f"aichat-backend: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)  # before the heavy imports: a bad setting fails at once
    from aichat_backend.config import ConfigError
    from aichat_backend.process import serve
    from aichat_backend.server import CannotListen
    from aichat_backend.store.migrate_process import MigrationFailed

    logs.configure(settings.log_level, settings.log_format)
    try:
        return asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"aichat-backend: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (MigrationFailed, CannotListen) as exc:
        print(f"aichat-backend: {exc}", file=sys.stderr)
        return 1


def _cmd_migrate(args: argparse.Namespace) -> int:
    from aichat_backend.store.database import Database

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)

    async def run() -> None:
        db = Database(settings)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:  # unreachable, refused, a failing migration: said in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"aichat-backend: migrate failed: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    print("database schema is up to date")
    return 0


def _cmd_mcp_tasks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aichat_backend.tools.tasks_server import run

    # Deliberately not load_settings(): a stdio child starts with a clean environment and
    # must not read the backend's .env (its secrets); the default follows data_dir's.
    if args.db:
        db = Path(args.db)
    else:
        from aichat_backend.config import Settings

        db = Path(Settings.model_fields["data_dir"].default) / "mcp-tasks.db"
    return run(args.transport, db=db, host=args.host, port=args.port)


def _cmd_web_config(args: argparse.Namespace) -> int:
    from aichat_backend.web_config import page_config_json

    text = page_config_json(_settings(args))
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    """Exit 0 when the server answers SERVING (container and supervisor probes)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = args.address or probe_address(_settings(args).grpc_address)
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"unhealthy: {_rpc_error_text(exc)}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def probe_address(listen: str) -> str:
    """Where this machine reaches a server listening on ``listen`` (``0.0.0.0:p`` → local)."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def _rpc_error_text(exc: grpc.RpcError) -> str:
    """The code, the server's ErrorInfo reason and its message (why, and what to do)."""
    from grpc_status import rpc_status

    code = exc.code().name
    status = rpc_status.from_call(exc)
    reasons: list[str] = []
    if status is not None:
        from google.rpc import error_details_pb2

        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reasons.append(info.reason)
    parts = [code, *reasons]
    message = exc.details() or ""
    return " ".join(parts) + (f": {message}" if message else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aichat-backend", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--env-only",
        action="store_true",
        help="read configuration from the environment only (no .env, no YAML)",
    )
    serve.set_defaults(func=_cmd_serve)
    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--env-only", action="store_true")
    migrate.set_defaults(func=_cmd_migrate)
    health = sub.add_parser("health", help="check a running server's gRPC health")
    health.add_argument(
        "--address", help="host:port (default: AICHAT_GRPC_ADDRESS, a wildcard host as 127.0.0.1)"
    )
    health.add_argument("--service", default="")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(func=_cmd_health)
    web = sub.add_parser("web-config", help="write the web page's config.json (Envoy serves it)")
    web.add_argument("--out", help="file to write (default: standard output)")
    web.add_argument("--env-only", action="store_true")
    web.set_defaults(func=_cmd_web_config)
    tasks = sub.add_parser("mcp-tasks", help="run the bundled MCP server (tasks, calculator)")
    tasks.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    tasks.add_argument("--host", default="127.0.0.1", help="http only")
    tasks.add_argument("--port", type=int, default=8765, help="http only")
    tasks.add_argument("--db", help="SQLite file for the tasks (default ./var/mcp-tasks.db)")
    tasks.set_defaults(func=_cmd_mcp_tasks)
    args = parser.parse_args(argv)
    return int(args.func(args))
