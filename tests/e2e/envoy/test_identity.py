"""Who the caller is, as envoy.yaml decides it: a verified token, never a header a client sent.

"Never reaches the backend" is checked on what the backend saw: whose sessions exist, and
Envoy's own count of requests sent to the backend cluster.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import httpx2
import jwt
import pytest
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import session_service_pb2_grpc

from aichat_devtools.dev_token import AUDIENCE, ISSUER, RS256_KID, DevKeys, make_token
from tests.e2e.envoy.helpers import bearer, reason, status_body
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.grpc_helpers import md

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


async def sessions_of(stack: ChatStack, user: str) -> list[str]:
    page = await stack.server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    return [s.name for s in page.sessions]


async def backend_requests(envoy: Envoy) -> int:
    """Requests Envoy has sent to the backend (health checks are not counted)."""
    stats = await envoy.admin("/stats?filter=^cluster\\.aichat_backend\\.upstream_rq_total$")
    return int(stats.split(":")[1]) if ":" in stats else 0


def tampered(token: str, **claims: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body.update(claims)
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


async def test_no_token_is_401_json(http: httpx2.AsyncClient, envoy: Envoy) -> None:
    before = await backend_requests(envoy)
    response = await http.get("/v1/chat/sessions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = status_body(response)
    assert body["code"] == 16 and reason(body) == "UNAUTHENTICATED"
    assert await backend_requests(envoy) == before


@pytest.mark.parametrize(
    ("case", "status", "why"),
    [
        ("expired", 401, "Jwt_is_expired"),
        ("tampered", 401, "Jwt_verification_fails"),
        ("unknown key", 401, "Jwt_verification_fails"),
        ("wrong issuer", 401, "Jwt_issuer_is_not_configured"),
        ("wrong audience", 403, "Audiences_in_Jwt_are_not_allowed"),
        ("not yet valid", 401, "Jwt_not_yet_valid"),
        ("garbage", 401, "Jwt_is_not_in_the_form_of_Header.Payload.Signature"),
    ],
)
async def test_bad_tokens_are_refused_before_the_backend(
    http: httpx2.AsyncClient,
    envoy: Envoy,
    dev_keys: DevKeys,
    stranger_keys: DevKeys,
    user: str,
    case: str,
    status: int,
    why: str,
) -> None:
    now = time.time()
    token = {
        "expired": lambda: make_token(dev_keys, user, now=now - 7200),
        "tampered": lambda: tampered(make_token(dev_keys, "someone"), sub=user),
        "unknown key": lambda: make_token(stranger_keys, user),
        "wrong issuer": lambda: make_token(dev_keys, user, issuer="https://evil.example"),
        "wrong audience": lambda: make_token(dev_keys, user, audience="some-other-api"),
        "not yet valid": lambda: make_token(dev_keys, user, now=now + 3600),
        "garbage": lambda: "not-a-jwt",
    }[case]()
    before = await backend_requests(envoy)
    response = await http.post("/v1/chat/sessions", json={}, headers=bearer(token))
    assert response.status_code == status, response.text
    body = status_body(response)
    assert body["code"] == (16 if status == 401 else 7)
    assert why in body["details"][0]["metadata"]["detail"]
    assert await backend_requests(envoy) == before


@pytest.mark.parametrize("algorithm", ["RS256", "HS256"])
async def test_the_token_subject_is_the_user(
    http: httpx2.AsyncClient,
    envoy: Envoy,
    stack: ChatStack,
    dev_keys: DevKeys,
    user: str,
    algorithm: str,
) -> None:
    token = make_token(dev_keys, user, algorithm=algorithm)
    before = await backend_requests(envoy)
    created = await http.post("/v1/chat/sessions", json={}, headers=bearer(token))
    assert created.status_code == 200, created.text
    assert await sessions_of(stack, user) == [created.json()["name"]]
    assert await backend_requests(envoy) == before + 1  # the probe above counts requests


@pytest.mark.parametrize(
    "forged",
    [
        [("X-User-ID", "victim")],
        [("x-user-id", "victim")],
        [("X-User-Id", "victim"), ("x-user-id", "victim2")],
        [("X-EMAIL-USER", "victim@example.com"), ("X-User-ID", "victim")],
    ],
    ids=["canonical", "lowercase", "twice", "with-email"],
)
async def test_a_forged_user_header_with_a_token_is_ignored(
    http: httpx2.AsyncClient,
    stack: ChatStack,
    token: str,
    user: str,
    forged: list[tuple[str, str]],
) -> None:
    headers = httpx2.Headers([("authorization", f"Bearer {token}"), *forged])
    created = await http.post("/v1/chat/sessions", json={"displayName": "x"}, headers=headers)
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    assert await sessions_of(stack, user) == [name]
    for victim in ("victim", "victim2", "victim@example.com"):
        assert name not in await sessions_of(stack, victim)


async def test_a_forged_user_header_without_a_token_never_reaches_the_backend(
    http: httpx2.AsyncClient, envoy: Envoy, stack: ChatStack
) -> None:
    victim = "victim-no-token"
    before = await backend_requests(envoy)
    for method, path in [("POST", "/v1/chat/sessions"), ("GET", "/v1/chat/sessions")]:
        response = await http.request(
            method, path, json={} if method == "POST" else None, headers={"X-User-ID": victim}
        )
        assert response.status_code == 401
    assert await backend_requests(envoy) == before
    assert await sessions_of(stack, victim) == []


async def test_a_token_without_subject_names_nobody(
    http: httpx2.AsyncClient, stack: ChatStack, dev_keys: DevKeys
) -> None:
    """jwt_authn adds no x-user-id then; the client's own was already removed."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    token = jwt.encode(
        claims, dev_keys.rsa_private_key(), algorithm="RS256", headers={"kid": RS256_KID}
    )
    response = await http.post(
        "/v1/chat/sessions", json={}, headers=bearer(token, **{"X-User-ID": "victim-nosub"})
    )
    assert response.status_code == 401
    assert reason(status_body(response)) == "MISSING_IDENTITY"  # the backend's answer
    assert await sessions_of(stack, "victim-nosub") == []


async def test_grpc_clients_of_the_edge_are_held_to_the_token_too(
    envoy: Envoy, stack: ChatStack, token: str, user: str
) -> None:
    """Envoy's port speaks gRPC as well (transcoding passes it through): same rules."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sessions.ListSessions(
                spb.ListSessionsRequest(), metadata=(("x-user-id", "victim-grpc"),)
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        created = await sessions.CreateSession(
            spb.CreateSessionRequest(),
            metadata=(("authorization", f"Bearer {token}"), ("x-user-id", "victim-grpc")),
        )
    assert await sessions_of(stack, user) == [created.name]
    assert await sessions_of(stack, "victim-grpc") == []
