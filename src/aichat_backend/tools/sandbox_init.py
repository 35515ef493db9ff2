"""The first process inside a Python sandbox: builds its world, drops root, runs the code.

Started by ``python_sandbox`` as ``unshare --mount --net --pid --ipc --uts --fork -- python
-I -S sandbox_init.py <config>`` with the code on stdin: so this runs as root, as pid 1 of
a new PID namespace (it sees no process outside), in a network namespace with nothing but
a downed loopback, and in a mount namespace of its own (nothing it mounts is seen outside).

Here it builds a new root on a small tmpfs: the system and Python directories bound in
read-only (no setuid, no devices), ``/dev/{null,zero,random,urandom}``, and a scratch
``/work`` tmpfs (the only writable place); the root itself is then made read-only. It
chroots there and forks the code's process, which sets the resource limits, drops to a
user id no one else has (no groups, no capabilities, ``no_new_privs``) and becomes the
code's interpreter with an empty environment; this one stays pid 1 and reaps. The
backend's files, environment and processes are not in that world.

Standard library only, and no import of the package: it runs under ``-I -S``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    if _libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data or None)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl {option}")


def _bind_read_only(root: str, path: str) -> None:
    target = root + path
    os.makedirs(target, exist_ok=True)
    _mount(path, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_root(config: dict[str, object], code: bytes) -> None:
    root, uid = str(config["root"]), int(str(config["uid"]))
    _mount("sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in config["read_only"]:  # type: ignore[attr-defined]
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            _bind_read_only(root, path)
    os.mkdir(root + "/dev")
    for device in ("null", "zero", "random", "urandom"):
        with open(f"{root}/dev/{device}", "w"):
            pass
        _mount(f"/dev/{device}", f"{root}/dev/{device}", None, MS_BIND)
    work = root + "/work"
    os.mkdir(work)
    scratch = int(str(config["scratch_bytes"]))
    _mount("scratch", work, "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch},mode=700,uid={uid}")
    with open(work + "/main.py", "wb") as file:
        file.write(code)
    os.chown(work + "/main.py", uid, uid)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")


def drop_privileges(config: dict[str, object]) -> None:
    uid = int(str(config["uid"]))
    limits: dict[str, int] = config["limits"]  # type: ignore[assignment]
    for name, value in limits.items():
        # CPU: SIGXCPU at the limit (the code's exit says why), SIGKILL a second later.
        hard = value + 1 if name == "RLIMIT_CPU" else value
        resource.setrlimit(getattr(resource, name), (value, hard))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # a uid of its own: no other process to signal, ptrace or count against
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Cleared by the change of user: without it the code would outlive a killed parent.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_code(config: dict[str, object]) -> None:
    drop_privileges(config)
    os.closerange(3, 1 << 16)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    python = str(config["python"])
    os.execve(python, [python, "-I", "-S", "-B", "main.py"], {})


def reap(child: int) -> int:
    """As pid 1: reap every orphan until the code's process ends; its status is ours.

    The code is not pid 1 itself: the kernel spares a namespace's first process the
    signals it has no handler for, and the CPU limit's SIGKILL must reach the code.
    """
    os.closerange(0, 1 << 16)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.waitstatus_to_exitcode(status)


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read(int(config["max_code_bytes"]) + 1)
    build_root(config, code)
    os.chroot(str(config["root"]))
    os.chdir("/work")
    child = os.fork()
    if child == 0:
        try:
            run_code(config)
        finally:
            os._exit(127)
    # Leaving pid 1 ends every process left in the namespace (the kernel kills them).
    os._exit(reap(child))


if __name__ == "__main__":
    main()
