"""Keep the backend's secrets from the processes it starts (stdio MCP servers, workers).

A child's own environment is built clean (``tools/config.py``), but a child running as
the same OS user could still read its parent: ``/proc/<ppid>/environ`` is the
environment block the kernel gave the process at exec, and it does not change when
Python forgets a variable. So, once the settings have been read:

- the process marks itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): its
  ``/proc/<pid>/environ``, ``mem``, ``maps`` … become readable by root only, not by
  children of the same user;
- every secret-looking variable is removed from the environment *and* its bytes in the
  original block are zeroed, so even a reader allowed by the kernel (root, or a process
  with CAP_SYS_PTRACE) finds nothing in ``environ``.

What a root child can still do (read this process's memory) no flag prevents: run the
backend as an unprivileged user. The command line carries no secret (every setting comes
from the environment or a file).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
# AICHAT_* settings are read once; names like these are other programs' credentials.
SECRET_NAME = re.compile(
    r"^AICHAT_|KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PGPASS|AUTH|"
    r"DATABASE_URL|_DSN$|REDIS_URL",
    re.IGNORECASE,
)
# Needed after start (by us or by what we start) and never secret.
KEEP = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "SSL_CERT_FILE"})


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def make_undumpable() -> bool:
    """True when the kernel now refuses same-user readers of this process's /proc files."""
    try:
        libc = _libc()
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError) as exc:  # not Linux: nothing to set
        log.warning("could not mark the process non-dumpable: %s", exc)
        return False


def secret_names(environ: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if environ is None else environ
    return sorted(k for k in env if k not in KEEP and SECRET_NAME.search(k))


def scrub_environment() -> list[str]:
    """Forget the secret-looking variables and wipe them from the exec-time block.

    Returns the names removed (for the log; never the values).
    """
    names = secret_names()
    block = _exec_block()
    for name in names:
        os.environ.pop(name, None)  # also unsetenv: libc's environ drops its pointer
    if block is not None:
        start, data = block
        wanted = {n.encode() for n in names}
        offset = 0
        for entry in data.split(b"\0"):
            if entry.split(b"=", 1)[0] in wanted:
                # Nothing points here any more (libc's entry is gone, Python holds copies).
                ctypes.memset(start + offset, 0, len(entry))
            offset += len(entry) + 1
    return names


def _exec_block() -> tuple[int, bytes] | None:
    """(address, bytes) of the environment block the kernel shows in /proc/self/environ."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        # Fields 50 and 51 of stat(5) (env_start, env_end); fields[0] here is field 3.
        start, end = int(fields[47]), int(fields[48])
        with open("/proc/self/environ", "rb") as env:
            data = env.read()
    except (OSError, IndexError, ValueError):
        return None
    if start <= 0 or end - start != len(data):
        return None
    return start, data
