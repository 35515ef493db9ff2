"""The REST surface through the real Envoy: JSON CRUD, SSE turns, errors as google.rpc.Status.

Every request is HTTP/1.1 (what curl and a browser's EventSource speak), so trailers never
reach the client: what a stream says about its end must be in its last event.
"""

from __future__ import annotations

import base64
import time

import httpx2
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2

from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.helpers import (
    SseReader,
    bearer,
    detail,
    read_sse,
    reason,
    status_body,
    streamed_text,
)
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy
from tests.support.grpc_helpers import md
from tests.support.http import TLS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

TOKENS = ["Hel", "lo", ", ", "wor", "ld", "! ", "How ", "can ", "I ", "help?"]


async def new_session(http: httpx2.AsyncClient, token: str, **fields: object) -> str:
    response = await http.post("/v1/chat/sessions", json=fields, headers=bearer(token))
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


async def test_session_crud(http: httpx2.AsyncClient, token: str) -> None:
    auth = bearer(token)
    created = await http.post(
        "/v1/chat/sessions",
        params={"sessionId": "my-chat"},
        json={"displayName": "Tuning", "labels": {"team": "db"}},
        headers=auth,
    )
    assert created.status_code == 200, created.text
    assert created.headers["content-type"].startswith("application/json")
    session = created.json()
    assert session["name"] == "sessions/my-chat"
    assert session["displayName"] == "Tuning" and session["labels"] == {"team": "db"}
    assert session["messageCount"] == 0  # zero values are printed, not omitted

    got = await http.get("/v1/chat/sessions/my-chat", headers=auth)
    assert got.status_code == 200 and got.json() == session

    renamed = await http.patch(
        "/v1/chat/sessions/my-chat",
        params={"updateMask": "displayName"},
        json={"displayName": "Renamed"},
        headers=auth,
    )
    assert renamed.status_code == 200 and renamed.json()["displayName"] == "Renamed"

    await new_session(http, token, displayName="second")
    listed = await http.get("/v1/chat/sessions", params={"pageSize": 1}, headers=auth)
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["sessions"]) == 1 and page["nextPageToken"]
    rest = await http.get(
        "/v1/chat/sessions", params={"pageToken": page["nextPageToken"]}, headers=auth
    )
    names = {s["name"] for s in page["sessions"] + rest.json()["sessions"]}
    assert "sessions/my-chat" in names and len(names) == 2

    messages = await http.get("/v1/chat/sessions/my-chat/messages", headers=auth)
    assert messages.status_code == 200 and messages.json()["messages"] == []
    cleared = await http.post("/v1/chat/sessions/my-chat:clearMessages", json={}, headers=auth)
    assert cleared.status_code == 200 and cleared.json() == {}

    exported = await http.get(
        "/v1/chat/sessions/my-chat:export",
        params={"format": "EXPORT_FORMAT_MARKDOWN"},
        headers=auth,
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/markdown")
    assert "# Renamed" in exported.text

    deleted = await http.delete("/v1/chat/sessions/my-chat", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {}
    gone = await http.get("/v1/chat/sessions/my-chat", headers=auth)
    assert gone.status_code == 404
    assert reason(status_body(gone)) == "SESSION_NOT_FOUND"


async def test_models_and_tools_are_reachable(http: httpx2.AsyncClient, token: str) -> None:
    models = await http.get("/v1/chat/models", headers=bearer(token))
    assert models.status_code == 200
    assert [m["name"] for m in models.json()["models"]] == ["gpt-test"]
    # An unknown model id: the conservative default window, transcoded by Envoy.
    (model,) = models.json()["models"]
    assert (model["contextWindowTokens"], model["maxOutputTokens"]) == (8192, 2048)
    tools = await http.get("/v1/chat/mcp/tools", headers=bearer(token))
    assert tools.status_code == 200 and "tools" in tools.json()


async def test_sse_events_arrive_as_they_are_produced(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token)
    stack.fake.enqueue(Script(tokens=TOKENS, token_delay=0.1))
    started = time.monotonic()
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "Say hello"}, headers=bearer(token)
    ) as response:
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(response)
    kinds = [e.kind for e in events]
    assert kinds[0] == "turnStarted" and kinds[-1] == "turnEnded"
    assert set(kinds[1:-1]) <= {"textDelta", "heartbeat"}
    assert [int(e.data["sequence"]) for e in events] == list(range(1, len(events) + 1))
    assert streamed_text(events) == "".join(TOKENS)
    ended = events[-1].data["turnEnded"]
    assert ended["outcome"] == "TURN_OUTCOME_COMPLETED"
    assert ended["message"]["text"] == "".join(TOKENS)
    # The model took ~0.9 s to answer: the first words reached the client long before the
    # end, so Envoy forwarded each event as it came instead of buffering the response.
    first_delta = next(e for e in events if e.kind == "textDelta")
    assert events[-1].at - first_delta.at > 0.5, [round(e.at - started, 3) for e in events]
    assert events[0].at - started < events[-1].at - started - 0.5


