"""The start-up check of each model: a tiny request to each, shown in ListModels and health.

Against the fake upstream speaking the OpenAI and Anthropic wire formats, a port nobody
listens on, an upstream that accepts and never answers, and a model without its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import chat_service_pb2 as cpb
from google.rpc import code_pb2, error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_backend.providers import model_check
from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.limits.support import closed_port
from tests.support.grpc_helpers import md
from tests.support.server import Running, make_settings, running_server

pytestmark = pytest.mark.timeout(30)

ADMIN = "ops"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.UNKNOWN


def catalogue(path: Path, models: list[dict[str, Any]]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"models": models}))
    return path


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def silent_upstream() -> AsyncIterator[int]:
    """Accepts connections and never answers: a model that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.transport.abort()
    server.close()
    await server.wait_closed()


def models_of(response: cpb.ListModelsResponse) -> dict[str, cpb.Model]:
    return {m.name: m for m in response.models}


def reason_of(check: cpb.ModelCheck) -> str:
    for detail in check.error.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError(f"no ErrorInfo in {check.error}")


async def health_of(server: Running, name: str) -> int:
    stub = health_pb2_grpc.HealthStub(server.channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(service=name))
    return int(answer.status)


async def test_each_model_is_checked_at_start(
    tmp_path: Path, sqlite_url: str, fake: FakeLLMServer
) -> None:
    path = catalogue(
        tmp_path / "models.yaml",
        [
            {
                "name": "gpt",
                "provider": "openai",
                "model_name": "gpt-x",
                "base_url": fake.base_url,
                "api_key": "k",
            },
            {
                "name": "claude",
                "provider": "anthropic",
                "model_name": "claude-x",
                "base_url": fake.root_url,
                "api_key": "k",
            },
            {
                "name": "dead",
                "provider": "openai-compatible",
                "model_name": "m",
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
            },
            {"name": "nokey", "provider": "openai", "model_name": "gpt-y"},
        ],
    )
    settings = make_settings(sqlite_url, models_file=path, model_check=True)
    async with running_server(settings) as server:
        results = await server.app.admin.checker.check_all()  # joins the start-up check
        assert {n: r.state for n, r in results.items()} == {
            "gpt": model_check.CheckState.REACHABLE,
            "claude": model_check.CheckState.REACHABLE,
            "dead": model_check.CheckState.FAILING,
            "nokey": model_check.CheckState.FAILING,
        }
        # One tiny request per reachable family: a one-word prompt, a few tokens at most.
        assert sorted(r.path for r in fake.requests) == ["/v1/chat/completions", "/v1/messages"]
        for request in fake.requests:
            body = request.body
            assert body["messages"] == [{"role": "user", "content": model_check.PROMPT}] or (
                body["messages"][0]["content"][0]["text"] == model_check.PROMPT
            )
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            assert limit == model_check.MAX_OUTPUT_TOKENS

        listed = models_of(await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md("u")))
        for name in ("gpt", "claude"):
            check = listed[name].check
            assert check.state == cpb.MODEL_CHECK_STATE_REACHABLE
            assert check.check_time.seconds > 0 and check.latency.ToNanoseconds() > 0
            assert not check.HasField("error")
        dead = listed["dead"].check
        assert dead.state == cpb.MODEL_CHECK_STATE_FAILING
        assert dead.error.code == code_pb2.UNAVAILABLE and reason_of(dead) == "PROVIDER_UNAVAILABLE"
        nokey = listed["nokey"].check
        assert nokey.error.code == code_pb2.FAILED_PRECONDITION
        assert reason_of(nokey) == "PROVIDER_NOT_CONFIGURED"

        assert await health_of(server, "") == SERVING  # a failing model never takes us out
        assert await health_of(server, "aichat.model.gpt") == SERVING
        assert await health_of(server, "aichat.model.claude") == SERVING
        assert await health_of(server, "aichat.model.dead") == NOT_SERVING
        assert await health_of(server, "aichat.model.nokey") == NOT_SERVING


async def test_a_hanging_model_never_delays_start_up(
    tmp_path: Path, sqlite_url: str, silent_upstream: int
) -> None:
    path = catalogue(
        tmp_path / "models.yaml",
        [
            {
                "name": "slow",
                "provider": "openai-compatible",
                "model_name": "m",
                "base_url": f"http://127.0.0.1:{silent_upstream}/v1",
            }
        ],
    )
    # A check timeout far beyond this test's own: start-up must not wait for it.
    settings = make_settings(
        sqlite_url, models_file=path, model_check=True, model_check_timeout_seconds=120
    )
    async with running_server(settings) as server:
        listed = models_of(await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md("u")))
        assert listed["slow"].check.state == cpb.MODEL_CHECK_STATE_NOT_CHECKED
        assert await health_of(server, "aichat.model.slow") == UNKNOWN
        assert await health_of(server, "") == SERVING


async def test_a_timeout_is_a_failing_check(
    tmp_path: Path, sqlite_url: str, silent_upstream: int
) -> None:
    path = catalogue(
        tmp_path / "models.yaml",
        [
            {
                "name": "slow",
                "provider": "openai-compatible",
                "model_name": "m",
                "base_url": f"http://127.0.0.1:{silent_upstream}/v1",
            }
        ],
    )
    settings = make_settings(
        sqlite_url, models_file=path, model_check=True, model_check_timeout_seconds=0.3
    )
    async with running_server(settings) as server:
        results = await server.app.admin.checker.check_all()
        assert results["slow"].state is model_check.CheckState.FAILING
        assert results["slow"].error is not None
        assert results["slow"].error.reason == "PROVIDER_TIMEOUT"
        listed = models_of(await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md("u")))
        assert listed["slow"].check.error.code == code_pb2.DEADLINE_EXCEEDED


async def test_off_by_setting_and_on_demand_through_the_operator_api(
    sqlite_url: str, fake: FakeLLMServer
) -> None:
    settings = make_settings(
        sqlite_url,
        llm_provider="openai",
        llm_model="gpt-test",
        llm_base_url=fake.base_url,
        api_key="k",
        model_check=False,
        admin_users=ADMIN,
    )
    async with running_server(settings) as server:
        listed = models_of(await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md("u")))
        assert listed["gpt-test"].check.state == cpb.MODEL_CHECK_STATE_NOT_CHECKED
        assert fake.request_count == 0
        assert await health_of(server, "aichat.model.gpt-test") == UNKNOWN

        admin = admin_service_pb2_grpc.AdminServiceStub(server.channel)
        fake.enqueue(Script(error_status=503, error_message="overloaded", retry_after=None))
        failing = await admin.CheckModels(apb.CheckModelsRequest(), metadata=md(ADMIN))
        assert failing.models[0].check.state == cpb.MODEL_CHECK_STATE_FAILING
        assert failing.models[0].check.error.code == code_pb2.UNAVAILABLE
        assert await health_of(server, "aichat.model.gpt-test") == NOT_SERVING

        fixed = await admin.CheckModels(apb.CheckModelsRequest(), metadata=md(ADMIN))
        assert fixed.models[0].check.state == cpb.MODEL_CHECK_STATE_REACHABLE
        assert fake.request_count == 2
        listed = models_of(await server.chat.ListModels(cpb.ListModelsRequest(), metadata=md("u")))
        assert listed["gpt-test"].check.state == cpb.MODEL_CHECK_STATE_REACHABLE
        assert await health_of(server, "aichat.model.gpt-test") == SERVING
