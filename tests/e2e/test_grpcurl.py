"""An operator's view: the real grpcurl binary, discovering everything by reflection."""

from __future__ import annotations

import json

import pytest

from tests.support.server import Running
from tests.support.tools import grpcurl

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url


async def test_list_and_describe_by_reflection(server: Running) -> None:
    code, out, err = await grpcurl(server.target, "list")
    assert code == 0, err
    services = set(out.split())
    assert {
        "aichat.v1.SessionService",
        "aichat.v1.ChatService",
        "aichat.v1.ToolService",
        "grpc.health.v1.Health",
    } <= services
    code, out, err = await grpcurl(server.target, "describe", "aichat.v1.SessionService")
    assert code == 0, err
    for rpc in [
        "CreateSession",
        "GetSession",
        "ListSessions",
        "UpdateSession",
        "DeleteSession",
        "ListMessages",
        "ClearMessages",
        "ExportSession",
    ]:
        assert f"rpc {rpc} " in out
    code, out, err = await grpcurl(server.target, "describe", "aichat.v1.StreamChatResponse")
    assert code == 0 and "turn_ended" in out, err


async def test_reflection_v1_protocol(server: Running) -> None:
    """Newer clients speak grpc.reflection.v1; both names must answer."""
    import grpc
    from grpc_reflection.v1alpha import reflection_pb2

    method = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    call = server.channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for response in call(requests()):
        names = [s.name for s in response.list_services_response.service]
    assert "aichat.v1.SessionService" in names
    assert isinstance(server.channel, grpc.aio.Channel)


async def test_session_crud_with_grpcurl(server: Running, user: str) -> None:
    code, out, err = await grpcurl(
        server.target,
        "aichat.v1.SessionService/CreateSession",
        data={"session": {"display_name": "from grpcurl"}, "session_id": "ops-check"},
        user=user,
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["name"] == "sessions/ops-check"
    code, out, err = await grpcurl(
        server.target, "aichat.v1.SessionService/ListSessions", data={}, user=user
    )
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)["sessions"]] == ["sessions/ops-check"]
    code, out, err = await grpcurl(server.target, "aichat.v1.SessionService/ListSessions", data={})
    assert code != 0 and "Unauthenticated" in err
    code, out, err = await grpcurl(server.target, "grpc.health.v1.Health/Check", data={})
    assert code == 0 and json.loads(out)["status"] == "SERVING"


async def test_stream_a_turn_with_grpcurl(sqlite_url: str, user: str) -> None:
    from aichat_devtools.fake_llm import Script
    from tests.support.chat import chat_stack

    async with chat_stack("openai", sqlite_url) as stack:
        session = await stack.new_session(user)
        stack.fake.enqueue(Script(tokens=["Hello ", "operator"]))
        code, out, err = await grpcurl(
            stack.server.target,
            "aichat.v1.ChatService/StreamChat",
            data={"session": session, "text": "hi"},
            user=user,
        )
        assert code == 0, err
        decoder = json.JSONDecoder()
        events, pos = [], 0
        text = out.strip()
        while pos < len(text):
            event, end = decoder.raw_decode(text, pos)
            events.append(event)
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
        assert "turn_started" in events[0] and "turn_ended" in events[-1]
        assert (
            "".join(e["text_delta"]["text"] for e in events if "text_delta" in e)
            == "Hello operator"
        )
        assert events[-1]["turn_ended"]["outcome"] == "TURN_OUTCOME_COMPLETED"