async def test_eventsource_get_binding_with_token_in_query(
    http: httpx2.AsyncClient, stack: ChatStack, user: str, token: str
) -> None:
    """A browser's EventSource can only GET and cannot set headers."""
    session = await new_session(http, token)
    stack.fake.enqueue(Script(tokens=["from ", "a ", "browser"]))
    async with http.stream(
        "GET",
        f"/v1/chat/{session}:streamChat",
        params={"text": "hello there", "access_token": token},
        headers={"accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        events = await read_sse(response)
    assert events[-1].data["turnEnded"]["outcome"] == "TURN_OUTCOME_COMPLETED"
    stored = await stack.messages(user, session)
    assert [m.text for m in stored] == ["hello there", "from a browser"]


async def test_mid_stream_failure_ends_with_failed_event_over_http11(
    http: httpx2.AsyncClient, stack: ChatStack, user: str, token: str
) -> None:
    session = await new_session(http, token)
    stack.fake.enqueue(Script(tokens=["one ", "two ", "three"], cut_after=2))
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "count"}, headers=bearer(token)
    ) as response:
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        events = await read_sse(response)  # the body ends cleanly
    assert streamed_text(events) == "one two "
    ended = events[-1].data["turnEnded"]
    assert ended["outcome"] == "TURN_OUTCOME_FAILED"
    assert ended["error"]["code"] == 14  # UNAVAILABLE, with the backend's ErrorInfo
    assert detail(ended["error"], "ErrorInfo") is not None
    assert ended["message"]["state"] == "MESSAGE_STATE_INCOMPLETE"
    stored = await stack.messages(user, session)
    assert stored[1].text == "one two " and stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE


async def test_client_hang_up_cancels_the_provider_call(
    envoy: Envoy, stack: ChatStack, user: str, token: str
) -> None:
    # A client of its own: hanging up closes its connection.
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as http:
        session = await new_session(http, token)
        tokens = [f"t{i} " for i in range(300)]
        stack.fake.enqueue(Script(tokens=tokens, token_delay=0.02))
        disconnects = stack.fake.stream_disconnects
        async with http.stream(
            "POST", f"/v1/chat/{session}:streamChat", json={"text": "long"}, headers=bearer(token)
        ) as response:
            reader = SseReader(response)
            kinds = [(await reader.next()).kind for _ in range(3)]  # type: ignore[union-attr]
            assert kinds[:2] == ["turnStarted", "textDelta"]
        # Leaving the block closes the connection mid-stream: the client hung up.
        hung_up = time.monotonic()
    await stack.fake.wait_disconnect(within=1.0, count=disconnects + 1)
    assert time.monotonic() - hung_up < 1.0
    await stack.server.app.engine.drain_writes()
    stored = await stack.messages(user, session)
    assert stored[1].state == rpb.MESSAGE_STATE_INCOMPLETE
    assert "".join(tokens).startswith(stored[1].text) and len(stored[1].text) < len("".join(tokens))


