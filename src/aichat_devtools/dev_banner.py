"""What `make run` prints once the stack answers: what is configured, and how to call it.

The database comes from the same settings the backend read; the models from the running
backend's own ListModels, so the banner never claims defaults that are not in effect.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aichat_backend.config import ENV_PREFIX, Settings
from aichat_devtools import dev_envoy, dev_ready

if TYPE_CHECKING:
    from aichat_devtools.dev_run import DevSettings

BUNDLED_TOOLS_FILE = "dev-mcp-servers.json"  # what dev_run writes when none is set

GRPC = """
  gRPC      {target}   .venv/bin/grpcurl -plaintext {target} list
  create    .venv/bin/grpcurl -plaintext -H 'x-user-id: alice' \\
              -d '{{"session_id":"tuning","session":{{"display_name":"Tuning"}}}}' \\
              {target} aichat.v1.SessionService/CreateSession
  chat      .venv/bin/grpcurl -plaintext -H 'x-user-id: alice' \\
              -d '{{"session":"sessions/tuning","text":"Hi there"}}' \\
              {target} aichat.v1.ChatService/StreamChat"""


def settings_of(env: Mapping[str, str]) -> Settings:
    """The backend's settings as its child environment gives them (plus .env and YAML)."""
    values: dict[str, Any] = {
        k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)
    }
    return Settings(**values)


def database(settings: Settings) -> str:
    url = settings.sqlalchemy_url()
    if url.startswith("sqlite"):
        return f"SQLite at {url.split(':///', 1)[1]}"
    parts = urlsplit(url)
    return f"PostgreSQL at {parts.hostname}:{parts.port or 5432}{parts.path}"


def models(settings: Settings, target: str, *, fake: bool) -> str:
    listed = dev_ready.list_models(target, settings.auth_header)
    names = ", ".join(
        m.name
        + (" (default)" if m.default and len(listed) > 1 else "")
        + ("" if m.configured else " (not configured)")
        for m in listed
    )
    if settings.models_file is not None:
        return f"{names} from AICHAT_MODELS_FILE={settings.models_file}"
    if fake:
        return f"{names} on the LOCAL FAKE upstream ({settings.llm_base_url})"
    where = f" at {settings.llm_base_url}" if settings.llm_base_url else ""
    return f"{names} via {settings.llm_provider}{where} (AICHAT_LLM_*)"


def tools(settings: Settings) -> str:
    path = settings.mcp_servers_file
    if path is None:
        return "none (AICHAT_MCP_SERVERS_FILE)"
    if path.name == BUNDLED_TOOLS_FILE:
        return f"the bundled tasks server and calculator ({path})"
    return f"from AICHAT_MCP_SERVERS_FILE={path}"


def render(dev: DevSettings, env: Mapping[str, str], *, fake: bool, envoy: bool) -> str:
    settings = settings_of(env)
    lines = [
        "",
        "aichat is running.",
        "",
        f"  database  {database(settings)}",
        f"  models    {models(settings, dev.probe_target, fake=fake)}",
        f"  tools     {tools(settings)}",
        GRPC.format(target=dev.probe_target),
    ]
    if envoy:
        lines.append(dev_envoy.banner(dev.envoy_port).rstrip())
    lines += ["", "Stop with Ctrl-C.", ""]
    return "\n".join(lines)


def child_name(proc: subprocess.Popen[str]) -> str:
    args = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    if "aichat_backend" in args:
        return "the backend"
    if "aichat_devtools.fake_llm" in args:
        return "the fake model"
    return "Envoy" if args and args[0].endswith("envoy") else " ".join(args[:3])
