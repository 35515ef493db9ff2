"""`make run`: the whole service on this machine, stopped with everything it started.

Starts, as child processes: a fake model upstream when no AICHAT_API_KEY is set (loudly
announced: the server itself never falls back to a fake), the backend, and Envoy in
front of it when the Envoy binary and envoy.yaml are there. Says "running" only once the
backend's health check says SERVING and Envoy answers. Ctrl-C, SIGTERM, SIGHUP and the
death of its parent all stop every child (see ``dev_children``).

Ports (so that a second copy can run on one machine): AICHAT_GRPC_ADDRESS (the backend's
own setting), AICHAT_DEV_ENVOY_PORT, AICHAT_DEV_ENVOY_ADMIN_PORT, AICHAT_DEV_FAKE_LLM_PORT.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aichat_devtools import dev_banner, dev_envoy, dev_ready
from aichat_devtools.dev_children import (
    Children,
    Stopped,
    ignore_stop_signals,
    install_stop_handlers,
)


@dataclass(frozen=True)
class DevSettings:
    """What `make run` reads besides the backend's own settings (documented in README.md)."""

    grpc_address: str = "127.0.0.1:50051"
    envoy_port: int = dev_envoy.LISTENER_PORT
    envoy_admin_port: int = dev_envoy.ADMIN_PORT
    fake_llm_port: int = 50199
    start_timeout_seconds: float = 60.0
    shutdown_grace_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DevSettings:
        def number(name: str, default: float, kind: type[int] | type[float] = int) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None
            if value <= 0 or (kind is int and value > 65535):
                raise ValueError(f"{name} out of range: {raw!r}")
            return value

        address = env.get("AICHAT_GRPC_ADDRESS", "").strip() or cls.grpc_address
        port = address.rpartition(":")[2]
        if not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(
                f"AICHAT_GRPC_ADDRESS must be host:port with a fixed port, got {address!r}"
            )
        return cls(
            grpc_address=address,
            envoy_port=int(number("AICHAT_DEV_ENVOY_PORT", cls.envoy_port)),
            envoy_admin_port=int(number("AICHAT_DEV_ENVOY_ADMIN_PORT", cls.envoy_admin_port)),
            fake_llm_port=int(number("AICHAT_DEV_FAKE_LLM_PORT", cls.fake_llm_port)),
            start_timeout_seconds=number(
                "AICHAT_DEV_START_TIMEOUT_SECONDS", cls.start_timeout_seconds, float
            ),
            shutdown_grace_seconds=number(
                "AICHAT_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds, float
            ),
        )

    def listen_ports(self, *, fake: bool) -> list[tuple[str, int, str]]:
        """Where this run will listen: (host, port, the setting that moves it)."""
        host, _, port = self.grpc_address.rpartition(":")
        ports = [
            (host.strip("[]") or "0.0.0.0", int(port), "AICHAT_GRPC_ADDRESS"),
            ("127.0.0.1", self.envoy_port, "AICHAT_DEV_ENVOY_PORT"),
            ("127.0.0.1", self.envoy_admin_port, "AICHAT_DEV_ENVOY_ADMIN_PORT"),
        ]
        if fake:
            ports.append(("127.0.0.1", self.fake_llm_port, "AICHAT_DEV_FAKE_LLM_PORT"))
        return ports

    @property
    def probe_target(self) -> str:
        """Where this machine reaches the backend (a wildcard listen address included)."""
        host, _, port = self.grpc_address.rpartition(":")
        if host in ("", "0.0.0.0", "[::]", "::"):
            host = "127.0.0.1"
        return f"{host}:{port}"


# The demo model's pace (the README states it): slow enough to see an answer stream.
FAKE_TOKEN_DELAY_MS = 30
BUNDLED_TOOLS_HEALTH = "aichat.tools/tasks"  # server.py's TOOLS_HEALTH + the entry's name

FAKE_WARNING = """
################################################################################
#  NO AICHAT_API_KEY IS SET: the model is a LOCAL FAKE upstream on port {port}
#  that echoes your messages. Set AICHAT_API_KEY (and AICHAT_LLM_PROVIDER /
#  AICHAT_LLM_MODEL / AICHAT_LLM_BASE_URL) to talk to a real model.
################################################################################
"""


