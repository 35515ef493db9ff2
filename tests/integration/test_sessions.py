"""SessionService against a real grpc.aio server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import grpc
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from google.protobuf import field_mask_pb2

from aichat_backend.domain import Role
from aichat_backend.store.messages_repo import MessageRepository
from tests.support.grpc_helpers import error_info, joined_body, md, retry_info
from tests.support.server import Running

pytestmark = pytest.mark.timeout(30)


async def create(server: Running, user: str, **fields: object) -> rpb.Session:
    session_id = str(fields.pop("session_id", ""))
    request_id = str(fields.pop("request_id", ""))
    return await server.sessions.CreateSession(
        spb.CreateSessionRequest(
            session=rpb.Session(**fields), session_id=session_id, request_id=request_id
        ),
        metadata=md(user),
    )


async def add_message(server: Running, user: str, session: rpb.Session, text: str) -> None:
    """Store a user message the way the chat engine does (ChatService is another issue)."""
    session_id = session.name.split("/", 1)[1]
    async with server.app.db.transaction() as tx:
        await MessageRepository(tx, user).append(
            session_id, Role.USER, text, display_name_if_empty=text[:60], lock_tools=True
        )


async def test_create_get_roundtrip(server: Running, user: str) -> None:
    created = await create(
        server,
        user,
        display_name="Database tuning",
        system_prompt="Be brief.",
        tool_names=["tasks__add_task"],
        memory_limit=12,
        labels={"team": "dba"},
    )
    assert created.name.startswith("sessions/")
    assert created.create_time.seconds > 0
    assert created.update_time == created.create_time
    got = await server.sessions.GetSession(
        spb.GetSessionRequest(name=created.name), metadata=md(user)
    )
    assert got == created
    assert got.display_name == "Database tuning"
    assert list(got.tool_names) == ["tasks__add_task"]
    assert dict(got.labels) == {"team": "dba"}
    assert got.memory_limit == 12
    assert got.message_count == 0


async def test_client_chosen_id_and_conflict(server: Running, user: str, other_user: str) -> None:
    s = await create(server, user, session_id="my-chat")
    assert s.name == "sessions/my-chat"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(server, user, session_id="my-chat")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(err.value).reason == "SESSION_ALREADY_EXISTS"
    # Ids are per user: another user's "my-chat" neither collides nor leaks existence.
    theirs = await create(server, other_user, session_id="my-chat")
    assert theirs.name == "sessions/my-chat"


@pytest.mark.parametrize(
    "bad_id", ["Upper", "1starts-with-digit", "has_underscore", "x" * 64, "end-"]
)
async def test_invalid_session_id(server: Running, user: str, bad_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(server, user, session_id=bad_id)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "INVALID_SESSION_ID"


async def test_request_id_replays_first_result(server: Running, user: str) -> None:
    first = await create(server, user, display_name="once", request_id="req-1")
    again = await create(server, user, display_name="once", request_id="req-1")
    assert again.name == first.name
    page = await server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    assert [s.name for s in page.sessions] == [first.name]


async def test_request_id_is_scoped_per_user(server: Running, user: str, other_user: str) -> None:
    mine = await create(server, user, request_id="shared-key")
    theirs = await create(server, other_user, request_id="shared-key")
    assert mine.name != theirs.name


async def test_other_users_session_is_not_found(
    server: Running, user: str, other_user: str
) -> None:
    s = await create(server, user)
    calls = [
        server.sessions.GetSession(spb.GetSessionRequest(name=s.name), metadata=md(other_user)),
        server.sessions.DeleteSession(
            spb.DeleteSessionRequest(name=s.name), metadata=md(other_user)
        ),
        server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=s.name), metadata=md(other_user)
        ),
        server.sessions.ClearMessages(
            spb.ClearMessagesRequest(name=s.name), metadata=md(other_user)
        ),
        joined_body(
            server.sessions.ExportSession(
                spb.ExportSessionRequest(name=s.name), metadata=md(other_user)
            )
        ),
        server.sessions.UpdateSession(
            spb.UpdateSessionRequest(
                session=rpb.Session(name=s.name, display_name="hijack"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=md(other_user),
        ),
    ]
    missing = "sessions/does-not-exist"
    with pytest.raises(grpc.aio.AioRpcError) as absent:
        await server.sessions.GetSession(
            spb.GetSessionRequest(name=missing), metadata=md(other_user)
        )
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(err.value).reason == error_info(absent.value).reason
        # Same message shape as a session that never existed.
        assert err.value.details().replace(s.name, missing) == absent.value.details()
    still = await server.sessions.GetSession(spb.GetSessionRequest(name=s.name), metadata=md(user))
    assert still.display_name == ""


async def test_list_newest_activity_first_with_keyset_pages(server: Running, user: str) -> None:
    made = [await create(server, user, display_name=f"s{i}") for i in range(7)]
    # Activity on the oldest session moves it to the front.
    await add_message(server, user, made[0], "hello")
    expected = [made[0].name] + [s.name for s in reversed(made[1:])]
    seen: list[str] = []
    token = ""
    while True:
        page = await server.sessions.ListSessions(
            spb.ListSessionsRequest(page_size=3, page_token=token), metadata=md(user)
        )
        assert len(page.sessions) <= 3
        seen += [s.name for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected


async def test_list_page_size_bounds(server: Running, user: str, other_user: str) -> None:
    for _ in range(3):
        await create(server, user)
    page = await server.sessions.ListSessions(
        spb.ListSessionsRequest(page_size=5000), metadata=md(user)
    )
    assert len(page.sessions) == 3 and page.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.ListSessions(spb.ListSessionsRequest(page_size=-1), metadata=md(user))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "INVALID_PAGE_SIZE"
    first = await server.sessions.ListSessions(
        spb.ListSessionsRequest(page_size=1), metadata=md(user)
    )
    for token in ["garbage!", "eyJrIjoic2Vzc2lvbnMifQ", first.next_page_token[:-2]]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await server.sessions.ListSessions(
                spb.ListSessionsRequest(page_token=token), metadata=md(user)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, token
        assert error_info(err.value).reason == "INVALID_PAGE_TOKEN"
    # A token issued to one user is refused for another.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.ListSessions(
            spb.ListSessionsRequest(page_token=first.next_page_token), metadata=md(other_user)
        )
    assert error_info(err.value).reason == "INVALID_PAGE_TOKEN"


async def test_update_with_mask_without_mask_and_star(server: Running, user: str) -> None:
    s = await create(server, user, display_name="old", system_prompt="p", labels={"a": "1"})
    masked = await server.sessions.UpdateSession(
        spb.UpdateSessionRequest(
            session=rpb.Session(name=s.name, display_name="new", system_prompt="ignored"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=md(user),
    )
    assert masked.display_name == "new" and masked.system_prompt == "p"
    assert masked.update_time.ToMicroseconds() > s.update_time.ToMicroseconds()
    unmasked = await server.sessions.UpdateSession(
        spb.UpdateSessionRequest(session=rpb.Session(name=s.name, memory_limit=7)),
        metadata=md(user),
    )
    assert unmasked.memory_limit == 7 and unmasked.display_name == "new"
    star = await server.sessions.UpdateSession(
        spb.UpdateSessionRequest(
            session=rpb.Session(name=s.name, display_name="only"),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        ),
        metadata=md(user),
    )
    assert star.display_name == "only" and star.system_prompt == "" and dict(star.labels) == {}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.UpdateSession(
            spb.UpdateSessionRequest(
                session=rpb.Session(name=s.name),
                update_mask=field_mask_pb2.FieldMask(paths=["message_count"]),
            ),
            metadata=md(user),
        )
    assert error_info(err.value).reason == "INVALID_UPDATE_MASK"


async def test_tools_lock_after_first_message(server: Running, user: str) -> None:
    s = await create(server, user, tool_names=["a__x"])
    await add_message(server, user, s, "first message sets the title")
    got = await server.sessions.GetSession(spb.GetSessionRequest(name=s.name), metadata=md(user))
    assert got.tools_locked and got.message_count == 1
    assert got.display_name == "first message sets the title"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.UpdateSession(
            spb.UpdateSessionRequest(
                session=rpb.Session(name=s.name, tool_names=["a__y"]),
                update_mask=field_mask_pb2.FieldMask(paths=["tool_names"]),
            ),
            metadata=md(user),
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value).reason == "TOOLS_LOCKED"


async def test_messages_paging_clear_and_delete_cascade(server: Running, user: str) -> None:
    s = await create(server, user)
    for i in range(5):
        await add_message(server, user, s, f"m{i}")
    texts: list[str] = []
    token = ""
    while True:
        page = await server.sessions.ListMessages(
            spb.ListMessagesRequest(parent=s.name, page_size=2, page_token=token), metadata=md(user)
        )
        texts += [m.text for m in page.messages]
        assert all(
            m.role == rpb.ROLE_USER and m.name.startswith(s.name + "/messages/")
            for m in page.messages
        )
        token = page.next_page_token
        if not token:
            break
    assert texts == [f"m{i}" for i in range(5)]
    await server.sessions.ClearMessages(spb.ClearMessagesRequest(name=s.name), metadata=md(user))
    cleared = await server.sessions.GetSession(
        spb.GetSessionRequest(name=s.name), metadata=md(user)
    )
    assert cleared.message_count == 0 and not cleared.tools_locked
    empty = await server.sessions.ListMessages(
        spb.ListMessagesRequest(parent=s.name), metadata=md(user)
    )
    assert list(empty.messages) == []
    await add_message(server, user, s, "after clear")
    await server.sessions.DeleteSession(spb.DeleteSessionRequest(name=s.name), metadata=md(user))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.GetSession(spb.GetSessionRequest(name=s.name), metadata=md(user))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Nothing of the session is left behind.
    from sqlalchemy import func, select

    from aichat_backend.store.tables import messages

    async with server.app.db.transaction() as tx:
        left = await tx.scalar(
            select(func.count()).select_from(messages).where(messages.c.user_id == user)
        )
    assert left == 0


@pytest.mark.parametrize(
    ("fmt", "content_type", "ext"),
    [
        (spb.EXPORT_FORMAT_UNSPECIFIED, "text/plain; charset=utf-8", "txt"),
        (spb.EXPORT_FORMAT_MARKDOWN, "text/markdown; charset=utf-8", "md"),
        (spb.EXPORT_FORMAT_JSON, "application/json", "json"),
    ],
)
async def test_export(server: Running, user: str, fmt: int, content_type: str, ext: str) -> None:
    s = await create(server, user, display_name="Weekly report", model="")
    await add_message(server, user, s, "How busy was the primary?")
    call = server.sessions.ExportSession(
        spb.ExportSessionRequest(name=s.name, format=fmt), metadata=md(user)
    )
    body = await joined_body(call)
    headers = dict(await call.initial_metadata())
    assert body.content_type == content_type
    assert headers["content-disposition"] == f'attachment; filename="Weekly-report.{ext}"'
    assert headers["x-request-id"]
    text = body.data.decode()
    if ext == "json":
        doc = json.loads(text)
        assert doc["session"]["name"] == s.name
        assert doc["messages"][0]["text"] == "How busy was the primary?"
        assert doc["messages"][0]["role"] == "ROLE_USER"
        assert doc["messages"][0]["createTime"]
    else:
        assert "Weekly report" in text and "How busy was the primary?" in text
        assert "User" in text and "UTC" in text and s.name in text


async def test_validation_errors_name_the_field(server: Running, user: str) -> None:
    cases = [
        (dict(memory_limit=-1), "session.memory_limit"),
        (dict(memory_limit=10_000), "session.memory_limit"),
        (dict(display_name="x" * 201), "session.display_name"),
        (dict(labels={"Bad Key": "v"}), "session.labels"),
    ]
    for fields, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await create(server, user, **fields)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "INVALID_FIELD"
        from google.rpc import error_details_pb2

        from tests.support.grpc_helpers import rich_status

        violations = []
        for d in rich_status(err.value).details:
            br = error_details_pb2.BadRequest()
            if d.Unpack(br):
                violations = [v.field for v in br.field_violations]
        assert violations == [field]


async def test_identity_rules(server: Running) -> None:
    request = spb.ListSessionsRequest()
    bad = [
        ((), "MISSING_IDENTITY"),
        ((("x-user-id", ""),), "INVALID_IDENTITY"),
        ((("x-user-id", "   "),), "INVALID_IDENTITY"),
        ((("x-user-id", "a" * 257),), "INVALID_IDENTITY"),
        # Two spellings must never name one user: " victim " is not "victim".
        ((("x-user-id", " victim "),), "INVALID_IDENTITY"),
        ((("x-user-id", "victim "),), "INVALID_IDENTITY"),
        ((("x-user-id", "a"), ("x-user-id", "b")), "AMBIGUOUS_IDENTITY"),
    ]
    for metadata, reason in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await server.sessions.ListSessions(request, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert error_info(err.value).reason == reason


async def test_request_id_echoed_and_generated(server: Running, user: str) -> None:
    call = server.sessions.ListSessions(
        spb.ListSessionsRequest(), metadata=md(user, ("x-request-id", "trace-abc-123"))
    )
    await call
    assert dict(await call.initial_metadata())["x-request-id"] == "trace-abc-123"
    call = server.sessions.ListSessions(spb.ListSessionsRequest(), metadata=md(user))
    await call
    generated = dict(await call.initial_metadata())["x-request-id"]
    assert len(generated) == 32
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.GetSession(
            spb.GetSessionRequest(name="sessions/missing"),
            metadata=md(user, ("x-request-id", "rid-9")),
        )
    assert error_info(err.value).metadata["request_id"] == "rid-9"
    assert retry_info(err.value) is None


async def test_a_session_on_an_unknown_model_is_refused_when_made(
    server: Running, user: str
) -> None:
    """As a turn on it would be (UNKNOWN_MODEL), but at once, with nothing stored."""
    with pytest.raises(grpc.RpcError) as err:
        await create(server, user, display_name="x", model="nope", session_id="on-nope")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "UNKNOWN_MODEL"
    with pytest.raises(grpc.RpcError) as err:
        await server.sessions.GetSession(
            spb.GetSessionRequest(name="sessions/on-nope"), metadata=md(user)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    known = server.app.catalogue.default_name
    session = await create(server, user, model=known)
    assert session.model == known
    with pytest.raises(grpc.RpcError) as err:
        await server.sessions.UpdateSession(
            spb.UpdateSessionRequest(
                session=rpb.Session(name=session.name, model="nope"),
                update_mask=field_mask_pb2.FieldMask(paths=["model"]),
            ),
            metadata=md(user),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "UNKNOWN_MODEL"
    got = await server.sessions.GetSession(
        spb.GetSessionRequest(name=session.name), metadata=md(user)
    )
    assert got.model == known  # unchanged
