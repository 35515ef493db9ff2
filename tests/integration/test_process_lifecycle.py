"""The service as operators run it: the real console script in a child process.

Start-up readiness, graceful shutdown on SIGTERM/SIGINT, configuration errors, the
``--env-only`` flag, durability across restarts, ``migrate``, and the access log.

A child's start-up costs seconds of CPU (it imports every provider SDK), so each
serving child does more than one job and independent children run at the same time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import session_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_backend import logs
from tests.support.grpc_helpers import error_info, md
from tests.support.serve_process import ServeProcess, child_env, run_to_exit
from tests.support.server import make_settings, running_server

SESSION_SERVICE = spb.DESCRIPTOR.services_by_name["SessionService"].full_name
START_WITHIN = 60.0  # generous: imports on a loaded 2-core machine (30 s was seen to fail)
GRACE = 0.5
SECRET = "SECRET-TITLE-XYZ"


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    """Start ``aichat-backend`` children; any left running are killed at teardown."""
    started: list[ServeProcess] = []

    async def start(*args: str, env: dict[str, str], cwd: Path | None = None) -> ServeProcess:
        proc = await ServeProcess.start(*args, env=env, cwd=cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        await proc.ensure_dead()


async def _refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def _assert_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SESSION_SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def _graceful_stop(proc: ServeProcess, port: int, sig: signal.Signals) -> None:
    """Signal the child and check the whole shutdown: NOT_SERVING to health watchers,
    exit code 0 within grace + 5 s even with a stream open, the port closed."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        # A Watch stream never ends by itself: the process must still exit within the
        # grace period, and the stream must see NOT_SERVING before the server goes away.
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        first = await watch.read()
        assert first is not grpc.aio.EOF
        assert first.status == health_pb2.HealthCheckResponse.SERVING

        signalled = time.monotonic()
        proc.send_signal(sig)
        seen = await asyncio.wait_for(watch.read(), GRACE + 5)
        assert seen is not grpc.aio.EOF
        assert seen.status == health_pb2.HealthCheckResponse.NOT_SERVING, sig

        rc = await proc.wait_exit(GRACE + 5)
        assert rc == 0, (sig, proc.stderr)
        assert time.monotonic() - signalled < GRACE + 5
        # The stream was ended by the server, not left hanging.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while await asyncio.wait_for(watch.read(), 5) is not grpc.aio.EOF:
                pass
        assert ended.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

    assert await _refuses_connections(port), sig
    messages = [e.get("msg") for e in proc.json_logs()]
    assert "shutdown requested" in messages and "stopped" in messages, sig
    assert not [e for e in proc.json_logs() if e.get("level") in ("error", "critical")]
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(60)
async def test_env_only_ignores_dotenv_and_sigint_stops_gracefully(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    """A .env in the working directory with a bad value: ``serve`` reads it and exits 2
    naming the variable; ``serve --env-only`` ignores it, serves, and stops on SIGINT."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (workdir / ".env").write_text("AICHAT_DB_PORT=abc\n")
    env = child_env(tmp_path / "data", shutdown_grace_seconds=str(GRACE))

    async def without_flag() -> None:
        rc, out, err = await run_to_exit("serve", env=env, cwd=workdir, timeout=START_WITHIN)
        assert rc == 2, (out, err)
        assert "AICHAT_DB_PORT" in err
        assert "Traceback" not in err

    async def with_flag() -> None:
        proc: ServeProcess = await spawn("serve", "--env-only", env=env, cwd=workdir)
        port = await proc.wait_serving(START_WITHIN)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await _assert_serving(channel)
        await _graceful_stop(proc, port, signal.SIGINT)

    await asyncio.gather(without_flag(), with_flag())


@pytest.mark.timeout(60)
async def test_sigterm_restart_keeps_data_and_access_log_is_safe(
    spawn: Callable[..., Any], tmp_path: Path
) -> None:
    """Serve, create a session, SIGTERM (graceful), serve again on the same data dir: the
    session is still there. Every RPC leaves one JSON access-log line with method, code,
    duration, user and request id, and the request's text never reaches the logs."""
    env = child_env(tmp_path, shutdown_grace_seconds=str(GRACE))
    user = "restart-user"

    first: ServeProcess = await spawn("serve", env=env)
    port = await first.wait_serving(START_WITHIN)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _assert_serving(channel)
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        created = await sessions.CreateSession(
            spb.CreateSessionRequest(
                session=rpb.Session(display_name=SECRET, system_prompt=SECRET + "-PROMPT"),
                session_id="kept",
            ),
            metadata=md(user, ("x-request-id", "rid-create-1")),
            timeout=10,
        )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await sessions.GetSession(
                spb.GetSessionRequest(name="sessions/absent"),
                metadata=md(user, ("x-request-id", "rid-get-2")),
                timeout=10,
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(missing.value).metadata["request_id"] == "rid-get-2"
    # Each RPC is logged once it has finished: wait for the second one's line.
    await first.wait_for_log(lambda e: e.get("request_id") == "rid-get-2", 10)
    await _graceful_stop(first, port, signal.SIGTERM)

    access = [e for e in first.json_logs() if e.get("msg") == "rpc"]
    by_request = {e["request_id"]: e for e in access}
    create_line = by_request["rid-create-1"]
    assert create_line["method"] == "/aichat.v1.SessionService/CreateSession"
    assert create_line["code"] == "OK"
    assert create_line["user"] == user
    assert isinstance(create_line["duration_ms"], (int, float))
    assert create_line["duration_ms"] >= 0
    get_line = by_request["rid-get-2"]
    assert get_line["method"] == "/aichat.v1.SessionService/GetSession"
    assert get_line["code"] == "NOT_FOUND"
    assert get_line["user"] == user
    assert isinstance(get_line["duration_ms"], (int, float))

    second: ServeProcess = await spawn("serve", env=env)
    port = await second.wait_serving(START_WITHIN)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        got = await sessions.GetSession(
            spb.GetSessionRequest(name=created.name), metadata=md(user), timeout=10
        )
        assert got == created
        listed = await sessions.ListSessions(
            spb.ListSessionsRequest(), metadata=md(user), timeout=10
        )
        assert [s.name for s in listed.sessions] == [created.name]
    second.send_signal(signal.SIGTERM)
    assert await second.wait_exit(GRACE + 5) == 0, second.stderr

    for proc in (first, second):
        assert SECRET not in proc.stderr
        assert "Traceback" not in proc.stderr


BAD_SETTINGS = {
    "AICHAT_DB_PORT": "abc",
    "AICHAT_SHUTDOWN_GRACE_SECONDS": "-1",
    "AICHAT_LOG_LEVEL": "loud",
}


@pytest.mark.timeout(60)
async def test_bad_settings_exit_2_naming_each_variable(tmp_path: Path) -> None:
    """All three bad at once (one start-up instead of three): exit code 2, and the
    message names every offending variable, not just the first."""
    env = child_env(tmp_path / "data")
    env.update(BAD_SETTINGS)
    rc, out, err = await run_to_exit("serve", env=env, cwd=tmp_path, timeout=START_WITHIN)
    assert rc == 2, (out, err)
    for variable in BAD_SETTINGS:
        assert variable in err, (variable, err)
    assert "Traceback" not in err
    assert not (tmp_path / "data").exists(), "nothing is created before validation"


@pytest.mark.timeout(60)
async def test_migrate_reports_up_to_date(tmp_path: Path) -> None:
    # A fresh database here; an existing one is migrated at every `serve` start (see the
    # restart test), so one run covers both paths without another process start-up.
    rc, out, err = await run_to_exit(
        "migrate", env=child_env(tmp_path), cwd=tmp_path, timeout=START_WITHIN
    )
    assert rc == 0, err
    assert "up to date" in out
    assert (tmp_path / "aichat.db").exists()


@pytest.mark.timeout(30)
async def test_debug_log_level_does_not_leak_request_text(tmp_path: Path) -> None:
    """At AICHAT_LOG_LEVEL=debug no library logs SQL parameters or request bodies.

    In-process (the same ``logs.configure`` the CLI calls) to spare a process start-up;
    the root logger and every logger level are restored afterwards.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {n: logging.getLogger(n).level for n in logging.root.manager.loggerDict}
    stream = io.StringIO()
    try:
        logs.configure("debug", "json", stream)
        settings = make_settings(
            f"sqlite:///{tmp_path / 'aichat.db'}", data_dir=tmp_path, log_level="debug"
        )
        async with running_server(settings) as server:
            created = await server.sessions.CreateSession(
                spb.CreateSessionRequest(
                    session=rpb.Session(display_name=SECRET, system_prompt=SECRET)
                ),
                metadata=md("debug-user", ("x-request-id", "rid-debug")),
            )
            await server.sessions.GetSession(
                spb.GetSessionRequest(name=created.name), metadata=md("debug-user")
            )
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    text = stream.getvalue()
    assert '"request_id": "rid-debug"' in text  # the capture really saw this RPC
    assert SECRET not in text
