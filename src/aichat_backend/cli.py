"""Command line: `aichat-backend serve | migrate | dev-run`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aichat_backend import logs
from aichat_backend.config import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(env_only=getattr(args, "env_only", False))
    except ConfigError as exc:
        print(f"aichat-backend: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    from aichat_backend.server import serve

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings))


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

    asyncio.run(run())
    print("database schema is up to date")
    return 0


def _cmd_dev_run(args: argparse.Namespace) -> int:
    from aichat_backend.devtools.dev_run import run

    return run()


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
    dev = sub.add_parser("dev-run", help="the local demo: server (+ fake model, Envoy)")
    dev.set_defaults(func=_cmd_dev_run)
    args = parser.parse_args(argv)
    return int(args.func(args))
