"""What a newcomer tripped over at the edge (issue 30, item 6), through the real Envoy."""

from __future__ import annotations

import httpx2
import pytest

from tests.e2e.envoy.helpers import bearer, reason, status_body

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]


async def test_an_unknown_body_field_is_refused_naming_it(
    http: httpx2.AsyncClient, token: str
) -> None:
    created = await http.post("/v1/chat/sessions", json={}, headers=bearer(token))
    assert created.status_code == 200, created.text
    session = created.json()["name"].removeprefix("sessions/")
    response = await http.post(
        f"/v1/chat/sessions/{session}:sendMessage", json={"txt": "hi"}, headers=bearer(token)
    )
    assert response.status_code == 400, response.text
    body = status_body(response)
    assert body["code"] == 3, body
    assert "txt" in body["message"], body  # names the field, not "text must not be empty"
    assert reason(body), body


async def test_a_missing_page_file_is_404_without_a_token(http: httpx2.AsyncClient) -> None:
    response = await http.get("/web/nope.js")
    assert response.status_code == 404, response.text
    assert status_body(response)["code"] == 5
    # The page's real files still load without a token.
    assert (await http.get("/web/js/main.js")).status_code == 200


async def test_known_fields_pass_in_either_spelling(http: httpx2.AsyncClient, token: str) -> None:
    created = await http.post(
        "/v1/chat/sessions", json={"displayName": "x", "tool_names": []}, headers=bearer(token)
    )
    assert created.status_code == 200, created.text
    refused = await http.post(
        "/v1/chat/sessions", json={"displayName": "x", "colour": "red"}, headers=bearer(token)
    )
    assert refused.status_code == 400, refused.text
    assert '"colour"' in status_body(refused)["message"]
    assert "displayName" in status_body(refused)["message"]  # says what there is
