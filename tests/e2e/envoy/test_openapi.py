"""The OpenAPI document of the REST surface: generated from the contract (`make gen`,
fresh by `make check-gen`), served by Envoy without a token, and true to what Envoy and
the backend answer: schemathesis fuzzes every operation through the real Envoy with a
token, within a bounded time, and finds no 5xx and no response that breaks the document."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import httpx2
import pytest

from tests.support.dev_stack import ROOT

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

DOCUMENT = ROOT / "gen" / "aichat.openapi.json"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# The fuzzing budget (the run's own --max-time): every operation reached, both phases done
# (33/33, 1,706 cases) in a run beside three busy loops on this 2-core machine.
MAX_SECONDS = 20


async def test_envoy_serves_the_document_without_a_token(http: httpx2.AsyncClient) -> None:
    response = await http.get("/v1/chat/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(DOCUMENT.read_text())


async def test_the_document_covers_every_http_rule() -> None:
    document = json.loads(DOCUMENT.read_text())
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    proto = "".join(p.read_text() for p in (ROOT / "proto/aichat/v1").glob("*_service.proto"))
    rpcs = {line.split()[1].split("(")[0] for line in proto.splitlines() if "  rpc " in line}
    # StreamChat has a second binding (GET for EventSource): StreamChat2.
    assert rpcs <= operations, rpcs - operations
    for path in document["paths"]:
        assert "=" not in path and "*" not in path, path  # OpenAPI paths, not gRPC templates


async def test_schemathesis_finds_no_server_error_and_no_broken_response(
    http: httpx2.AsyncClient, token: str, tmp_path: Path
) -> None:
    base = str(http.base_url).rstrip("/")
    # Not subprocess.run: the backend under test answers from this test's event loop.
    proc = await asyncio.create_subprocess_exec(
        *[
            str(SCHEMATHESIS),
            "run",
            f"{base}/v1/chat/openapi.json",
            "--url",
            base,
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--max-time",
            str(MAX_SECONDS),
            "--request-timeout",
            "20",
            "--seed",
            "30",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # it keeps a .schemathesis/ cache where it runs
    )
    out, _ = await asyncio.wait_for(proc.communicate(), MAX_SECONDS + 120)
    output = out.decode(errors="replace")
    assert proc.returncode == 0, output[-12000:]
    assert "No issues found" in output or "passed" in output, output[-4000:]
    # Every operation was called, not skipped for want of examples.
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, output[-4000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 24, output[-4000:]
