"""What a newcomer tries at the edge: a form upload, and grpcurl through Envoy by reflection.

Real curl and real grpcurl, against the repository's envoy.yaml in front of a real backend.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx2
import pytest
import yaml

from aichat_devtools.dev_token import DevKeys, make_token
from tests.e2e.envoy.helpers import bearer
from tests.e2e.envoy.test_config import http_filter
from tests.support.envoy import CONFIG, Envoy
from tests.support.tools import binary, run

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


async def test_a_form_upload_is_refused_with_what_to_send_instead(
    envoy: Envoy, token: str, tmp_path: Path
) -> None:
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 64)
    for verb in ("sendMessage", "streamChat"):
        code, out, err = await run(
            binary("curl"),
            "-s",
            "-H",
            f"Authorization: Bearer {token}",
            "-F",
            f"file=@{pdf}",
            "-F",
            "text=Summarize",
            "-w",
            "\n%{http_code}",
            f"{envoy.base_url}/v1/chat/sessions/any:{verb}",
        )
        assert code == 0, err
        body, status = out.rsplit("\n", 1)
        assert status == "415", out
        answer = json.loads(body)
        assert answer["code"] == 3  # INVALID_ARGUMENT
        assert answer["details"][0]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "base64" in answer["message"] and '"attachments"' in answer["message"]
        assert "curl " in answer["message"]  # the line to use instead


async def test_grpcurl_through_envoy_by_reflection_with_a_token(envoy: Envoy, token: str) -> None:
    target = f"127.0.0.1:{envoy.port}"
    grpcurl = binary("grpcurl")
    code, out, err = await run(grpcurl, "-plaintext", *_auth(token), target, "list")
    assert code == 0, err + envoy.log()
    assert "aichat.v1.SessionService" in out.split()
    code, out, err = await run(
        grpcurl,
        "-plaintext",
        *_auth(token),
        "-d",
        '{"session": {"display_name": "via Envoy"}}',
        target,
        "aichat.v1.SessionService/CreateSession",
    )
    assert code == 0, err
    assert json.loads(out)["display_name"] == "via Envoy", out  # grpcurl keeps proto names
    # Without a token, reflection is refused like every other call.
    code, _out, err = await run(grpcurl, "-plaintext", target, "list")
    assert code != 0 and "Unauthenticated" in err, err


def _auth(token: str) -> list[str]:
    return ["-H", f"authorization: {bearer(token)['authorization']}"]


async def test_token_expiry_has_the_documented_clock_skew(
    http: httpx2.AsyncClient, dev_keys: DevKeys, user: str
) -> None:
    """envoy.yaml's clock_skew_seconds (30, in docs/deployment.md): just expired still passes."""
    skew = CLOCK_SKEW_SECONDS
    now = time.time()
    within = make_token(dev_keys, user, ttl_seconds=60, now=now - 60 - skew / 3)
    past = make_token(dev_keys, user, ttl_seconds=60, now=now - 60 - skew * 2)
    assert (await http.get("/v1/chat/sessions", headers=bearer(within))).status_code == 200
    assert (await http.get("/v1/chat/sessions", headers=bearer(past))).status_code == 401


def _clock_skew() -> int:
    jwt_filter = http_filter(yaml.safe_load(CONFIG.read_text()), "envoy.filters.http.jwt_authn")
    return int(jwt_filter["providers"]["aichat"]["clock_skew_seconds"])


CLOCK_SKEW_SECONDS = _clock_skew()
