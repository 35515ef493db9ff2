"""`make run` with real processes on free ports: every way of stopping it stops all it
started, the next one then starts cleanly on the same ports, and "running" means running."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.dev_stack import (
    BANNER,
    Ports,
    alive,
    dev_run,
    stack_env,
    wait_until,
    workdir_like_checkout,
)

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]

STOP_LIMIT = 40.0  # the backend's own shutdown grace (10 s) and then some


def assert_reachable_now(ports: Ports) -> None:
    """What the banner promises, checked at once (no retry): gRPC SERVING, Envoy 200."""
    with grpc.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    url = f"http://127.0.0.1:{ports.envoy}/v1/chat/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200


def assert_free(ports: Ports, *, but: int = 0) -> None:
    for port in {ports.grpc, ports.envoy, ports.admin, ports.fake} - {but}:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # raises while anything still listens there


def test_every_way_of_stopping_make_run_stops_everything(tmp_path: Path) -> None:
    ports = Ports.pick()
    work = workdir_like_checkout(tmp_path / "checkout")
    env = stack_env(ports)
    ways = [
        ("SIGTERM to aichat-dev run", signal.SIGTERM, False),
        ("Ctrl-C (SIGINT)", signal.SIGINT, False),
        ("the terminal closing (SIGHUP)", signal.SIGHUP, False),
        ("aichat-dev run killed outright (SIGKILL)", signal.SIGKILL, False),
        ("its parent killed outright (make dying)", signal.SIGKILL, True),
    ]
    for what, sig, kill_parent in ways:
        with dev_run(work, env, under_shell=kill_parent) as run:
            # Also proves the previous way of stopping left the ports free.
            run.wait_for(BANNER)
            assert_reachable_now(ports)
            supervisor = run.supervisor_pid()
            started = run.snapshot()
            names = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in started]
            for part in (b"fake_llm", b"aichat_backend\x00serve", b"envoy", b"mcp-tasks"):
                assert any(part in n for n in names), (what, part, names)
            os.kill(run.proc.pid if kill_parent else supervisor, sig)
            wait_until(
                f"everything `make run` started is gone after {what}",
                lambda started=started: not any(alive(p, t) for p, t in started.items()),
                STOP_LIMIT,
            )
            if not kill_parent and sig != signal.SIGKILL:
                assert run.wait_exit() == 0, run.stderr
            assert_free(ports)


def test_a_port_taken_is_a_clear_error_and_nothing_is_left(tmp_path: Path) -> None:
    ports = Ports.pick()
    work = workdir_like_checkout(tmp_path / "checkout")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.envoy))
        taken.listen()
        with dev_run(work, stack_env(ports)) as run:
            code = run.wait_exit(120)
            assert code == 1, run.stderr
            assert "AICHAT_DEV_ENVOY_PORT" in run.stderr, run.stderr
            assert BANNER not in run.stderr
            # The backend and the fake model it had started are stopped too.
            assert_free(ports, but=ports.envoy)


@pytest.mark.parametrize(
    "model",
    [
        {},  # the fake model: its port is taken first
        # A real provider's key (never called: no check, no message): the backend's port.
        {
            "AICHAT_API_KEY": "k",
            "AICHAT_LLM_BASE_URL": "http://127.0.0.1:9/v1",
            "AICHAT_MODEL_CHECK": "false",
        },
    ],
    ids=["fake-model", "provider-key"],
)
def test_a_second_make_run_on_the_same_ports_refuses_to_start(
    tmp_path: Path, model: dict[str, str]
) -> None:
    """Issue 30: the second copy's readiness probe was answered by the first one, so it
    printed "aichat is running." (and tracebacks) while its own backend had failed."""
    ports = Ports.pick()
    env = stack_env(ports, **model)
    with dev_run(workdir_like_checkout(tmp_path / "first"), env) as first:
        first.wait_for(BANNER)
        with dev_run(workdir_like_checkout(tmp_path / "second"), env) as second:
            code = second.wait_exit(120)
            assert code == 1, second.stderr
            assert BANNER not in second.stderr
            assert "Traceback" not in second.stderr, second.stderr
            assert "is taken" in second.stderr, second.stderr
            assert "AICHAT_GRPC_ADDRESS" in second.stderr, second.stderr
        # The first one is untouched by the attempt.
        assert_reachable_now(ports)
