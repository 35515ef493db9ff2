"""A real Envoy in front of a real backend (with a scriptable fake model), once per module.

Modules using these fixtures run their tests in one event loop per module
(``pytest.mark.asyncio(loop_scope="module")``): the backend, the fake model and Envoy
start once, and every test uses its own user, so tests never see each other's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio

from aichat_devtools.dev_token import DevKeys, ensure_keys, make_token
from tests.support.chat import ChatStack, chat_stack
from tests.support.envoy import Envoy, envoy_in_front, render_for_test
from tests.support.http import TLS


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    """Keys Envoy trusts: made by the same code as `aichat-dev token`."""
    keys, _ = ensure_keys(tmp_path_factory.mktemp("dev-keys"))
    return keys


@pytest.fixture(scope="session")
def stranger_keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    """Keys of the same shape (same kids) that Envoy does not trust."""
    keys, _ = ensure_keys(tmp_path_factory.mktemp("stranger-keys"))
    return keys


@pytest.fixture
def token(dev_keys: DevKeys, user: str) -> str:
    return make_token(dev_keys, user)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    db = tmp_path_factory.mktemp("db") / "aichat.db"
    async with chat_stack("openai", f"sqlite:///{db}") as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def envoy(
    stack: ChatStack, dev_keys: DevKeys, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Envoy]:
    """The repository's envoy.yaml (JWT) in front of the stack."""
    config = render_for_test(backend_port=stack.server.port, jwks_path=dev_keys.jwks_path)
    async with envoy_in_front(config, tmp_path_factory.mktemp("envoy")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(envoy: Envoy) -> AsyncIterator[httpx2.AsyncClient]:
    """HTTP/1.1, as curl and browsers' EventSource speak it."""
    async with httpx2.AsyncClient(verify=TLS, base_url=envoy.base_url, timeout=10) as client:
        yield client
