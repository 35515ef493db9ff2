"""Run a command as a throwaway unprivileged user, from a root test process.

``setpriv`` changes the user (no groups, no capabilities, an empty bounding set). On
this machine the interpreter lives under ``/root`` (mode 700), out of any other user's
reach; so the command starts in a mount namespace of its own in which each closed
directory on the way to the interpreter, the virtualenv and the package is replaced by
an empty tmpfs holding only the way through. Nothing outside that namespace changes.
"""

from __future__ import annotations

import os
import secrets
import shlex
import stat
import sys
from pathlib import Path

# Far from every account and from the sandbox's own range (1.9e9 and up).
UID_BASE, UID_SPAN = 1_700_000_000, 100_000_000


def throwaway_uid() -> int:
    return UID_BASE + secrets.randbelow(UID_SPAN)


def _needed() -> list[Path]:
    paths = [Path(os.path.realpath(sys.executable)), Path(sys.base_prefix), Path(sys.prefix)]
    paths += [Path(p) for p in sys.path if p]
    return [p.resolve() for p in paths if p.exists()]


def _closed_ways() -> dict[Path, set[str]]:
    """Each closed directory on a needed path, and the entries the way goes through."""
    ways: dict[Path, set[str]] = {}
    for path in _needed():
        for parent, child in zip(path.parents, [path, *path.parents], strict=False):
            if not parent.stat().st_mode & stat.S_IXOTH:
                ways.setdefault(parent, set()).add(child.name)
    return ways


def wrap(command: str, args: list[str], uid: int) -> tuple[str, list[str]]:
    """(command, args) that run ``command args`` as ``uid`` (and a group of that number)."""
    ways = sorted(_closed_ways().items(), key=lambda item: len(item[0].parts))
    staged, restored = ["set -e"], []
    for closed, entries in ways:
        restored.append(f"mount -t tmpfs -o mode=755,size=1m none {shlex.quote(str(closed))}")
        for entry in sorted(entries):
            # Staged before any tmpfs covers it; bound back once its directory is empty.
            name, where = f"s{len(staged)}", shlex.quote(str(closed / entry))
            staged.append(f'{name}=$(mktemp -d); mount --bind {where} "${name}"')
            restored.append(f'mkdir -p {where}; mount --bind "${name}" {where}')
            restored.append(f'umount "${name}"; rmdir "${name}"')
    drop = f"setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all"
    script = "\n".join([*staged, *restored, f'exec {drop} --bounding-set=-all -- "$@"'])
    prefix = ["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
    return "unshare", [*prefix, command, *args]
