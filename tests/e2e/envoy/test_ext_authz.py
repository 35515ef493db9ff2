"""The auth-server deployment (the PMM way): ext_authz decides, x-user-id cannot be forged.

envoy.yaml rendered with tests/e2e/envoy/ext_authz.yaml in place of jwt_authn, in front
of the same backend, with the small auth server of auth_server.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.auth_server import AuthServer
from tests.e2e.envoy.helpers import bearer, read_sse, reason, render_ext_authz, status_body
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy, envoy_in_front
from tests.support.grpc_helpers import md

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def auth_server() -> AsyncIterator[AuthServer]:
    async with AuthServer() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def envoy(
    stack: ChatStack, auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    config = render_ext_authz(backend_port=stack.server.port, auth_port=auth_server.port)
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy-ext-authz")) as running:
        yield running


async def sessions_of(stack: ChatStack, user: str) -> list[str]:
    page = await stack.server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    return [s.name for s in page.sessions]


async def test_the_auth_servers_user_is_the_caller(
    http: httpx2.AsyncClient, stack: ChatStack, auth_server: AuthServer, user: str
) -> None:
    created = await http.post(
        "/v1/chat/sessions",
        json={"displayName": "pmm"},
        headers=bearer(f"session-{user}", **{"X-User-ID": "victim"}),
    )
    assert created.status_code == 200, created.text
    assert await sessions_of(stack, user) == [created.json()["name"]]
    assert await sessions_of(stack, "victim") == []
    check = auth_server.checks[-1]
    assert check.path == "/auth_request/v1/chat/sessions" and check.method == "POST"
    assert "x-user-id" not in check.headers  # stripped before anyone looked


async def test_a_stream_runs_as_the_auth_servers_user(
    http: httpx2.AsyncClient, stack: ChatStack, user: str
) -> None:
    auth = bearer(f"session-{user}")
    session = (await http.post("/v1/chat/sessions", json={}, headers=auth)).json()["name"]
    stack.fake.enqueue(Script(tokens=["hi ", "there"]))
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "hello"}, headers=auth
    ) as response:
        events = await read_sse(response)
    assert events[-1].data["turnEnded"]["outcome"] == "TURN_OUTCOME_COMPLETED"


@pytest.mark.parametrize(
    ("credential", "status", "code"),
    [(None, 401, 16), ("nonsense", 401, 16), ("forbidden", 403, 7)],
)
async def test_denials_are_json_and_never_reach_the_backend(
    http: httpx2.AsyncClient,
    stack: ChatStack,
    credential: str | None,
    status: int,
    code: int,
) -> None:
    victim = f"victim-{status}-{credential}"
    headers = (
        {"X-User-ID": victim} if credential is None else bearer(credential, **{"X-User-ID": victim})
    )
    response = await http.post("/v1/chat/sessions", json={}, headers=headers)
    assert response.status_code == status, response.text
    assert status_body(response)["code"] == code
    assert await sessions_of(stack, victim) == []


async def test_allowed_without_a_user_the_forged_header_still_does_not_pass(
    http: httpx2.AsyncClient, stack: ChatStack
) -> None:
    """The case ext_authz alone gets wrong: 200 from the auth server, no x-user-id set."""
    response = await http.post(
        "/v1/chat/sessions",
        json={"displayName": "forged"},
        headers=bearer("anonymous", **{"X-User-ID": "victim-anon", "X-Email-User": "v@x.y"}),
    )
    assert response.status_code == 401
    assert reason(status_body(response)) == "MISSING_IDENTITY"  # the backend saw nobody
    assert await sessions_of(stack, "victim-anon") == []
    assert await sessions_of(stack, "v@x.y") == []


async def test_health_needs_no_credentials_and_skips_the_auth_server(
    http: httpx2.AsyncClient, auth_server: AuthServer
) -> None:
    checks = len(auth_server.checks)
    response = await http.get("/v1/chat/health")
    assert response.status_code == 200 and response.json() == {"status": "SERVING"}
    assert len(auth_server.checks) == checks
