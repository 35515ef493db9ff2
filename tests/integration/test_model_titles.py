"""Titles written by a model (issue 26.5), against the wire-true fake upstream.

After a session's first answer, the title model (AICHAT_TITLE_MODEL) writes a short title
in the conversation's language, in the background once the turn has ended: TurnEnded says
one is coming (title_pending), GetSession shows it once written. A session its user named
(at creation, or renamed with UpdateSession, even while the title is being written) keeps
its name; a failing title model leaves the first-line title; the turn never waits for it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from google.protobuf import field_mask_pb2

from aichat_backend.config import ConfigError, Settings
from aichat_backend.engine.titles import INSTRUCTION
from aichat_backend.wiring.models import model_catalogue
from aichat_devtools.fake_llm import Script
from tests.support.chat import ChatStack, chat_stack
from tests.support.grpc_helpers import md
from tests.support.waits import until

pytestmark = pytest.mark.timeout(60)

QUESTION = "Plan a three-day trip to Paris in May for two people, on a small budget"
FIRST_LINE = "Plan a three-day trip to Paris in May for two people, on a…"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[ChatStack]:
    # The catalogue's one model titles too (a catalogue file may name a cheaper one).
    async with chat_stack("openai", database_url, title_model="gpt-test") as s:
        yield s


async def settled(stack: ChatStack) -> None:
    titles = stack.server.app.engine.titles
    assert titles is not None
    await asyncio.wait_for(titles.settled(), 20)


async def session_of(stack: ChatStack, user: str, name: str) -> rpb.Session:
    return await stack.server.sessions.GetSession(
        spb.GetSessionRequest(name=name), metadata=md(user)
    )


def body_text(stack: ChatStack, index: int) -> str:
    return json.dumps(stack.fake.requests[index].body, ensure_ascii=False)


async def test_the_first_answer_is_followed_by_a_title_in_the_conversations_language(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(
        Script(text="Day 1: the Marais…", input_tokens=100, output_tokens=50),
        Script(text='"Voyage à Paris en mai."', input_tokens=40, output_tokens=7),
    )
    events = await stack.turn(user, session, "Organise un voyage de trois jours à Paris en mai")
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED and ended.title_pending
    await settled(stack)
    assert (await session_of(stack, user, session)).display_name == "Voyage à Paris en mai"
    asked = body_text(stack, 1)
    assert INSTRUCTION in asked and "Organise un voyage" in asked and "the Marais" in asked
    # The title's call is the user's usage like the turn's.
    mine = await stack.server.sessions.GetMyUsage(spb.GetMyUsageRequest(), metadata=md(user))
    assert (mine.today.input_tokens, mine.today.output_tokens) == (140, 57)
    # Later answers leave the title alone: no title request, none pending.
    stack.fake.enqueue(Script(text="Day 2"))
    events = await stack.turn(user, session, "et le jour 2 ?")
    assert not events[-1].turn_ended.title_pending
    assert len(stack.fake.requests) == 3


async def test_a_rename_racing_the_title_model_wins(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user)
    gate = asyncio.Event()
    stack.fake.enqueue(
        Script(text="An answer"), Script(tokens=["Model ", "title"], gate_after=1, gate=gate)
    )
    events = await stack.turn(user, session, QUESTION)
    assert events[-1].turn_ended.title_pending
    await until("the title model was asked", lambda: len(stack.fake.requests) == 2)
    assert (await session_of(stack, user, session)).display_name == FIRST_LINE
    renamed = await stack.server.sessions.UpdateSession(
        spb.UpdateSessionRequest(
            session=rpb.Session(name=session, display_name="My Paris plan"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=md(user),
    )
    assert renamed.display_name == "My Paris plan"
    gate.set()  # the model's title arrives after the rename
    await settled(stack)
    assert (await session_of(stack, user, session)).display_name == "My Paris plan"


async def test_a_failing_title_model_keeps_the_first_line_and_the_turn(
    stack: ChatStack, user: str
) -> None:
    session = await stack.new_session(user)
    stack.fake.enqueue(Script(text="An answer"), *[Script(error_status=500)] * 3)
    events = await stack.turn(user, session, QUESTION)
    ended = events[-1].turn_ended
    assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED and ended.message.text == "An answer"
    await settled(stack)
    assert (await session_of(stack, user, session)).display_name == FIRST_LINE


async def test_a_session_named_at_creation_is_not_retitled(stack: ChatStack, user: str) -> None:
    session = await stack.new_session(user, display_name="Budget")
    stack.fake.enqueue(Script(text="An answer"))
    events = await stack.turn(user, session, QUESTION)
    assert not events[-1].turn_ended.title_pending
    await settled(stack)
    assert len(stack.fake.requests) == 1
    assert (await session_of(stack, user, session)).display_name == "Budget"


def test_a_title_model_outside_the_catalogue_is_refused_at_start() -> None:
    settings = Settings(llm_model="gpt-test", title_model=f"nope-{uuid.uuid4().hex[:4]}")
    with pytest.raises(ConfigError, match="AICHAT_TITLE_MODEL"):
        model_catalogue(settings)
