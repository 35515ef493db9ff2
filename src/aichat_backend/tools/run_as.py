"""Which user a stdio tool server runs as (``AICHAT_MCP_STDIO_USER``).

A tool server running as root can read the backend's memory, whatever the backend does
to hide it (the kernel lets root read any process): an API key was found there. So a
root backend starts each stdio server as a user of its own — a uid no account uses,
derived from the server's name so it stays the same across restarts — with a private
home directory, ``<AICHAT_DATA_DIR>/tool-servers/<name>`` (its ``HOME``, and its working
directory unless the entry names one), through ``drop_user``. A backend that is not root
starts them as itself: non-dumpable, it is out of their reach (``hardening``).

The setting: empty (that default), a user name or uid (every stdio server as that user;
root only), or ``same`` (as the backend's own user: for a root backend, the unsafe way
it was, e.g. on a development machine whose Python lives under ``/root``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aichat_backend.tools import drop_user
from aichat_backend.tools.config import RunAs, ServerConfig

log = logging.getLogger(__name__)

# Far from every account, and from the Python sandbox's range (1.9e9 and up).
UID_BASE, UID_SPAN = 1_800_000_000, 100_000_000
SAME = "same"


def server_uid(name: str) -> int:
    digest = hashlib.sha256(name.encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_SPAN


def _ids(setting: str, name: str) -> tuple[int, int] | None:
    if setting == SAME:
        return None
    if os.geteuid() != 0:
        if setting:
            raise ValueError(
                f"AICHAT_MCP_STDIO_USER={setting!r} needs a root backend to switch users; "
                "leave it empty (tool servers then run as the backend's own user)"
            )
        return None
    if not setting:
        uid = server_uid(name)
        return uid, uid
    try:
        entry = pwd.getpwuid(int(setting)) if setting.isdigit() else pwd.getpwnam(setting)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not setting.isdigit():
            raise ValueError(f"AICHAT_MCP_STDIO_USER: no user named {setting!r}") from None
        uid = gid = int(setting)
    if uid == 0:
        raise ValueError("AICHAT_MCP_STDIO_USER must not be root")
    return uid, gid


def apply(configs: Sequence[ServerConfig], setting: str, data_dir: Path) -> list[ServerConfig]:
    """``configs`` with each stdio server's user set, its home made; ``ValueError`` if the
    setting cannot be honoured."""
    setting = setting.strip()
    out = []
    for config in configs:
        ids = _ids(setting, config.name) if config.transport == "stdio" else None
        if ids is None:
            out.append(config)
            continue
        uid, gid = ids
        home = data_dir.resolve() / "tool-servers" / config.name
        try:
            home.parent.mkdir(parents=True, exist_ok=True)
            home.parent.chmod(0o711)  # passable, not listable
            home.mkdir(mode=0o700, exist_ok=True)
            os.chown(home, uid, gid)
        except OSError as exc:
            raise ValueError(
                f"MCP server {config.name!r}: cannot make its home {str(home)!r}: {exc.strerror}"
            ) from None
        out.append(replace(config, run_as=RunAs(uid, gid, str(home))))
    if os.geteuid() == 0 and setting == SAME and any(c.transport == "stdio" for c in configs):
        log.warning(
            "stdio tool servers run as root (AICHAT_MCP_STDIO_USER=same): they can read "
            "this process's memory, secrets included"
        )
    return out


def launch(config: ServerConfig) -> tuple[str, list[str], dict[str, str], str | None]:
    """(command, args, environment, working directory) that start ``config``'s server."""
    assert config.command is not None
    env = config.spawn_env()
    if config.run_as is None:
        return config.command, list(config.args), env, config.cwd
    run_as = config.run_as
    env = {**env, "HOME": config.env.get("HOME", run_as.home)}
    args = ["-m", drop_user.__name__, str(run_as.uid), str(run_as.gid), "--"]
    return sys.executable, [*args, config.command, *config.args], env, config.cwd or run_as.home
