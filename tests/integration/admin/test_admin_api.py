"""The operator API on a real server (SQLite and PostgreSQL): who may call it, the bypass
list, usage reports and the runtime view."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aichat.v1 import admin_service_pb2 as apb
from aichat.v1 import admin_service_pb2_grpc
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import session_service_pb2 as spb
from aichat.v1 import tool_service_pb2 as tpb
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import insert

import aichat_backend
from aichat_backend.records import Usage
from aichat_backend.store import admin_repo
from aichat_backend.store.tables import usage_daily
from aichat_backend.store.usage_repo import add_usage
from aichat_backend.tools.server_status import CANNOT_CONNECT
from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import error_info, md, rich_status
from tests.support.tool_stack import tasks_server_entry, tool_stack

pytestmark = pytest.mark.timeout(60)

ADMIN = "ops-admin"


def admin_stub(stack: ChatStack) -> admin_service_pb2_grpc.AdminServiceStub:
    return admin_service_pb2_grpc.AdminServiceStub(stack.server.channel)


def as_role(user: str, role: str = "admin") -> tuple[tuple[str, str], ...]:
    return md(user, ("x-aichat-role", role))


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    async with chat_stack("openai", database_url, admin_users=f"{ADMIN}, other-admin") as s:
        yield s


async def all_bypasses(
    admin: admin_service_pb2_grpc.AdminServiceStub, page_size: int = 0
) -> list[apb.RateLimitBypass]:
    found: list[apb.RateLimitBypass] = []
    token = ""
    while True:
        page = await admin.ListRateLimitBypasses(
            apb.ListRateLimitBypassesRequest(page_size=page_size, page_token=token),
            metadata=md(ADMIN),
        )
        found += page.rate_limit_bypasses
        token = page.next_page_token
        if not token:
            return found


def bad_request_fields(err: grpc.aio.AioRpcError) -> list[str]:
    for detail in rich_status(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return [v.field for v in bad.field_violations]
    return []


CALLS: list[tuple[str, Any]] = [
    ("GetRuntimeStatus", apb.GetRuntimeStatusRequest()),
    ("ListRateLimitBypasses", apb.ListRateLimitBypassesRequest()),
    (
        "CreateRateLimitBypass",
        apb.CreateRateLimitBypassRequest(
            rate_limit_bypass=apb.RateLimitBypass(
                subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject="sneaky"
            )
        ),
    ),
    ("DeleteRateLimitBypass", apb.DeleteRateLimitBypassRequest(name="rateLimitBypasses/x1")),
    ("ListUsage", apb.ListUsageRequest()),
    ("CheckModels", apb.CheckModelsRequest()),
]


@pytest.mark.parametrize(("method", "request_pb"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("role", [None, "viewer", "administrator", "admins"])
async def test_everyone_else_is_denied(
    stack: ChatStack, user: str, method: str, request_pb: Any, role: str | None
) -> None:
    metadata = md(user) if role is None else as_role(user, role)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(admin_stub(stack), method)(request_pb, metadata=metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err.value)
    assert info.reason == "ADMIN_REQUIRED" and info.domain == "aichat.example.com"
    async with stack.server.app.db.read() as tx:
        entries = await admin_repo.audit_entries(tx, limit=1000)
    assert [e for e in entries if e["actor"] == user] == []  # nothing changed, nothing logged


async def test_no_identity_is_unauthenticated(stack: ChatStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin_stub(stack).GetRuntimeStatus(
            apb.GetRuntimeStatusRequest(), metadata=(("x-aichat-role", "admin"),)
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "metadata",
    [
        md(ADMIN),
        md("other-admin"),
        as_role("role-holder"),
        as_role("role-holder", "viewer, admin"),
        as_role("role-holder", "viewer admin"),
    ],
    ids=["listed", "listed-second", "role", "role-in-list", "role-space-separated"],
)
async def test_admins_by_list_or_role(stack: ChatStack, metadata: Any) -> None:
    status = await admin_stub(stack).GetRuntimeStatus(
        apb.GetRuntimeStatusRequest(), metadata=metadata
    )
    assert status.version == aichat_backend.__version__
    assert status.replica_id == stack.server.app.settings.replica_id
    assert status.uptime.ToNanoseconds() > 0
    assert status.start_time.seconds > 0


async def test_bypass_lifecycle_is_stored_and_audited(
    stack: ChatStack, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aichat_backend.audit")
    admin = admin_stub(stack)
    created = await admin.CreateRateLimitBypass(
        apb.CreateRateLimitBypassRequest(
            rate_limit_bypass=apb.RateLimitBypass(
                subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject=user, reason="load test"
            )
        ),
        metadata=md(ADMIN, ("x-request-id", "req-create-1")),
    )
    assert created.name.startswith("rateLimitBypasses/")
    assert (created.subject, created.reason, created.creator) == (user, "load test", ADMIN)
    assert created.create_time.seconds > 0
    key = await admin.CreateRateLimitBypass(
        apb.CreateRateLimitBypassRequest(
            rate_limit_bypass=apb.RateLimitBypass(
                subject_type=apb.BYPASS_SUBJECT_TYPE_API_KEY, subject=f"key-{user}"
            )
        ),
        metadata=as_role("role-holder"),
    )
    # The same subject twice is refused; the same text as another kind is not the same.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.CreateRateLimitBypass(
            apb.CreateRateLimitBypassRequest(
                rate_limit_bypass=apb.RateLimitBypass(
                    subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject=user
                )
            ),
            metadata=md(ADMIN),
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(err.value).reason == "BYPASS_ALREADY_EXISTS"

    # One entry per page, oldest first (other tests' entries may share the database).
    listed = await all_bypasses(admin, page_size=1)
    ours = [b for b in listed if b.name in (created.name, key.name)]
    assert [b.name for b in ours] == [created.name, key.name]
    assert ours[1].subject_type == apb.BYPASS_SUBJECT_TYPE_API_KEY
    first = await admin.ListRateLimitBypasses(
        apb.ListRateLimitBypassesRequest(page_size=1), metadata=md(ADMIN)
    )
    assert first.next_page_token
    # Another admin's page token is another list's.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.ListRateLimitBypasses(
            apb.ListRateLimitBypassesRequest(page_size=1, page_token=first.next_page_token),
            metadata=md("other-admin"),
        )
    assert error_info(err.value).reason == "INVALID_PAGE_TOKEN"

    await admin.DeleteRateLimitBypass(
        apb.DeleteRateLimitBypassRequest(name=created.name), metadata=md("other-admin")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.DeleteRateLimitBypass(
            apb.DeleteRateLimitBypassRequest(name=created.name), metadata=md(ADMIN)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err.value).reason == "BYPASS_NOT_FOUND"
    left = await all_bypasses(admin)
    assert [b.name for b in left if b.name in (created.name, key.name)] == [key.name]

    async with stack.server.app.db.read() as tx:
        entries = list(reversed(await admin_repo.audit_entries(tx, limit=1000)))
    entries = [e for e in entries if e["target"] in (created.name, key.name)]
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        (ADMIN, "rate_limit_bypass.create", created.name),
        ("role-holder", "rate_limit_bypass.create", key.name),
        ("other-admin", "rate_limit_bypass.delete", created.name),
    ]
    assert entries[0]["detail"] == {"subject_type": "user", "subject": user, "reason": "load test"}
    assert entries[0]["request_id"] == "req-create-1"
    lines = [
        (r.actor, r.action, r.subject, r.request_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "aichat_backend.audit" and r.getMessage() == "admin change"
    ]
    assert lines[0] == (ADMIN, "rate_limit_bypass.create", user, "req-create-1")
    assert [line[:2] for line in lines] == [
        (ADMIN, "rate_limit_bypass.create"),
        ("role-holder", "rate_limit_bypass.create"),
        ("other-admin", "rate_limit_bypass.delete"),
    ]


@pytest.mark.parametrize(
    ("bypass", "field", "reason"),
    [
        (
            apb.RateLimitBypass(subject="x"),
            "rate_limit_bypass.subject_type",
            "INVALID_SUBJECT_TYPE",
        ),
        (
            apb.RateLimitBypass(subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject="  "),
            "rate_limit_bypass.subject",
            "INVALID_SUBJECT",
        ),
        (
            apb.RateLimitBypass(subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject="a\nb"),
            "rate_limit_bypass.subject",
            "INVALID_SUBJECT",
        ),
        (
            apb.RateLimitBypass(subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject="x" * 257),
            "rate_limit_bypass.subject",
            "INVALID_SUBJECT",
        ),
        (
            apb.RateLimitBypass(
                subject_type=apb.BYPASS_SUBJECT_TYPE_USER, subject="x", reason="r" * 1001
            ),
            "rate_limit_bypass.reason",
            "REASON_TOO_LONG",
        ),
    ],
    ids=["no-type", "blank", "control-char", "too-long", "reason-too-long"],
)
async def test_bad_bypasses_are_refused_and_nothing_is_stored(
    stack: ChatStack, bypass: apb.RateLimitBypass, field: str, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin_stub(stack).CreateRateLimitBypass(
            apb.CreateRateLimitBypassRequest(rate_limit_bypass=bypass), metadata=md(ADMIN)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == reason
    assert bad_request_fields(err.value) == [field]
    listed = await all_bypasses(admin_stub(stack))
    assert [b for b in listed if b.subject.strip() in ("x", "a\nb", "x" * 257)] == []


@pytest.mark.parametrize(
    "name", ["", "rateLimitBypasses/", "sessions/abc", "rateLimitBypasses/A B"]
)
async def test_delete_needs_a_bypass_name(stack: ChatStack, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin_stub(stack).DeleteRateLimitBypass(
            apb.DeleteRateLimitBypassRequest(name=name), metadata=md(ADMIN)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "INVALID_RESOURCE_NAME"


async def test_a_bypass_lifts_the_request_rate_limit_only_for_its_subject(
    sqlite_url: str, user: str, other_user: str
) -> None:
    async with chat_stack(
        "openai", sqlite_url, rate_rps=0.01, rate_burst=2, admin_users=ADMIN
    ) as stack:
        sessions = stack.server.sessions
        request = spb.ListSessionsRequest()

        async def limited(metadata: Any) -> bool:
            try:
                await sessions.ListSessions(request, metadata=metadata)
            except grpc.aio.AioRpcError as err:
                assert error_info(err).reason == "RATE_LIMITED"
                return True
            return False

        assert [await limited(md(user)) for _ in range(3)] == [False, False, True]
        assert [await limited(md(other_user)) for _ in range(3)] == [False, False, True]
        admin = admin_stub(stack)
        admin_md = md(ADMIN, ("x-api-key-id", "ci-key"))  # the admin's own calls count too
        for subject_type, subject in [
            (apb.BYPASS_SUBJECT_TYPE_USER, user),
            (apb.BYPASS_SUBJECT_TYPE_API_KEY, "ci-key"),
        ]:
            await admin.CreateRateLimitBypass(
                apb.CreateRateLimitBypassRequest(
                    rate_limit_bypass=apb.RateLimitBypass(
                        subject_type=subject_type, subject=subject
                    )
                ),
                metadata=admin_md,
            )
        # Applied on this replica at once: no refresh to wait for.
        assert [await limited(md(user)) for _ in range(10)] == [False] * 10
        # The API key exempts whoever presents it (the edge names it), once, unambiguously.
        with_key = md(other_user, ("x-api-key-id", "ci-key"))
        assert [await limited(with_key) for _ in range(10)] == [False] * 10
        twice = md(other_user, ("x-api-key-id", "ci-key"), ("x-api-key-id", "ci-key"))
        assert await limited(twice) is True
        assert await limited(md(other_user)) is True
        assert await limited(md(other_user, ("x-api-key-id", "other-key"))) is True
        status = await admin.GetRuntimeStatus(apb.GetRuntimeStatusRequest(), metadata=admin_md)
        assert status.limits.bypass_entries == 2
        assert status.limits.refused["RATE_LIMITED"] == 5
        assert status.limits.rate_rps == pytest.approx(0.01) and status.limits.rate_burst == 2
        assert status.limits.shared is False and status.limits.degraded_reason == ""


async def test_usage_per_user_and_model_paged(stack: ChatStack, user: str) -> None:
    db = stack.server.app.db
    ua, ub = f"{user}-a", f"{user}-b"
    m1, m2 = f"m1-{user}", f"m2-{user}"
    rows = [
        (ua, "2025-01-01", m1, 10, 1),
        (ua, "2025-01-02", m1, 5, 2),
        (ua, "2025-01-02", m2, 7, 3),
        (ub, "2025-01-02", m1, 100, 50),
        (ub, "2025-02-01", m1, 1000, 1000),  # outside the range asked for below
    ]
    async with db.transaction() as tx:
        for user_id, day, model, i, o in rows:
            await tx.execute(
                insert(usage_daily).values(
                    user_id=user_id,
                    day=day,
                    model=model,
                    input_tokens=i,
                    output_tokens=o,
                    turns=1,
                )
            )
    admin = admin_stub(stack)
    rng = {"start_day": "2025-01-01", "end_day": "2025-01-31"}
    seen: list[tuple[str, str, int, int, int]] = []
    token = ""
    pages = 0
    while True:
        page = await admin.ListUsage(
            apb.ListUsageRequest(page_size=2, page_token=token, **rng), metadata=md(ADMIN)
        )
        pages += 1
        seen += [
            (r.user_id, r.model, r.input_tokens, r.output_tokens, r.model_calls) for r in page.rows
        ]
        token = page.next_page_token
        if not token:
            break
    assert pages == 2
    assert seen == [(ua, m1, 15, 3, 2), (ua, m2, 7, 3, 1), (ub, m1, 100, 50, 1)]

    by_user = await admin.ListUsage(
        apb.ListUsageRequest(grouping=apb.USAGE_GROUPING_USER, **rng), metadata=md(ADMIN)
    )
    assert [(r.user_id, r.model, r.input_tokens) for r in by_user.rows] == [
        (ua, "", 22),
        (ub, "", 100),
    ]
    by_model = await admin.ListUsage(
        apb.ListUsageRequest(grouping=apb.USAGE_GROUPING_MODEL, **rng), metadata=md(ADMIN)
    )
    assert [(r.model, r.input_tokens, r.output_tokens) for r in by_model.rows] == [
        (m1, 115, 53),
        (m2, 7, 3),
    ]
    one = await admin.ListUsage(
        apb.ListUsageRequest(user_id=ub, start_day="2025-01-01", end_day="2025-12-31"),
        metadata=md(ADMIN),
    )
    assert [(r.model, r.input_tokens) for r in one.rows] == [(m1, 1100)]
    # A token is good only for the list (filters) it came from.
    first = await admin.ListUsage(apb.ListUsageRequest(page_size=1, **rng), metadata=md(ADMIN))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.ListUsage(
            apb.ListUsageRequest(page_size=1, page_token=first.next_page_token, model=m1, **rng),
            metadata=md(ADMIN),
        )
    assert error_info(err.value).reason == "INVALID_PAGE_TOKEN"


async def test_usage_counts_model_calls_and_says_so(stack: ChatStack, user: str) -> None:
    """Issue 30: the field said `turns` and counted model calls; the contract now names it."""
    fields = apb.UsageRow.DESCRIPTOR.fields_by_name
    assert "model_calls" in fields and "turns" not in fields


async def test_usage_today_by_default_counts_real_turns(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(tokens=["a", "b"], input_tokens=11, output_tokens=2))
    await stack.turn(user, session, "hello")
    async with stack.server.app.db.transaction() as tx:
        await add_usage(tx, user, Usage("other-model", 1, 1))
    page = await admin_stub(stack).ListUsage(apb.ListUsageRequest(user_id=user), metadata=md(ADMIN))
    assert [(r.model, r.input_tokens, r.output_tokens, r.model_calls) for r in page.rows] == [
        ("gpt-test", 11, 2, 1),
        ("other-model", 1, 1, 1),
    ]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"start_day": "yesterday"}, "INVALID_DAY"),
        ({"end_day": "2026-13-01"}, "INVALID_DAY"),
        ({"start_day": "2026-02-01", "end_day": "2026-01-01"}, "INVALID_DAY_RANGE"),
        ({"start_day": "1900-01-01", "end_day": "2026-01-01"}, "INVALID_DAY_RANGE"),
        ({"page_size": -1}, "INVALID_PAGE_SIZE"),
        ({"page_token": "garbage"}, "INVALID_PAGE_TOKEN"),
        ({"grouping": 99}, "INVALID_GROUPING"),
    ],
)
async def test_bad_usage_queries(stack: ChatStack, fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin_stub(stack).ListUsage(apb.ListUsageRequest(**fields), metadata=md(ADMIN))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == reason


async def test_runtime_view_of_turns_approvals_and_tool_servers(
    sqlite_url: str, tmp_path: Path, user: str, other_user: str
) -> None:
    servers = {
        "tasks": tasks_server_entry(tmp_path / "tasks.db"),
        "broken": {"command": str(tmp_path / "no-such-server"), "args": []},
    }
    async with tool_stack(
        "openai", sqlite_url, tmp_path, servers=servers, broken={"broken"}, admin_users=ADMIN
    ) as stack:
        admin = admin_stub(stack)
        # One turn waits for approval (stored: every replica sees it).
        waiting = await stack.new_session(other_user)
        stack.fake.enqueue(
            Script(tokens=["ok"], tool_calls=[("c1", "tasks__add_task", {"title": "x"})])
        )
        events = await stack.turn(other_user, waiting, "add a task")
        assert events[-1].turn_ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL
        # Two turns run now: hung upstreams, one per session.
        stack.fake.enqueue(
            Script(tokens=["busy"], hang_after=1), Script(tokens=["busy"], hang_after=1)
        )
        calls = []
        for _ in range(2):
            session = await stack.new_session(user)
            call = stack.server.chat.StreamChat(
                cpb.StreamChatRequest(session=session, text="go"), metadata=md(user)
            )
            async for event in call:
                if event.WhichOneof("event") == "text_delta":
                    break
            calls.append(call)
        status = await admin.GetRuntimeStatus(apb.GetRuntimeStatusRequest(), metadata=md(ADMIN))
        assert status.active_turns == 2
        assert [(c.key, c.count) for c in status.active_turns_by_model] == [("gpt-test", 2)]
        assert [(c.key, c.count) for c in status.active_turns_by_user] == [(user, 2)]
        assert status.pending_approvals == 1
        by_name = {t.name: t for t in status.tool_servers}
        assert by_name["toolServers/tasks"].state == tpb.TOOL_SERVER_STATE_CONNECTED
        assert by_name["toolServers/tasks"].tool_count > 0
        broken = by_name["toolServers/broken"]
        assert broken.state == tpb.TOOL_SERVER_STATE_FAILED
        assert "no-such-server" in broken.last_error  # the detail operators need
        listed = await stack.server.tools.ListToolServers(
            tpb.ListToolServersRequest(), metadata=md(user)
        )
        seen = {t.name: t for t in listed.tool_servers}
        assert seen["toolServers/broken"].state == tpb.TOOL_SERVER_STATE_FAILED
        assert "no-such-server" not in seen["toolServers/broken"].last_error  # users: generic
        assert seen["toolServers/broken"].last_error == CANNOT_CONNECT
        assert seen["toolServers/tasks"].last_error == ""
        assert [m.name for m in status.models] == ["gpt-test"]
        for call in calls:
            call.cancel()
        assert await stack.server.app.engine.wait_idle(10)
        status = await admin.GetRuntimeStatus(apb.GetRuntimeStatusRequest(), metadata=md(ADMIN))
        assert status.active_turns == 0 and list(status.active_turns_by_user) == []


async def test_admin_service_is_in_health_and_reflection(stack: ChatStack) -> None:
    health = health_pb2_grpc.HealthStub(stack.server.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service="aichat.v1.AdminService"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
