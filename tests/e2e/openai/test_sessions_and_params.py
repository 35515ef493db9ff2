"""Where an OpenAI request's turn is stored, whose sessions it may name, and every parameter
honoured (it reaches the model) or refused (400 naming it), never silently ignored."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import Script
from tests.e2e.openai.conftest import MODEL
from tests.support.chat import ChatStack
from tests.support.grpc_helpers import md

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def sent(stack: ChatStack) -> list[tuple[str, Any]]:
    body = stack.fake.requests[-1].body
    return [(m["role"], m.get("content")) for m in body["messages"]]


async def test_a_named_session_holds_the_conversation(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user, system_prompt="You are terse.")
    header = {"X-Aichat-Session": session}
    stack.fake.enqueue(Script(text="Paris."), Script(text="About 2 million."))
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Capital of France?"}],
        extra_headers=header,
    )
    # The client sends only its new message: the session is the history (the id alone,
    # without "sessions/", names it too, and metadata may say the same).
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Its population?"}],
        extra_headers={"X-Aichat-Session": session.removeprefix("sessions/")},
        metadata={"aichat_session": session},
    )
    assert (reply.model_extra or {})["aichat"]["session"] == session
    assert sent(stack) == [
        ("system", "You are terse."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "Its population?"),
    ]
    stored = await stack.messages(user, session)
    assert [m.text for m in stored] == [
        "Capital of France?",
        "Paris.",
        "Its population?",
        "About 2 million.",
    ]


async def test_metadata_names_a_session_too_but_never_a_different_one(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="ok"))
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        metadata={"aichat_session": session},
    )
    assert len(await stack.messages(user, session)) == 2
    other = await stack.new_session(user)
    with pytest.raises(openai.BadRequestError) as conflict:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            metadata={"aichat_session": session},
            extra_headers={"X-Aichat-Session": other},
        )
    assert conflict.value.param == "metadata"


async def test_without_a_session_the_messages_are_the_conversation(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    stack.fake.enqueue(Script(text="Six."))
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Answer in words."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
        ],
        metadata={"team": "maths"},
    )
    assert reply.choices[0].message.content == "Six."
    assert sent(stack) == [
        ("system", "Answer in words."),
        ("user", "What is 2+2?"),
        ("assistant", "Four."),
        ("user", "And 3+3?"),
    ]
    # Stored for its user: a new session holding what the model read.
    name = (reply.model_extra or {})["aichat"]["session"]
    session = await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=name), metadata=md(user)
    )
    assert session.system_prompt == "Answer in words."
    assert dict(session.labels) == {"aichat.source": "openai-api", "team": "maths"}
    assert session.display_name == "What is 2+2?"
    stored = await stack.messages(user, name)
    assert [(m.role, m.text) for m in stored] == [
        (rpb.ROLE_USER, "What is 2+2?"),
        (rpb.ROLE_ASSISTANT, "Four."),
        (rpb.ROLE_USER, "And 3+3?"),
        (rpb.ROLE_ASSISTANT, "Six."),
    ]


async def test_another_users_session_is_not_found(
    base_url: str, client: openai.AsyncOpenAI, stack: ChatStack, user: str, other_user: str
) -> None:
    theirs = await stack.new_session(other_user)
    for named in (
        {"extra_headers": {"X-Aichat-Session": theirs}},
        {"metadata": {"aichat_session": theirs}},
    ):
        with pytest.raises(openai.NotFoundError) as hidden:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "peek"}],
                **named,  # type: ignore[arg-type]
            )
        assert hidden.value.code == "session_not_found"
    # Nothing reached the model or their session.
    assert await stack.messages(other_user, theirs) == []


async def test_sampling_parameters_reach_the_model(
    client: openai.AsyncOpenAI, stack: ChatStack
) -> None:
    stack.fake.enqueue(Script(text="x"), Script(text="y"))
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "go"}],
        temperature=0.3,
        max_tokens=55,
        stop=["END", "STOP"],
        user="end-user-42",
        n=1,
        top_p=1,
    )
    body = stack.fake.requests[-1].body
    assert body["temperature"] == 0.3
    assert body["stop"] == ["END", "STOP"]
    assert body["user"] == "end-user-42"
    assert 55 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go"}], max_completion_tokens=9, stop="Z"
    )
    body = stack.fake.requests[-1].body
    assert 9 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    assert body["stop"] == ["Z"]


async def test_an_image_part_reaches_the_model_and_is_stored(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    stack.fake.enqueue(Script(text="A dot."))
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    parts = stack.fake.requests[-1].body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["image_url"]["url"] == url
    name = (reply.model_extra or {})["aichat"]["session"]
    stored = await stack.messages(user, name)
    assert [(a.filename, a.mime_type) for a in stored[0].attachments] == [
        ("image-1.png", "image/png")
    ]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 3}, "n", "unsupported_parameter"),
        ({"logprobs": True}, "logprobs", "unsupported_parameter"),
        ({"seed": 7}, "seed", "unsupported_parameter"),
        ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
        ({"tool_choice": "required"}, "tool_choice", "unsupported_parameter"),
        ({"store": False}, "store", "unsupported_parameter"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_field"),
        ({"temperature": 3}, "temperature", "invalid_field"),
        ({"max_tokens": 5, "max_completion_tokens": 6}, "max_completion_tokens", "invalid_field"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_field"),
    ],
)
async def test_what_is_not_honoured_is_refused(
    client: openai.AsyncOpenAI, stack: ChatStack, extra: dict[str, Any], param: str, code: str
) -> None:
    before = len(stack.fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=extra
        )
    assert (refused.value.param, refused.value.code) == (param, code)
    assert len(stack.fake.requests) == before


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                }
            ],
            "messages[0].content[0].image_url.url",
            "unsupported_attachment",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio"}]}],
            "messages[0].content[0]",
            "unsupported_parameter",
        ),
        (
            [{"role": "user", "content": "hi", "name": "bob"}],
            "messages[0].name",
            "unsupported_parameter",
        ),
        (
            [{"role": "function", "content": "x", "name": "f"}],
            "messages[0].role",
            "unsupported_parameter",
        ),
        ([{"role": "system", "content": "only rules"}], "messages", "invalid_conversation"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            "messages",
            "invalid_conversation",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "x", "content": "1"},
            ],
            "messages",
            "invalid_conversation",
        ),
    ],
)
async def test_messages_that_cannot_be_a_turn_are_refused(
    client: openai.AsyncOpenAI, messages: list[dict[str, Any]], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert (refused.value.param, refused.value.code) == (param, code)


async def test_with_a_session_the_last_message_must_be_the_users(
    client: openai.AsyncOpenAI, stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "assistant", "content": "I said"}],
            extra_headers={"X-Aichat-Session": session},
        )
    assert refused.value.code == "invalid_conversation"
    assert await stack.messages(user, session) == []


async def test_a_client_sent_identity_header_names_no_one(
    base_url: str, token: str, stack: ChatStack, user: str, other_user: str
) -> None:
    """The token's subject is the caller: Envoy drops any x-user-id the client sends."""
    forged = {"X-User-Id": other_user, "X-Email-User": other_user}
    stack.fake.enqueue(Script(text="mine"))
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key=token, max_retries=0, default_headers=forged
    ) as client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "whose?"}]
        )
    session = (reply.model_extra or {})["aichat"]["session"]
    assert [m.text for m in await stack.messages(user, session)] == ["whose?", "mine"]
    page = await stack.server.sessions.ListSessions(
        spb.ListSessionsRequest(), metadata=md(other_user)
    )
    assert list(page.sessions) == []
