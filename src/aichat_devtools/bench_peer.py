"""Peer arms: the proxies a user would pick instead of ours, installed apart, run beside it.

A peer is never a dependency of the service: the bench installs it on request (``--peer
litellm``, ``make bench-peer``) into its own environment under ``var/bench/peers/``
(kept between runs), pinned to one version, and starts it against the same fake upstream
with its vendor's production settings, pinned to the service core. When it cannot be
installed or started, the run says why and goes on without that arm.

    python -m aichat_devtools.bench_peer install litellm    # install only; prints where
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2
import openai

from aichat_devtools.bench_clients import DirectArm, UnaryResult
from aichat_devtools.bench_peer_litellm import install_litellm, prepare_litellm
from aichat_devtools.bench_peer_setup import (
    MODEL,
    Launch,
    PeerUnavailable,
    log_tail,
)
from aichat_devtools.bench_procs import REPO

PEERS_DIR = REPO / "var" / "bench" / "peers"
READY_TIMEOUT_S = 180.0  # LiteLLM imports for ~25 s on an idle core of this machine


PREPARE: dict[str, Callable[[Path, Path, str, int], Launch]] = {
    "litellm": prepare_litellm,
}


def arm_name(peer: str) -> str:
    return f"P-{peer}"


class PeerArm(DirectArm):
    """The openai SDK to a peer's OpenAI-compatible endpoint, as its users call it."""

    kind = "peer"

    def __init__(self, name: str, base_url: str, api_key: str, headers: Mapping[str, str]) -> None:
        self.name = name
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=120,
            default_headers=dict(headers),
            http_client=openai.DefaultAioHttpClient(),
        )

    async def wait_ready(self, url: str, timeout: float, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        async with httpx2.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
                if not alive():
                    raise PeerUnavailable(f"{self.name} exited before it answered {url}")
                if time.monotonic() > deadline:
                    raise PeerUnavailable(f"{self.name} did not answer {url} in {timeout:.0f} s")
                await asyncio.sleep(0.25)

    async def unary(self, text: str) -> UnaryResult:
        """A non-streamed chat completion: the peer's counterpart of SendMessage."""
        start = time.monotonic()
        try:
            reply = await self._client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}], stream=False
            )
        except openai.APIError as exc:
            return UnaryResult(start, time.monotonic() - start, False, type(exc).__name__)
        ok = bool(reply.choices and reply.choices[0].message.content)
        return UnaryResult(start, time.monotonic() - start, ok, "" if ok else "NO_TEXT")


async def start_peer(
    peer: str,
    root: Path,
    workdir: Path,
    upstream_v1: str,
    port: int,
    spawn: Callable[[Launch], Any],
) -> tuple[PeerArm, Launch]:
    """Install (once), start and wait for one peer; PeerUnavailable says why not.

    ``spawn`` starts the launch as one of the run's children and returns it."""
    prepare = PREPARE.get(peer)
    if prepare is None:
        raise PeerUnavailable(f"unknown peer {peer!r} (known: {', '.join(sorted(PREPARE))})")
    launch = await asyncio.to_thread(prepare, root, workdir, upstream_v1, port)
    child = spawn(launch)
    arm = PeerArm(launch.arm, launch.base_url, launch.api_key, launch.headers)
    try:
        await arm.wait_ready(launch.ready_url, READY_TIMEOUT_S, child.alive)
    except PeerUnavailable as exc:
        await arm.aclose()
        raise PeerUnavailable(f"{exc}; its log ends: {log_tail(child.log_path)}") from exc
    return arm, launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install a benchmark peer (nothing else).")
    parser.add_argument("action", choices=["install"])
    parser.add_argument("peer", choices=sorted(PREPARE))
    parser.add_argument("--peers-dir", default=str(PEERS_DIR))
    args = parser.parse_args(argv)
    try:
        venv = INSTALL[args.peer](Path(args.peers_dir).resolve())
    except PeerUnavailable as exc:
        print(f"{args.peer}: not installed: {exc}", file=sys.stderr)
        return 1
    print(venv)
    return 0


INSTALL: dict[str, Callable[[Path], Path]] = {"litellm": install_litellm}

if __name__ == "__main__":
    raise SystemExit(main())