def say(text: str) -> None:
    """To the terminal, which may be gone (SIGHUP): never fail a shutdown over it."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _wait_for_line(
    proc: subprocess.Popen[str], needle: str, limit: float, port_variable: str
) -> None:
    deadline = time.monotonic() + limit
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise dev_ready.StartError(
                f"the fake model exited before it listened (port taken? set {port_variable})"
            )
        if needle in line:
            return
    raise dev_ready.StartError(f"the fake model did not say {needle!r} within {limit} s")


def _bundled_tools_file() -> Path:
    """An MCP servers file with the bundled tasks server, so a newcomer sees tools run."""
    var = Path("var")
    var.mkdir(exist_ok=True)
    path = var / dev_banner.BUNDLED_TOOLS_FILE
    entry = {
        "description": "Tasks and a calculator (bundled with aichat)",
        "command": sys.executable,
        "args": ["-m", "aichat_backend", "mcp-tasks", "--db", str(var.resolve() / "mcp-tasks.db")],
    }
    path.write_text(json.dumps({"mcpServers": {"tasks": entry}}, indent=2))
    return path


def run() -> int:
    install_stop_handlers()
    try:
        dev = DevSettings.from_env(os.environ)
    except ValueError as exc:
        say(f"make run: {exc}")
        return 2
    env = dict(os.environ)
    env.setdefault("AICHAT_LOG_FORMAT", "text")
    # A development machine often runs as root with its Python under /root, out of reach of
    # the users a root backend gives its stdio tool servers: run them as this user instead.
    env.setdefault("AICHAT_MCP_STDIO_USER", "same")
    children = Children()
    fake = False
    try:
        dev_ready.check_free(dev.listen_ports(fake=not env.get("AICHAT_API_KEY", "").strip()))
        if not env.get("AICHAT_API_KEY", "").strip():
            children.spawn(
                [
                    sys.executable,
                    "-m",
                    "aichat_devtools.fake_llm",
                    "--port",
                    str(dev.fake_llm_port),
                    "--token-delay-ms",
                    str(FAKE_TOKEN_DELAY_MS),
                ],
                stdout=subprocess.PIPE,
            )
            fake = True
            env.update(
                AICHAT_API_KEY="fake-key",
                AICHAT_LLM_PROVIDER="openai",
                AICHAT_LLM_MODEL=env.get("AICHAT_LLM_MODEL", "fake-echo"),
                AICHAT_LLM_BASE_URL=f"http://127.0.0.1:{dev.fake_llm_port}/v1",
            )
        wait_for: list[str] = []
        if not env.get("AICHAT_MCP_SERVERS_FILE"):
            env["AICHAT_MCP_SERVERS_FILE"] = str(_bundled_tools_file())
            wait_for.append(BUNDLED_TOOLS_HEALTH)
        env["AICHAT_GRPC_ADDRESS"] = dev.grpc_address
        backend = children.spawn([sys.executable, "-m", "aichat_backend", "serve"], env=env)
        if fake:  # started first, told about while the backend starts
            _wait_for_line(children.procs[0], "listening on", 15, "AICHAT_DEV_FAKE_LLM_PORT")
            say(FAKE_WARNING.format(port=dev.fake_llm_port))
        dev_ready.wait_backend(backend, dev.probe_target, dev.start_timeout_seconds, wait_for)
        # After the backend serves: Envoy's first health check then passes at once (one
        # that fails first leaves /v1/chat/health at 503 for several more seconds).
        envoy = dev_envoy.start(
            env, children.spawn, port=dev.envoy_port, admin_port=dev.envoy_admin_port
        )
        if envoy is not None:
            dev_ready.wait_envoy(
                envoy, dev.envoy_port, dev.envoy_admin_port, dev.start_timeout_seconds
            )
        say(dev_banner.render(dev, env, fake=fake, envoy=envoy is not None))
        ended = children.wait_any()
        say(
            f"make run: {dev_banner.child_name(ended)} exited (code {ended.returncode}); "
            "stopping the rest"
        )
        return ended.returncode or 1
    except Stopped:
        return 0
    except dev_ready.StartError as exc:
        say(f"make run: {exc}")
        return 1
    finally:
        ignore_stop_signals()
        children.stop_all(dev.shutdown_grace_seconds + 5, say)