async def test_backend_errors_are_json_status_with_mapped_http_codes(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    auth = bearer(token)
    bad = await http.post(
        "/v1/chat/sessions", params={"sessionId": "Not_Valid"}, json={}, headers=auth
    )
    assert bad.status_code == 400
    body = status_body(bad)
    assert body["code"] == 3 and detail(body, "BadRequest") is not None

    first = await http.post(
        "/v1/chat/sessions", params={"sessionId": "errors"}, json={}, headers=auth
    )
    session = first.json()["name"]
    again = await http.post(
        "/v1/chat/sessions", params={"sessionId": "errors"}, json={}, headers=auth
    )
    assert again.status_code == 409 and status_body(again)["code"] == 6  # ALREADY_EXISTS

    stack.fake.enqueue(Script(error_status=503), Script(error_status=503))
    down = await http.post(f"/v1/chat/{session}:sendMessage", json={"text": "hi"}, headers=auth)
    assert down.status_code == 503
    assert reason(status_body(down)) == "PROVIDER_UNAVAILABLE"
    assert stack.fake.pending_scripts == 0

    # One turn at a time per session: 409 while another is running.
    stack.fake.enqueue(Script(tokens=["slow"], hang_after=1))
    async with http.stream(
        "POST", f"/v1/chat/{session}:streamChat", json={"text": "one"}, headers=auth
    ) as running:
        reader = SseReader(running)
        assert (await reader.next()).kind == "turnStarted"  # type: ignore[union-attr]
        busy = await http.post(
            f"/v1/chat/{session}:sendMessage", json={"text": "two"}, headers=auth
        )
        assert busy.status_code == 409, busy.text
        assert reason(status_body(busy)) == "SESSION_BUSY"


async def test_rate_limited_provider_is_429_with_retry_info(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token)
    limited = Script(error_status=429, retry_after=0.01)
    stack.fake.enqueue(limited, limited)  # the first try and its one retry
    response = await http.post(
        f"/v1/chat/{session}:sendMessage", json={"text": "hi"}, headers=bearer(token)
    )
    assert response.status_code == 429, response.text
    body = status_body(response)
    assert body["code"] == 8 and reason(body) == "PROVIDER_RATE_LIMITED"
    assert detail(body, "RetryInfo") is not None
    assert stack.fake.pending_scripts == 0


async def test_unknown_path_and_method_are_404_json(http: httpx2.AsyncClient, token: str) -> None:
    for method, path in [
        ("GET", "/v1/chat/nothing-here"),
        ("GET", "/elsewhere"),
        ("PUT", "/v1/chat/sessions"),  # a path we have, a method we do not
        ("POST", "/v1/chat/sessions/x:noSuchVerb"),
    ]:
        response = await http.request(method, path, headers=bearer(token))
        assert response.status_code == 404, (method, path, response.text)
        assert status_body(response)["code"] == 5


async def test_malformed_json_and_unknown_query_parameters_are_400(
    http: httpx2.AsyncClient, token: str
) -> None:
    broken = await http.post(
        "/v1/chat/sessions",
        content=b'{"displayName": ',
        headers=bearer(token, **{"content-type": "application/json"}),
    )
    assert broken.status_code == 400 and status_body(broken)["code"] == 3
    unknown = await http.get("/v1/chat/sessions", params={"limit": 5}, headers=bearer(token))
    assert unknown.status_code == 400 and status_body(unknown)["code"] == 3


async def test_oversized_body_is_413_json_and_a_10_mib_attachment_fits(
    http: httpx2.AsyncClient, stack: ChatStack, user: str, token: str
) -> None:
    session = await new_session(http, token)
    content = base64.b64encode(b"a" * (10 * 1024 * 1024)).decode()
    attachment = {"filename": "big.txt", "mimeType": "text/plain", "content": content}
    stack.fake.enqueue(Script(tokens=["read it"]))
    fits = await http.post(
        f"/v1/chat/{session}:sendMessage",
        json={"text": "summarise", "attachments": [attachment]},
        headers=bearer(token),
    )
    assert fits.status_code == 200, fits.text[:500]
    assert fits.json()["outcome"] == "TURN_OUTCOME_COMPLETED"
    before = len(stack.fake.requests)
    too_big = await http.post(
        f"/v1/chat/{session}:sendMessage",
        json={"text": "x" * (16 * 1024 * 1024 + 1)},
        headers=bearer(token),
    )
    assert too_big.status_code == 413
    assert reason(status_body(too_big)) == "REQUEST_TOO_LARGE"
    assert len(stack.fake.requests) == before
    stored = await stack.messages(user, session)
    assert len(stored) == 2  # nothing of the rejected request was stored


async def test_large_unary_responses_pass_whole(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    """Unary answers are transcoded whole: far past the 32 KiB connection buffers."""
    session = await new_session(http, token)
    answer = "lorem ipsum " * 50_000  # 600 kB
    stack.fake.enqueue(Script(tokens=[answer]))
    sent = await http.post(
        f"/v1/chat/{session}:sendMessage", json={"text": "long"}, headers=bearer(token)
    )
    assert sent.status_code == 200 and sent.json()["message"]["text"] == answer
    listed = await http.get(f"/v1/chat/{session}/messages", headers=bearer(token))
    assert listed.status_code == 200
    assert [m["text"] for m in listed.json()["messages"]] == ["long", answer]


async def test_request_id_round_trips(http: httpx2.AsyncClient, token: str) -> None:
    ok = await http.get("/v1/chat/sessions", headers=bearer(token, **{"x-request-id": "rid-ok-1"}))
    assert ok.headers["x-request-id"] == "rid-ok-1"
    missing = await http.get(
        "/v1/chat/sessions/none", headers=bearer(token, **{"x-request-id": "rid-404-1"})
    )
    assert missing.headers["x-request-id"] == "rid-404-1"
    assert detail(status_body(missing), "ErrorInfo")["metadata"]["request_id"] == "rid-404-1"  # type: ignore[index]
    denied = await http.get("/v1/chat/sessions", headers={"x-request-id": "rid-401-1"})
    assert denied.status_code == 401
    assert detail(status_body(denied), "ErrorInfo")["metadata"]["request_id"] == "rid-401-1"  # type: ignore[index]


async def test_headers_with_underscores_are_rejected(http: httpx2.AsyncClient, token: str) -> None:
    """x_user_id could be read as x-user-id by some frameworks: refuse it outright."""
    response = await http.get("/v1/chat/sessions", headers=bearer(token, x_user_id="mallory"))
    assert response.status_code == 400
    assert status_body(response)["code"] == 3


async def test_cors_preflight_and_readable_errors(http: httpx2.AsyncClient) -> None:
    origin = "http://localhost:8080"
    preflight = await http.options(
        "/v1/chat/sessions",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    # A 401 carries CORS headers too, so the page can read why it was refused.
    denied = await http.get("/v1/chat/sessions", headers={"origin": origin})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == origin
    stranger = await http.get("/v1/chat/sessions", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


async def test_health_follows_the_backend(
    http: httpx2.AsyncClient, envoy: Envoy, stack: ChatStack
) -> None:
    up = await http.get("/v1/chat/health")  # no token
    assert up.status_code == 200 and up.json() == {"status": "SERVING"}
    health = stack.server.app.health
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        await envoy.wait_backend(healthy=False, within=10)
        down = await http.get("/v1/chat/health")
        assert down.status_code == 503
        assert down.json() == {"status": "NOT_SERVING"}
    finally:
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await envoy.wait_backend(healthy=True, within=10)
    again = await http.get("/v1/chat/health")
    assert again.status_code == 200


async def test_sessions_made_over_rest_are_the_token_subjects(
    http: httpx2.AsyncClient, stack: ChatStack, user: str, token: str
) -> None:
    """What the backend saw: the session belongs to the token's `sub`."""
    session = await new_session(http, token, displayName="mine")
    page = await stack.server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    assert [s.name for s in page.sessions] == [session]
