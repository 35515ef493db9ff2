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
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from aichat_devtools.bench_clients import DirectArm, UnaryResult
from aichat_devtools.bench_procs import REPO

PEERS_DIR = REPO / "var" / "bench" / "peers"
INSTALL_TIMEOUT_S = 1200.0
READY_TIMEOUT_S = 180.0  # LiteLLM imports for ~25 s on an idle core of this machine
MODEL = "bench"


class PeerUnavailable(Exception):
    """The peer cannot be installed or started here; the message says why."""


@dataclass
class Launch:
    """How to start one peer and reach it."""

    arm: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    base_url: str  # OpenAI-compatible, ends in /v1
    ready_url: str
    api_key: str
    headers: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # what we set, for the report


def peer_env(home: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    """A bare environment: none of the caller's variables (tokens, keys, PYTHONPATH to our
    sources) reach third-party code; only a PATH, a HOME of its own and its settings."""
    env = {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def run_step(args: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    if proc.returncode != 0:
        lines = [
            ln
            for ln in (proc.stderr or proc.stdout).splitlines()
            if ln.strip() and "WARNING" not in ln
        ]
        raise PeerUnavailable(f"{what} failed (exit {proc.returncode}): {' | '.join(lines[-2:])}")


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log (the work dir and its logs go when the run ends)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "(empty)"


# --- LiteLLM ---------------------------------------------------------------------------

# 1.106.12: the newest release whose ``[proxy]`` extra resolves from the registry here
# (1.108.14 wants litellm-proxy-extras 0.4.110.post1, 1.109.x 0.4.113, 1.110.x a
# litellm-proxy package: none is published), and clear of the releases pulled after
# the 2026 supply-chain compromise.
LITELLM_VERSION = "1.106.12"
LITELLM_MASTER_KEY = "sk-bench-master-key"
# Start-up hooks in site-packages are how a compromised release ran code on any Python
# start (a ``litellm_init.pth``); only the ones pip/setuptools put there are allowed.
ALLOWED_PTH = frozenset({"distutils-precedence.pth", "_virtualenv.pth"})


def unexpected_startup_hooks(venv: Path) -> list[str]:
    return sorted(
        p.name for p in venv.glob("lib/python*/site-packages/*.pth") if p.name not in ALLOWED_PTH
    )


def install_litellm(root: Path, env: Mapping[str, str] | None = None) -> Path:
    """``litellm[proxy]==LITELLM_VERSION`` in ``root/litellm-VERSION`` (reused when done)."""
    venv = root / f"litellm-{LITELLM_VERSION}"
    marker = venv / ".installed"
    if marker.exists() and (venv / "bin" / "litellm").exists():
        return venv
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PeerUnavailable(f"cannot make {root}: {exc}") from exc
    python = getattr(sys, "_base_executable", "") or sys.executable
    run_step([python, "-m", "venv", "--clear", str(venv)], f"python -m venv {venv}")
    spec = f"litellm[proxy]=={LITELLM_VERSION}"
    run_step(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            spec,
        ],
        f"pip install {spec}",
        env,
    )
    hooks = unexpected_startup_hooks(venv)
    if hooks:
        raise PeerUnavailable(f"{spec} installed start-up hooks {hooks}: not run")
    marker.write_text(spec + "\n")
    return venv


def litellm_config(upstream_v1: str) -> dict[str, Any]:
    """LiteLLM's production config (docs: proxy/prod, "Best Practices for Production"),
    with no database: we compare proxies, and LiteLLM stores no turn without one."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": upstream_v1,
                    "api_key": "bench",
                },
            }
        ],
        "general_settings": {
            "master_key": LITELLM_MASTER_KEY,  # the admin key; clients authenticate with it
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
        "litellm_settings": {
            "request_timeout": 600,
            "set_verbose": False,
            "json_logs": True,
        },
    }


def litellm_launch(venv: Path, workdir: Path, upstream_v1: str, port: int) -> Launch:
    home = workdir / "peer-litellm"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.yaml"
    config.write_text(json.dumps(litellm_config(upstream_v1), indent=2) + "\n")  # JSON is YAML
    env = {
        "LITELLM_LOG": "ERROR",  # "turn off FastAPI's default info logs"
        "LITELLM_MODE": "PRODUCTION",  # no load_dotenv
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no cost-map download at start
    }
    settings: dict[str, Any] = {
        "version": LITELLM_VERSION,
        "workers": 1,  # one per core, as ours: the run gives each service one core
        "server": "uvicorn on uvloop (LiteLLM's default loop; ours runs asyncio's)",
        "database": None,
        "config": litellm_config(upstream_v1),
        "env": env,
    }
    return Launch(
        arm="P-litellm",
        args=[
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=peer_env(home, venv / "bin", **env),
        cwd=home,
        base_url=f"http://127.0.0.1:{port}/v1",
        ready_url=f"http://127.0.0.1:{port}/health/liveliness",
        api_key=LITELLM_MASTER_KEY,
        settings=settings,
    )


def prepare_litellm(root: Path, workdir: Path, upstream_v1: str, port: int) -> Launch:
    return litellm_launch(install_litellm(root), workdir, upstream_v1, port)


# --- the arms --------------------------------------------------------------------------

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
        venv = INSTALL[args.peer](Path(args.peers_dir))
    except PeerUnavailable as exc:
        print(f"{args.peer}: not installed: {exc}", file=sys.stderr)
        return 1
    print(venv)
    return 0


INSTALL: dict[str, Callable[[Path], Path]] = {"litellm": install_litellm}

if __name__ == "__main__":
    raise SystemExit(main())
