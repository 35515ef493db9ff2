"""A fake LLM upstream that speaks the real OpenAI and Anthropic wire formats.

Tests and benchmarks point the real SDKs at it over real HTTP, so what they prove holds
for the SDKs' own parsing, connection handling and error classes (respx cannot intercept
the httpx2-based SDKs, and patching them would test our mocks, not our adapters).

- ``POST …/chat/completions``: OpenAI Chat Completions, streamed (SSE ``data:`` chunks,
  ``[DONE]``) or as one ``chat.completion`` object.
- ``POST …/messages``: Anthropic Messages, streamed (``event:``/``data:`` pairs) or whole.

Each request plays the next queued :class:`Script` (``server.enqueue``) or, with none
queued, the default behaviour: echo the last user text word by word. Every request is
recorded (``server.requests``) and a client that hangs up mid-response is counted
(``await server.wait_disconnect()``), so tests can prove cancellation reached upstream.

Standalone, for the demo and the benchmark::

    python -m aichat_devtools.fake_llm --port 8090 --ttft-ms 50 --token-delay-ms 5

prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.

The parts: ``script`` (what a request plays, cut into pieces), ``behaviours`` (what plays
when nothing is queued), ``http_wire`` (the HTTP/1.1 plumbing that sees a client hang up),
``openai_format`` and ``anthropic_format`` (each API's bodies and SSE events), ``server``
(routing, scripts and gates played over a connection) and ``cli`` (the standalone run).
"""

from aichat_devtools.fake_llm.behaviours import (
    DEMO_TOOL_COMMANDS,
    echo_behaviour,
    fixed_tokens_behaviour,
    last_user_text,
)
from aichat_devtools.fake_llm.cli import main
from aichat_devtools.fake_llm.script import (
    DefaultBehaviour,
    RecordedRequest,
    Script,
    ToolCallScript,
)
from aichat_devtools.fake_llm.server import FakeLLMServer

__all__ = [
    "DEMO_TOOL_COMMANDS",
    "DefaultBehaviour",
    "FakeLLMServer",
    "RecordedRequest",
    "Script",
    "ToolCallScript",
    "echo_behaviour",
    "fixed_tokens_behaviour",
    "last_user_text",
    "main",
]
