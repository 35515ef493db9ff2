"""A fake LLM upstream that speaks the real OpenAI and Anthropic wire formats.

The standalone run (``python -m aichat_devtools.fake_llm``) for the demo and the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import get_args

from aichat_devtools.fake_llm.behaviours import echo_behaviour, fixed_tokens_behaviour
from aichat_devtools.fake_llm.context_window import OpenAIContextStyle
from aichat_devtools.fake_llm.server import FakeLLMServer


async def _run_standalone(args: argparse.Namespace) -> None:
    ttft = args.ttft_ms / 1000
    delay = args.token_delay_ms / 1000
    behaviour = (
        fixed_tokens_behaviour(args.tokens, ttft, delay)
        if args.tokens is not None
        else echo_behaviour(ttft, delay)
    )
    server = FakeLLMServer(
        host=args.host,
        port=args.port,
        default=behaviour,
        api_key=args.api_key,
        record_requests=False,
        context_windows=dict(args.context_window),
        openai_context_style=args.openai_context_style,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.root_url}", flush=True)
        await stop.wait()


def _window(value: str) -> tuple[str, int]:
    model, _, tokens = value.rpartition("=")
    if not model or not tokens.isdigit():
        raise argparse.ArgumentTypeError("expected MODEL=TOKENS, e.g. gpt-4o-mini=4096")
    return model, int(tokens)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="delay between tokens")
    parser.add_argument(
        "--tokens", type=int, default=None, help="reply with N tokens instead of echoing"
    )
    parser.add_argument("--api-key", default=None, help="require this key on every request")
    parser.add_argument(
        "--context-window",
        action="append",
        default=[],
        type=_window,
        metavar="MODEL=TOKENS",
        help="refuse requests to MODEL past TOKENS, as the real API does (repeatable)",
    )
    parser.add_argument(
        "--openai-context-style",
        choices=get_args(OpenAIContextStyle),
        default="openai",
        help="whose words an over-window refusal on the OpenAI wire uses",
    )
    args = parser.parse_args(argv)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_standalone(args))
    except OSError as exc:  # the port is taken: one line, not a traceback
        print(
            f"fake model: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        raise SystemExit(1) from None
    sys.stdout.flush()
