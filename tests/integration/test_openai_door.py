"""The OpenAI-compatible listener itself (no Envoy): who it believes, what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from tests.support.chat import ChatStack, chat_stack
from tests.support.http import TLS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def door(sqlite_url: str) -> AsyncIterator[tuple[ChatStack, httpx2.AsyncClient]]:
    async with chat_stack("openai", sqlite_url) as stack:
        url = f"http://127.0.0.1:{stack.server.app.openai_port}"
        async with httpx2.AsyncClient(verify=TLS, base_url=url, timeout=10) as http:
            yield stack, http


async def test_no_identity_is_a_401_like_any_rpc(
    door: tuple[ChatStack, httpx2.AsyncClient], user: str
) -> None:
    _, http = door
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    cases = {
        "missing_identity": [],
        "ambiguous_identity": [("x-user-id", user), ("x-user-id", "someone")],
        "invalid_identity": [("x-user-id", "x" * 300)],
    }
    for code, headers in cases.items():
        refused = await http.post("/v1/chat/completions", json=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["type"] == "authentication_error"
        assert refused.json()["error"]["code"] == code
    models = await http.get("/v1/models")
    assert models.status_code == 401 and models.json()["error"]["code"] == "missing_identity"


async def test_malformed_requests_and_unknown_paths_are_openai_errors(
    door: tuple[ChatStack, httpx2.AsyncClient], user: str
) -> None:
    stack, http = door
    me = {"x-user-id": user}
    garbage = await http.post("/v1/chat/completions", content=b"{not json", headers=me)
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "malformed_request"
    listed = await http.post("/v1/chat/completions", json=[1, 2], headers=me)
    assert listed.status_code == 400
    nowhere = await http.get("/v1/embeddings", headers=me)
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["message"] == "Invalid URL (GET /v1/embeddings)"
    assert stack.fake.requests == []
