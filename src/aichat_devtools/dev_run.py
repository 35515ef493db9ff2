"""`make run`: the whole service on the embedded defaults, one Ctrl-C to stop it.

Starts, as child processes: a fake model upstream when no AICHAT_API_KEY is set (loudly
announced: the server itself never falls back to a fake), the backend, and Envoy in
front of it when the Envoy binary and envoy.yaml are there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE_PORT = int(os.environ.get("AICHAT_DEV_FAKE_LLM_PORT", "50199"))

BANNER = """
aichat is running on the embedded defaults (SQLite under ./var).

  gRPC      127.0.0.1:50051   grpcurl -plaintext 127.0.0.1:50051 list
  create    grpcurl -plaintext -H 'x-user-id: alice' \\
              -d '{{"session":{{"display_name":"hello"}}}}' \\
              127.0.0.1:50051 aichat.v1.SessionService/CreateSession
  chat      grpcurl -plaintext -H 'x-user-id: alice' \\
              -d '{{"session":"sessions/<id>","text":"Hi there"}}' \\
              127.0.0.1:50051 aichat.v1.ChatService/StreamChat
{extra}
Stop with Ctrl-C.
"""

FAKE_WARNING = """
################################################################################
#  NO AICHAT_API_KEY IS SET: the model is a LOCAL FAKE upstream on port {port}
#  that echoes your messages. Set AICHAT_API_KEY (and AICHAT_LLM_PROVIDER /
#  AICHAT_LLM_MODEL / AICHAT_LLM_BASE_URL) to talk to a real model.
################################################################################
"""


def _wait_for_line(proc: subprocess.Popen[str], needle: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited before saying {needle!r}")
        if needle in line:
            return
    raise RuntimeError(f"child did not say {needle!r} within {limit} s")


def _bundled_tools_file() -> Path:
    """An MCP servers file with the bundled tasks server, so a newcomer sees tools run."""
    var = Path("var")
    var.mkdir(exist_ok=True)
    path = var / "dev-mcp-servers.json"
    entry = {
        "description": "Tasks and a calculator (bundled with aichat)",
        "command": sys.executable,
        "args": ["-m", "aichat_backend", "mcp-tasks", "--db", str(var.resolve() / "mcp-tasks.db")],
    }
    path.write_text(json.dumps({"mcpServers": {"tasks": entry}}, indent=2))
    return path


def run() -> int:
    env = dict(os.environ)
    env.setdefault("AICHAT_LOG_FORMAT", "text")
    children: list[subprocess.Popen[str]] = []
    extra = ""
    try:
        if not env.get("AICHAT_API_KEY", "").strip():
            fake = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aichat_devtools.fake_llm",
                    "--port",
                    str(FAKE_PORT),
                    "--token-delay-ms",
                    "30",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(fake)
            _wait_for_line(fake, "listening on", 15)
            env.update(
                AICHAT_API_KEY="fake-key",
                AICHAT_LLM_PROVIDER="openai",
                AICHAT_LLM_MODEL=env.get("AICHAT_LLM_MODEL", "fake-echo"),
                AICHAT_LLM_BASE_URL=f"http://127.0.0.1:{FAKE_PORT}/v1",
            )
            print(FAKE_WARNING.format(port=FAKE_PORT), file=sys.stderr, flush=True)
        if not env.get("AICHAT_MCP_SERVERS_FILE"):
            env["AICHAT_MCP_SERVERS_FILE"] = str(_bundled_tools_file())
        backend = subprocess.Popen(
            [sys.executable, "-m", "aichat_backend", "serve"], env=env, text=True
        )
        children.append(backend)
        from aichat_devtools import dev_envoy

        envoy = dev_envoy.start(env)
        if envoy is not None:
            children.append(envoy)
            extra = dev_envoy.banner()
        print(BANNER.format(extra=extra), file=sys.stderr, flush=True)
        return backend.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C must not leave children behind half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
