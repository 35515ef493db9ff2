"""`make run`: the service on the embedded defaults, ready to poke with grpcurl."""

from __future__ import annotations

import os
import sys

BANNER = """
aichat is starting on the embedded defaults (SQLite under ./var).

  gRPC:     127.0.0.1:50051  (reflection on: grpcurl -plaintext 127.0.0.1:50051 list)
  try:      grpcurl -plaintext -H 'x-user-id: alice' -d '{"session":{"display_name":"hello"}}' \\
              127.0.0.1:50051 aichat.v1.SessionService/CreateSession

Stop with Ctrl-C.
"""


def run() -> int:
    from aichat_backend.cli import main

    print(BANNER, file=sys.stderr, flush=True)
    os.environ.setdefault("AICHAT_LOG_FORMAT", "text")
    return main(["serve"])
