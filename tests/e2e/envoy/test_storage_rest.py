"""The storage quota through the real Envoy (issue 24.6), as curl meets it: a message past
the quota is HTTP 429 with STORAGE_QUOTA_EXCEEDED; GET /v1/chat/usage shows the caller's
stored bytes and quota, GET /v1/admin/storage everyone's; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from aichat_devtools.dev_token import ADMIN_CLAIM, DevKeys, make_token
from aichat_devtools.fake_llm import Script
from tests.e2e.envoy.helpers import bearer, detail, reason, status_body
from tests.support.chat import ChatStack, chat_stack

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

QUOTA = 2_000_000
FILE = 400_000  # a text file counts its bytes and the text read from it: 800 kB
ANSWER = "noted"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    # Outside the event loop: the PostgreSQL fixture makes its database synchronously.
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_database_url"))
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'aichat.db'}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(db_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", db_url, storage_quota_bytes=QUOTA) as s:
        s.fake.default = lambda _request: Script(text=ANSWER)
        yield s


def body(text: str) -> dict[str, object]:
    content = base64.b64encode(b"z" * FILE).decode()
    return {
        "text": text,
        "attachments": [{"filename": "z.txt", "mimeType": "text/plain", "content": content}],
    }


async def test_past_the_quota_is_429_and_both_listings_show_it(
    http: httpx2.AsyncClient, stack: ChatStack, dev_keys: DevKeys, token: str, user: str
) -> None:
    created = await http.post("/v1/chat/sessions", json={}, headers=bearer(token))
    session = created.json()["name"]
    for text in ("first", "second"):
        sent = await http.post(
            f"/v1/chat/{session}:sendMessage", json=body(text), headers=bearer(token)
        )
        assert sent.status_code == 200, sent.text
    stored = 2 * FILE * 2 + len("first") + len("second") + 2 * len(ANSWER)
    refused = await http.post(
        f"/v1/chat/{session}:sendMessage", json=body("third"), headers=bearer(token)
    )
    assert refused.status_code == 429, refused.text
    status = status_body(refused)
    assert reason(status) == "STORAGE_QUOTA_EXCEEDED"
    info = detail(status, "ErrorInfo")
    assert info is not None and info["metadata"]["stored_bytes"] == str(stored)
    mine = (await http.get("/v1/chat/usage", headers=bearer(token))).json()
    assert (mine["storedBytes"], mine["storageQuotaBytes"]) == (str(stored), str(QUOTA))
    admin = make_token(dev_keys, "storage-admin", extra_claims={ADMIN_CLAIM: "admin"})
    listed = await http.get(f"/v1/admin/storage?userId={user}", headers=bearer(admin))
    assert listed.status_code == 200, listed.text
    assert listed.json()["users"] == [{"userId": user, "storedBytes": str(stored)}]
    assert listed.json()["storageQuotaBytes"] == str(QUOTA)
    # Clearing the session gives it all back.
    cleared = await http.post(f"/v1/chat/{session}:clearMessages", json={}, headers=bearer(token))
    assert cleared.status_code == 200, cleared.text
    mine = (await http.get("/v1/chat/usage", headers=bearer(token))).json()
    assert mine.get("storedBytes", "0") == "0"
