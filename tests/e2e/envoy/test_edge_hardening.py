"""What the edge keeps and refuses (issue 19: part E and the smaller Envoy items).

- the access log records paths without their query string: no message text, no token;
- a URL too long for the backend's gRPC metadata limit is 414 at Envoy, never a 429;
- Envoy's own refusals reach gRPC clients as a plain message with the right code.
"""

from __future__ import annotations

import uuid

import grpc
import httpx2
import pytest
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import session_service_pb2_grpc

from aichat_devtools.dev_token import DevKeys, make_token
from aichat_devtools.fake_llm import RecordedRequest, Script
from tests.e2e.envoy.helpers import bearer, reason, status_body
from tests.e2e.envoy.test_rest import new_session
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


async def test_the_access_log_keeps_no_message_text_and_no_token(
    http: httpx2.AsyncClient, envoy: Envoy, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token)
    stack.fake.enqueue(Script(tokens=["ok"]))
    message = f"my-private-words-{uuid.uuid4().hex}"
    request_id = str(uuid.uuid4())
    async with http.stream(
        "GET",
        f"/v1/chat/{session}:streamChat",
        params={"text": message, "access_token": token},
        headers={"accept": "text/event-stream", "x-request-id": request_id},
    ) as response:
        assert response.status_code == 200
        await response.aread()
    entry = await envoy.access_log_entry(request_id)
    assert entry["path"] == f"/v1/chat/{session}:streamChat"
    log = (envoy.workdir / "access.log").read_text()
    assert message not in log and token not in log


async def test_a_refused_foreign_token_is_not_logged(
    http: httpx2.AsyncClient, envoy: Envoy, stranger_keys: DevKeys
) -> None:
    foreign = make_token(stranger_keys, "someone")  # valid elsewhere, not here
    request_id = str(uuid.uuid4())
    response = await http.get(
        "/v1/chat/sessions",
        params={"access_token": foreign},
        headers={"x-request-id": request_id},
    )
    assert response.status_code == 401
    entry = await envoy.access_log_entry(request_id)
    assert entry["path"] == "/v1/chat/sessions" and "?" not in entry["grpc_method"]
    assert foreign not in (envoy.workdir / "access.log").read_text()


async def test_a_very_long_url_is_414_not_a_retryable_429(
    http: httpx2.AsyncClient, token: str
) -> None:
    response = await http.get(
        "/v1/chat/sessions", params={"pageToken": "x" * 20_000}, headers=bearer(token)
    )
    assert response.status_code == 414, response.text
    body = status_body(response)
    assert body["code"] == 3 and reason(body) == "URI_TOO_LONG"


async def test_a_long_url_envoy_admits_reaches_the_backend(
    http: httpx2.AsyncClient, token: str
) -> None:
    # ~10,000 characters: was "metadata size exceeds soft limit" as a 429.
    response = await http.get(
        "/v1/chat/sessions", params={"pageToken": "x" * 10_000}, headers=bearer(token)
    )
    assert response.status_code == 400, response.text
    assert reason(status_body(response)) == "INVALID_PAGE_TOKEN"


async def test_envoys_refusals_reach_grpc_clients_as_plain_messages(envoy: Envoy) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sessions.ListSessions(spb.ListSessionsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = err.value.details() or ""
    assert details and not details.lstrip().startswith("{"), details
    assert "Jwt" in details or "jwt" in details.lower()


async def test_rest_clients_keep_the_json_status(http: httpx2.AsyncClient) -> None:
    response = await http.get("/v1/chat/sessions")
    assert response.status_code == 401
    assert reason(status_body(response)) == "UNAUTHENTICATED"


async def test_export_takes_the_short_format_names_and_lists_them_when_wrong(
    http: httpx2.AsyncClient, stack: ChatStack, token: str
) -> None:
    session = await new_session(http, token, displayName="Short names")
    for name, content_type in [
        ("text", "text/plain"),
        ("markdown", "text/markdown"),
        ("json", "application/json"),
        ("EXPORT_FORMAT_MARKDOWN", "text/markdown"),
    ]:
        response = await http.get(
            f"/v1/chat/{session}:export", params={"format": name}, headers=bearer(token)
        )
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-type"].startswith(content_type), name
    wrong = await http.get(
        f"/v1/chat/{session}:export", params={"format": "pdf"}, headers=bearer(token)
    )
    assert wrong.status_code == 400
    body = status_body(wrong)
    assert reason(body) == "INVALID_FORMAT"
    assert "text, markdown, json" in body["message"]
    assert "aichat.v1" not in body["message"]


async def test_a_large_session_exports_through_envoy_as_one_body(
    http: httpx2.AsyncClient, stack: ChatStack, user: str, token: str
) -> None:
    session = await new_session(http, token)
    answers = {f"q{i}:": f"a{i}:" + "y" * 1_000_000 for i in range(3)}

    def answer_by_question(request: RecordedRequest) -> Script:
        # Megabyte messages outgrow the model's window, so the turns may also ask for a
        # compaction summary: each call is answered by what it asks, not by its order.
        last = str(request.body["messages"][-1].get("content", ""))
        answer = answers.get(last[:3], "a short summary")
        return Script(tokens=[answer[j : j + 65536] for j in range(0, len(answer), 65536)])

    texts = []
    default, stack.fake.default = stack.fake.default, answer_by_question
    try:
        for i in range(3):
            question = f"q{i}:" + "x" * 999_000
            await stack.turn(user, session, question)
            texts += [question, answers[question[:3]]]
    finally:
        stack.fake.default = default
    response = await http.get(
        f"/v1/chat/{session}:export", params={"format": "json"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text[:500]
    assert [m["text"] for m in response.json()["messages"]] == texts
    assert response.headers["content-disposition"].startswith("attachment;")
