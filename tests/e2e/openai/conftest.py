"""The OpenAI-compatible API through the real Envoy, driven by clients nobody here wrote.

One backend (with the bundled tasks MCP server and a scriptable fake model), one Envoy
(the repository's envoy.yaml) per module; every test uses its own user and token, the
SDK's ``api_key``, exactly as a deployment's callers would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import openai
import pytest
import pytest_asyncio
from aichat.v1 import chat_service_pb2 as cpb

from aichat_devtools.dev_token import DevKeys, ensure_keys, make_token
from tests.support.chat import ChatStack
from tests.support.envoy import Envoy, envoy_in_front, render_for_test
from tests.support.grpc_helpers import md
from tests.support.tool_stack import tool_stack

MODEL = "gpt-test"  # the stack's catalogue name (tests.support.chat.MODELS)


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    keys, _ = ensure_keys(tmp_path_factory.mktemp("dev-keys"))
    return keys


@pytest.fixture
def token(dev_keys: DevKeys, user: str) -> str:
    return make_token(dev_keys, user)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    tmp = tmp_path_factory.mktemp("openai-stack")
    async with tool_stack("openai", f"sqlite:///{tmp / 'aichat.db'}", tmp) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    config = render_for_test(
        backend_port=stack.server.port,
        openai_port=stack.server.app.openai_port,
        jwks_path=dev_keys.jwks_path,
    )
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy")) as running:
        yield running


@pytest.fixture
def base_url(envoy: Envoy) -> str:
    """What a caller gives its SDK: the edge's address and /v1."""
    return envoy.base_url + "/v1"


@pytest_asyncio.fixture(loop_scope="module")
async def client(base_url: str, token: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0) as c:
        yield c


async def turn_ended(
    stack: ChatStack, user: str, session: str, completion_id: str
) -> cpb.TurnEnded:
    """The last event of a completion's turn, read from its event log (StreamTurnEvents waits
    for it): a turn cut off by a hang-up ends there once its partial answer is stored."""
    name = f"{session}/turns/{completion_id.removeprefix('chatcmpl-')}"
    call = stack.server.chat.StreamTurnEvents(
        cpb.StreamTurnEventsRequest(name=name), metadata=md(user)
    )
    last = None
    try:
        async for event in call:
            last = event
    except grpc.aio.AioRpcError:
        pass  # a turn that failed ends its stream with its status, after its last event
    assert last is not None and last.HasField("turn_ended"), last
    return last.turn_ended
