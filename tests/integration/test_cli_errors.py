"""What the command line says when something is wrong (issue 30, item 6): one clear line
naming what to do, never a traceback, and the server's own reason when it gives one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.serve_process import child_env, run_to_exit
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(90)


async def test_serve_on_a_taken_port_says_so_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = child_env(tmp_path, grpc_address=f"127.0.0.1:{port}")
        code, _out, err = await run_to_exit("serve", env=env, timeout=60)
    assert code == 1, err
    assert "Traceback" not in err, err
    assert f"127.0.0.1:{port}" in err and "AICHAT_GRPC_ADDRESS" in err, err


async def test_health_for_an_unknown_service_shows_the_servers_reason(tmp_path: Path) -> None:
    async with running_server(make_settings(f"sqlite:///{tmp_path}/db.sqlite")) as server:
        address = f"127.0.0.1:{server.port}"
        code, out, err = await run_to_exit(
            "health", "--address", address, "--service", "aichat.nope", env=child_env(tmp_path)
        )
        assert code == 1
        assert "NOT_FOUND" in err and "HEALTH_SERVICE_UNKNOWN" in err, err
        # The server's message says which names there are.
        assert "aichat.readiness" in err, err
        code, out, err = await run_to_exit(
            "health", "--address", address, "--service", "aichat.readiness", env=child_env(tmp_path)
        )
        assert (code, out.strip()) == (0, "SERVING"), err


async def test_health_on_a_port_nobody_listens_on_says_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _out, err = await run_to_exit(
        "health", "--address", f"127.0.0.1:{port}", "--timeout", "1", env=child_env(tmp_path)
    )
    assert code == 1
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err, err
    assert "Traceback" not in err, err


async def test_health_probes_the_configured_address_by_default(tmp_path: Path) -> None:
    """The image's HEALTHCHECK names no address: a server moved off 50051 is still probed."""
    async with running_server(make_settings(f"sqlite:///{tmp_path}/db.sqlite")) as server:
        env = child_env(tmp_path, grpc_address=f"0.0.0.0:{server.port}")
        code, out, err = await run_to_exit("health", env=env)
        assert (code, out.strip()) == (0, "SERVING"), err
