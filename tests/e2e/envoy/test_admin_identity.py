"""The operator API through envoy.yaml (jwt_authn): the admin role comes from a claim of the
verified token, never from a header a client sent; REST under /v1/admin/ as documented."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
import httpx2
import pytest
import pytest_asyncio
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc

import aichat_backend
from aichat_devtools.dev_token import ADMIN_CLAIM, DevKeys, make_token
from tests.e2e.envoy.helpers import bearer, reason, status_body
from tests.e2e.envoy.test_identity import backend_requests
from tests.support.chat import ChatStack, chat_stack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

LISTED = "listed-admin"
BURST = 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """Rate limits on (the API-key bypass is observed through them), one listed admin."""
    db = tmp_path_factory.mktemp("db") / "aichat.db"
    async with chat_stack(
        "openai", f"sqlite:///{db}", admin_users=LISTED, rate_rps=0.01, rate_burst=BURST
    ) as s:
        yield s


def admin_token(keys: DevKeys, user: str, **claims: str) -> str:
    return make_token(keys, user, extra_claims={ADMIN_CLAIM: "admin", **claims})


async def test_an_admin_token_opens_the_operator_api(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str
) -> None:
    response = await http.get("/v1/admin/runtime", headers=bearer(admin_token(dev_keys, user)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == aichat_backend.__version__
    assert body["limits"]["rateBurst"] == BURST
    assert [m["name"] for m in body["models"]] == ["gpt-test"]


@pytest.mark.parametrize("claim", [["viewer", "admin"], ["admin"]], ids=["list", "one"])
async def test_a_list_claim_of_roles_counts(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str, claim: list[str]
) -> None:
    """Envoy forwards a list claim base64-encoded (its JSON): the backend reads it."""
    token = make_token(dev_keys, user, extra_claims={ADMIN_CLAIM: claim})
    response = await http.get("/v1/admin/runtime", headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("claim", [["viewer"], [], True, "administrator"])
async def test_claims_without_the_role_are_denied(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str, claim: object
) -> None:
    token = make_token(dev_keys, user, extra_claims={ADMIN_CLAIM: claim})
    response = await http.get("/v1/admin/runtime", headers=bearer(token))
    assert response.status_code == 403
    assert reason(status_body(response)) == "ADMIN_REQUIRED"


async def test_dev_token_mints_an_admin_token(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str
) -> None:
    async def mint(*extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aichat_devtools.cli",
            "token",
            "--user",
            user,
            "--dir",
            str(dev_keys.directory),
            *extra,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0
        return out.decode().strip()

    admin, plain = await mint("--admin"), await mint()
    assert (await http.get("/v1/admin/runtime", headers=bearer(admin))).status_code == 200
    denied = await http.get("/v1/admin/runtime", headers=bearer(plain))
    assert denied.status_code == 403


@pytest.mark.parametrize(
    "forged",
    [
        [("X-Aichat-Role", "admin")],
        [("x-aichat-role", "admin"), ("X-AICHAT-ROLE", "admin")],
        [("X-User-ID", LISTED)],
    ],
    ids=["role", "role-twice", "listed-user-id"],
)
async def test_a_forged_role_never_reaches_the_backend(
    http: httpx2.AsyncClient, token: str, forged: list[tuple[str, str]]
) -> None:
    headers = httpx2.Headers([("authorization", f"Bearer {token}"), *forged])
    response = await http.get("/v1/admin/runtime", headers=headers)
    assert response.status_code == 403, response.text
    body = status_body(response)
    assert body["code"] == 7 and reason(body) == "ADMIN_REQUIRED"  # the backend's answer


async def test_other_roles_and_no_role_are_denied(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str
) -> None:
    for claims in ({ADMIN_CLAIM: "viewer"}, {}, {"role": "admin"}):
        token = make_token(dev_keys, user, extra_claims=claims)
        response = await http.post(
            "/v1/admin/rateLimitBypasses",
            json={"subjectType": "BYPASS_SUBJECT_TYPE_USER", "subject": user},
            headers=bearer(token),
        )
        assert response.status_code == 403
        assert reason(status_body(response)) == "ADMIN_REQUIRED"


async def test_a_listed_user_needs_no_role(http: httpx2.AsyncClient, dev_keys: DevKeys) -> None:
    response = await http.get("/v1/admin/usage", headers=bearer(make_token(dev_keys, LISTED)))
    assert response.status_code == 200, response.text
    assert response.json() == {"rows": [], "nextPageToken": ""}


async def test_no_token_with_a_forged_role_is_401_before_the_backend(
    http: httpx2.AsyncClient, envoy: Envoy
) -> None:
    before = await backend_requests(envoy)
    response = await http.get(
        "/v1/admin/runtime", headers={"X-Aichat-Role": "admin", "X-User-ID": LISTED}
    )
    assert response.status_code == 401
    assert await backend_requests(envoy) == before


async def test_grpc_clients_of_the_edge_cannot_forge_the_role(envoy: Envoy, token: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.GetRuntimeStatus(
                apb.GetRuntimeStatusRequest(),
                metadata=(("authorization", f"Bearer {token}"), ("x-aichat-role", "admin")),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_bypasses_over_rest_and_the_api_key_claim(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str, other_user: str
) -> None:
    admin = bearer(admin_token(dev_keys, f"{user}-admin"))
    key = f"key-{user}"
    created = await http.post(
        "/v1/admin/rateLimitBypasses",
        json={"subjectType": "BYPASS_SUBJECT_TYPE_API_KEY", "subject": key, "reason": "ci"},
        headers=admin,
    )
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    assert created.json()["creator"] == f"{user}-admin"
    listed = await http.get("/v1/admin/rateLimitBypasses", headers=admin)
    assert name in [b["name"] for b in listed.json()["rateLimitBypasses"]]

    # The token names its API key: the backend sees it, and the rate limit does not apply.
    with_key = bearer(make_token(dev_keys, user, extra_claims={"api_key_id": key}))
    codes = [(await http.get("/v1/chat/sessions", headers=with_key)).status_code for _ in range(8)]
    assert codes == [200] * 8
    # A client naming the key itself is not believed: its own bucket runs out.
    forged = bearer(make_token(dev_keys, other_user), **{"X-Api-Key-Id": key})
    codes = [(await http.get("/v1/chat/sessions", headers=forged)).status_code for _ in range(8)]
    assert codes == [200] * BURST + [429] * (8 - BURST)

    deleted = await http.delete(f"/v1/admin/{name}", headers=admin)
    assert deleted.status_code == 200 and deleted.json() == {}
    missing = await http.delete(f"/v1/admin/{name}", headers=admin)
    assert missing.status_code == 404 and reason(status_body(missing)) == "BYPASS_NOT_FOUND"


async def test_check_models_over_rest(
    http: httpx2.AsyncClient, stack: ChatStack, dev_keys: DevKeys, user: str
) -> None:
    response = await http.post(
        "/v1/admin/models:check", json={}, headers=bearer(admin_token(dev_keys, user))
    )
    assert response.status_code == 200, response.text
    (model,) = response.json()["models"]
    assert model["check"]["state"] == "MODEL_CHECK_STATE_REACHABLE"
    models = await http.get("/v1/chat/models", headers=bearer(make_token(dev_keys, user)))
    assert models.json()["models"][0]["check"]["state"] == "MODEL_CHECK_STATE_REACHABLE"
