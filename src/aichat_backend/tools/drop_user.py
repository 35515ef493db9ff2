"""Become another user, then run a command (``python -m …tools.drop_user UID GID -- CMD…``).

How a root backend starts a stdio tool server (see ``run_as``): this process starts as
root, gives up its groups, takes the server's group and user (every capability goes with
the change of user), sets ``no_new_privs`` so nothing it runs can gain privilege back
(no setuid binary), and becomes the command. Standard library only: it runs before the
server, for every start.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_NO_NEW_PRIVS = 38


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: drop_user UID GID -- COMMAND [ARG…]", file=sys.stderr)
        return 2
    uid, gid, command = int(argv[1]), int(argv[2]), argv[4:]
    if uid == 0:
        print("drop_user: refusing to run a tool server as root", file=sys.stderr)
        return 2
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        print("drop_user: no_new_privs could not be set", file=sys.stderr)
        return 2
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(
            f"drop_user: cannot run {command[0]!r} as uid {uid}: {exc.strerror} (the command, "
            "and every directory on its way, must be readable by that user)",
            file=sys.stderr,
        )
        return 126
    return 127  # not reached: exec replaced this process


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
