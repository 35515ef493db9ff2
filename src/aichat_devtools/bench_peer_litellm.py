"""LiteLLM as a benchmark peer: installed pinned and checked, configured with its
production settings against the fake upstream."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aichat_devtools.bench_peer_setup import (
    MODEL,
    Launch,
    PeerUnavailable,
    peer_env,
    run_step,
)

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
    # Without pip of its own: ensurepip is ~5 s of CPU, and this process's pip installs
    # into the new venv through ``--python`` (pip >= 22.3) just as well.
    run_step(
        [python, "-m", "venv", "--without-pip", "--clear", str(venv)], f"python -m venv {venv}"
    )
    spec = f"litellm[proxy]=={LITELLM_VERSION}"
    run_step(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
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
