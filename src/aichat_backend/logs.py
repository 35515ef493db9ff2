"""Structured logs: one JSON object per line, tagged with the request they belong to.

Never log message text, tokens, API keys or Authorization headers: log lines carry ids,
names, codes and durations only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from aichat_backend import request_context

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_context.current_request_id() or None
        if not hasattr(record, "user"):
            record.user = request_context.peek_user()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {
            k: v
            for k, v in record.__dict__.items()
            if k not in _STANDARD and v is not None and not k.startswith("_")
        }
        return base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")


NOISY_LIBRARIES = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "sqlalchemy.engine",
    "alembic",
    "mcp",
    "asyncpg",
    "openai",
    "anthropic",
    "grpc",
    "asyncio",
)


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter drowns the access log, and at DEBUG some of it prints SQL parameters
    # and request bodies: message text must never reach the logs, whatever the level.
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
