"""An answer from a fallback model is the fallback's (issue 18, item 3).

The primary's upstream is down (every request answers 503), the fallback's works. The
stored message, the turn_ended usage and the metrics must name the model that answered,
and the primary's failure must be counted as a provider error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb

from aichat_devtools.fake_llm import FakeLLMServer, Script
from tests.integration.test_observability import scrape, value
from tests.support.grpc_helpers import md
from tests.support.server import make_settings, running_server

pytestmark = pytest.mark.timeout(30)


async def test_a_fallback_answer_is_attributed_to_the_fallback(
    sqlite_url: str, user: str, tmp_path: Path
) -> None:
    async with (
        FakeLLMServer(default=Script(error_status=503)) as dead,
        FakeLLMServer() as alive,
    ):
        models = tmp_path / "models.yaml"
        models.write_text(
            f"""
models:
  - {{name: main, provider: openai, base_url: "{dead.base_url}", api_key: k,
     model_name: main-model, fallbacks: [backup]}}
  - {{name: backup, provider: openai, base_url: "{alive.base_url}", api_key: k,
     model_name: backup-model}}
"""
        )
        settings = make_settings(
            sqlite_url,
            models_file=models,
            metrics_address="127.0.0.1:0",
            provider_max_retries=0,
        )
        async with running_server(settings) as server:
            session = await server.sessions.CreateSession(
                spb.CreateSessionRequest(session=rpb.Session()), metadata=md(user)
            )
            alive.enqueue(Script(text="from the backup", input_tokens=11, output_tokens=4))
            call = server.chat.StreamChat(
                cpb.StreamChatRequest(session=session.name, text="hi"), metadata=md(user)
            )
            events = [e async for e in call]
            ended = events[-1].turn_ended
            assert ended.outcome == cpb.TURN_OUTCOME_COMPLETED
            assert ended.message.text == "from the backup"
            assert dead.request_count == 1 and alive.request_count == 1

            # The stored message and the turn's usage name the model that answered.
            assert ended.message.model == "backup"
            assert ended.usage.model == "backup"
            assert (ended.usage.input_tokens, ended.usage.output_tokens) == (11, 4)
            page = await server.sessions.ListMessages(
                spb.ListMessagesRequest(parent=session.name), metadata=md(user)
            )
            assert page.messages[-1].model == "backup"

            # The metrics count the tokens under the fallback, and the failure.
            s = scrape(server.app.metrics_port)
            assert value(s, "aichat_tokens_total", model="backup", direction="output") == 4
            assert value(s, "aichat_tokens_total", model="main", direction="output") == 0
            assert value(s, "aichat_time_to_first_token_seconds_count", model="backup") == 1
            assert (
                value(
                    s,
                    "aichat_provider_errors_total",
                    provider="openai",
                    reason="PROVIDER_UNAVAILABLE",
                )
                == 1
            )
