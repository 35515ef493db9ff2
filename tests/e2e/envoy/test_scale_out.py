"""Two backend processes behind one Envoy, on one PostgreSQL and one Redis.

A session created through one replica is continued through the other, an approval asked
by one is resolved through the other, and the per-user rate limit holds across both.
"""

from __future__ import annotations

import copy
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx2
import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2, session_service_pb2_grpc

from aichat_devtools.dev_token import ensure_keys, make_token
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.support.envoy import envoy_in_front, render_for_test
from tests.support.grpc_helpers import error_info, md
from tests.support.http import TLS
from tests.support.serve_process import ServeProcess, child_env
from tests.support.tool_stack import tasks_server_entry

pytestmark = pytest.mark.timeout(90)


def with_second_endpoint(config: dict[str, Any], port: int) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "aichat_backend":
            endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            second = copy.deepcopy(endpoints[0])
            second["endpoint"]["address"]["socket_address"]["port_value"] = port
            endpoints.append(second)
    return config


class Replica:
    def __init__(self, process: ServeProcess, port: int) -> None:
        self.process = process
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.sessions = session_service_pb2_grpc.SessionServiceStub(self.channel)
        self.chat = chat_service_pb2_grpc.ChatServiceStub(self.channel)
        self.port = port

    async def turn(self, user: str, session: str, text: str) -> list[cpb.StreamChatResponse]:
        call = self.chat.StreamChat(
            cpb.StreamChatRequest(session=session, text=text), metadata=md(user)
        )
        return [e async for e in call]


@pytest.fixture
async def replicas(
    pg_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FakeLLMServer, Replica, Replica]]:
    servers_file = tmp_path / "mcp.json"
    servers_file.write_text(
        json.dumps({"mcpServers": {"tasks": tasks_server_entry(tmp_path / "tasks.db")}})
    )
    async with FakeLLMServer() as fake:
        settings = {
            "database_url": pg_database_url,
            "redis_url": "redis://127.0.0.1:6379/0",
            "llm_provider": "openai",
            "llm_model": "gpt-test",
            "llm_base_url": fake.base_url,
            "api_key": "k",
            "mcp_servers_file": str(servers_file),
            "rate_rps": "0.01",
            "rate_burst": "8",
            "log_format": "json",
        }
        spawned: list[ServeProcess] = []
        started: list[Replica] = []
        try:
            for name in ("replica-a", "replica-b"):
                env = child_env(tmp_path / name, replica_id=name, **settings)
                spawned.append(await ServeProcess.start("serve", env=env))
                started.append(Replica(spawned[-1], await spawned[-1].wait_serving()))
            yield fake, started[0], started[1]
        finally:
            for never_served in spawned[len(started) :]:
                await never_served.ensure_dead()  # it must not outlive the test
            for replica in started:
                await replica.channel.close()
                replica.process.send_signal(signal.SIGTERM)
            for replica in started:
                assert await replica.process.wait_exit(20) == 0


async def test_two_replicas_share_sessions_approvals_and_limits(
    replicas: tuple[FakeLLMServer, Replica, Replica], tmp_path: Path, user: str
) -> None:
    fake, a, b = replicas
    keys, _ = ensure_keys(tmp_path / "keys")
    config = with_second_endpoint(
        render_for_test(backend_port=a.port, jwks_path=keys.jwks_path), b.port
    )
    async with envoy_in_front(config, tmp_path / "envoy") as envoy:
        headers = {"Authorization": f"Bearer {make_token(keys, user)}"}
        async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as http:
            # 1. Created through Envoy (either replica), continued on each replica directly.
            created = await http.post(
                "/v1/chat/sessions", json={"displayName": "shared"}, headers=headers
            )
            assert created.status_code == 200, created.text
            session = created.json()["name"]
            fake.enqueue(Script(tokens=["Paris."]), Script(tokens=["2 million."]))
            first = await a.turn(user, session, "Capital of France?")
            assert first[-1].turn_ended.outcome == cpb.TURN_OUTCOME_COMPLETED
            second = await b.turn(user, session, "Population?")
            assert second[-1].turn_ended.message.text == "2 million."
            sent = str(fake.requests[-1].body["messages"])
            assert "Capital of France?" in sent and "Paris." in sent  # b saw a's turn

            # 2. An approval asked by one replica is resolved through the other.
            for replica in (a, b):  # both pools must be connected before the model calls
                await replica.process.wait_for_log(
                    lambda e: "connected" in str(e.get("msg", "")), 30
                )
            fake.enqueue(Script(tool_calls=[("x1", "tasks__add_task", {"title": "cross"})]))
            asked = await a.turn(user, session, "add cross")
            assert asked[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL
            fake.enqueue(Script(tokens=["Added on b."]))
            call = b.chat.ResolveToolCalls(
                cpb.ResolveToolCallsRequest(
                    session=session,
                    decisions=[cpb.ToolCallDecision(tool_call_id="x1", approved=True)],
                ),
                metadata=md(user),
            )
            resumed = [e async for e in call]
            assert resumed[-1].turn_ended.message.text == "Added on b."

            # 3. The rate limit is one bucket across both replicas (burst 8, no refill to
            # speak of): what is left of it after the calls above runs out, whichever
            # replica is asked.
            refused = None
            for i in range(12):
                target = a if i % 2 else b
                try:
                    await target.sessions.GetSession(
                        session_service_pb2.GetSessionRequest(name=session), metadata=md(user)
                    )
                except grpc.aio.AioRpcError as err:
                    refused = (i, error_info(err).reason)
                    break
            assert refused is not None and refused[1] == "RATE_LIMITED"
            assert refused[0] < 8  # fewer than a single replica's own burst would allow
            limited = await http.get(f"/v1/chat/{session}", headers=headers)
            assert limited.status_code == 429
            assert "RATE_LIMITED" in limited.text

            # Envoy sent traffic to both endpoints.
            clusters = await envoy.admin("/clusters")
            for port in (a.port, b.port):
                line = next(ln for ln in clusters.splitlines() if f":{port}::rq_total::" in ln)
                assert int(line.rsplit("::", 1)[1]) >= 1, clusters
