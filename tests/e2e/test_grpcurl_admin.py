"""The operator API as an operator meets it with the real grpcurl: discovered by
reflection, closed without the role, open with it."""

from __future__ import annotations

import json

import pytest

from tests.support.server import Running
from tests.support.tools import binary, grpcurl, run

pytestmark = pytest.mark.timeout(60)


async def as_admin(
    target: str, user: str, method: str, data: object = None
) -> tuple[int, str, str]:
    argv = [binary("grpcurl"), "-plaintext", "-max-time", "15"]
    argv += ["-H", f"x-user-id: {user}", "-H", "x-aichat-role: admin"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    return await run(*argv, target, method)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


async def test_admin_service_by_reflection_and_role(server: Running, user: str) -> None:
    code, out, err = await grpcurl(server.target, "describe", "aichat.v1.AdminService")
    assert code == 0, err
    for rpc in ("GetRuntimeStatus", "CreateRateLimitBypass", "ListUsage", "CheckModels"):
        assert f"rpc {rpc} " in out

    method = "aichat.v1.AdminService/GetRuntimeStatus"
    code, out, err = await grpcurl(server.target, method, user=user)
    assert code != 0 and "PermissionDenied" in err and "ADMIN_REQUIRED" in err

    code, out, err = await as_admin(server.target, user, method)
    assert code == 0, err
    assert json.loads(out)["version"]

    code, out, err = await as_admin(
        server.target,
        user,
        "aichat.v1.AdminService/CreateRateLimitBypass",
        {"rate_limit_bypass": {"subject_type": "BYPASS_SUBJECT_TYPE_USER", "subject": user}},
    )
    assert code == 0, err
    assert json.loads(out)["creator"] == user
