"""The operator API behind the auth-server deployment (ext_authz): the role is the auth
server's to give; a client's own x-aichat-role never reaches the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from tests.e2e.envoy.auth_server import AuthServer
from tests.e2e.envoy.helpers import bearer, reason, render_ext_authz, status_body
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy, envoy_in_front

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
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy-admin-authz")) as running:
        yield running


async def test_the_auth_servers_role_opens_the_operator_api(
    http: httpx2.AsyncClient, auth_server: AuthServer, user: str
) -> None:
    response = await http.get(
        "/v1/admin/runtime", headers=bearer(f"admin-{user}", **{"X-Aichat-Role": "viewer"})
    )
    assert response.status_code == 200, response.text
    assert response.json()["replicaId"]
    assert auth_server.checks[-1].path == "/auth_request/v1/admin/runtime"


@pytest.mark.parametrize("credential", ["session-{user}", "anonymous"])
async def test_a_forged_role_never_reaches_the_backend(
    http: httpx2.AsyncClient, user: str, credential: str
) -> None:
    """Signed in without the role, or let through naming nobody: the client's own role
    header (and user id) are gone before ext_authz, which only sets what it is given."""
    response = await http.get(
        "/v1/admin/runtime",
        headers=bearer(
            credential.format(user=user), **{"X-Aichat-Role": "admin", "X-User-ID": user}
        ),
    )
    body = status_body(response)
    if credential == "anonymous":
        assert response.status_code == 401 and reason(body) == "MISSING_IDENTITY"
    else:
        assert response.status_code == 403 and reason(body) == "ADMIN_REQUIRED"


async def test_denied_by_the_auth_server_before_the_backend(http: httpx2.AsyncClient) -> None:
    response = await http.get(
        "/v1/admin/runtime", headers=bearer("forbidden", **{"X-Aichat-Role": "admin"})
    )
    assert response.status_code == 403
    assert status_body(response)["code"] == 7
