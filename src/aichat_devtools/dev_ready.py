"""When `make run` may say "running": the backend's health says SERVING and Envoy answers.

Each wait is bounded and watches the child it waits on, so a backend that exits at start
(a port taken, a bad setting) is reported at once with what to do, not after the bound.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

import grpc
from aichat.v1 import chat_service_pb2, chat_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

POLL_SECONDS = 0.1
# A channel that failed to connect (the backend not up yet) retries with a backoff that
# grows to minutes by default: keep it short, or SERVING is noticed seconds late.
_PROBE_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
]


class StartError(Exception):
    """The stack did not come up; the message says what to do."""


def check_free(ports: Sequence[tuple[str, int, str]]) -> None:
    """Refuse to start when a port we are about to listen on is taken.

    Checked before anything starts: a second `make run` on the same ports would otherwise
    have its readiness probes answered by the first one and announce itself as running.
    ``ports``: (host, port, the setting that moves it).
    """
    for host, port, setting in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            # As the servers bind: a port whose last connections are in TIME_WAIT is free,
            # one something listens on is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                raise StartError(
                    f"port {port} ({host}) is taken: is another `make run` running? "
                    f"Stop it, or set {setting} to a free port"
                ) from None


def _wait(
    what: str,
    proc: subprocess.Popen[str],
    ready: Callable[[], bool],
    limit: float,
    exit_hint: str,
) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None:
            raise StartError(
                f"{what} exited (code {proc.returncode}) before it was ready; {exit_hint}"
            )
        if time.monotonic() > deadline:
            raise StartError(
                f"{what} was not ready within {limit:.0f} s "
                "(AICHAT_DEV_START_TIMEOUT_SECONDS); its log is above"
            )
        time.sleep(POLL_SECONDS)


def wait_backend(
    proc: subprocess.Popen[str], target: str, limit: float, also: Sequence[str] = ()
) -> None:
    """Until grpc.health.v1 Check on ``target`` answers SERVING for "" and ``also``.

    ``also``: health names of dependencies the first example needs (the bundled tools
    server connects in the background; until then the demo model has no tools).
    """
    with grpc.insecure_channel(target, options=_PROBE_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            for name in ("", *also):
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1)
                except grpc.RpcError:
                    return False
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    return False
            return True

        _wait(
            f"the backend ({target})",
            proc,
            serving,
            limit,
            "its error is above (port taken? set AICHAT_GRPC_ADDRESS)",
        )


def wait_envoy(proc: subprocess.Popen[str], port: int, admin_port: int, limit: float) -> None:
    """Until Envoy's /v1/chat/health says 200: it listens and sees the backend healthy."""
    url = f"http://127.0.0.1:{port}/v1/chat/health"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    _wait(
        f"Envoy (127.0.0.1:{port}, admin {admin_port})",
        proc,
        answers,
        limit,
        f"is port {port} or {admin_port} taken? Set AICHAT_DEV_ENVOY_PORT and "
        "AICHAT_DEV_ENVOY_ADMIN_PORT",
    )


def list_models(target: str, auth_header: str) -> list[chat_service_pb2.Model]:
    """The catalogue as the running backend has it (what the banner reports)."""
    with grpc.insecure_channel(target) as channel:
        reply = chat_service_pb2_grpc.ChatServiceStub(channel).ListModels(
            chat_service_pb2.ListModelsRequest(),
            metadata=[(auth_header.lower(), "aichat-dev")],
            timeout=5,
        )
    return list(reply.models)
