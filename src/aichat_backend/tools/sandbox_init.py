"""The first process of a Python sandbox: builds its world, gives up every power, runs the code.

Started by ``python_sandbox`` as ``python -I -S sandbox_init.py <config>`` with the code
on stdin, as whatever user the tool server runs as: root or not, the same path follows.

1. New user, mount, PID, network, IPC and UTS namespaces (``unshare``). The user
   namespace maps root inside to the server's own user outside (unprivileged: the one
   mapping the kernel allows), or, for a root server, root to root and uid 1 to a uid no
   one else has, under which the code then runs. No nested user namespace may be made.
2. A fork: pid 1 of the new PID namespace, which sees no process outside. It builds a new
   root on a small tmpfs — the system and Python directories bound in read-only (no
   setuid, no devices), ``/dev/{null,zero,random,urandom}``, a scratch ``/work`` tmpfs
   (the only writable place) — chroots there, forks the code's process, gives up its own
   capabilities and stays to reap.
3. The code's process sets the resource limits (``RLIMIT_AS`` per process and
   ``RLIMIT_NPROC`` are what sum to the call's memory budget), drops every capability
   (an empty bounding set, ``SECBIT_NOROOT``, the uid change for a root server),
   ``no_new_privs``, installs the seccomp filter (``sandbox_seccomp``) and becomes the
   code's interpreter with an empty environment.

This process stays outside the PID namespace as the call's handle: it exits with the
code's status, and killing its child (pid 1) ends every process of the call.

Standard library only, and no import of the package: it runs under ``-I -S``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECCOMP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 22, 28, 38
SECCOMP_MODE_FILTER = 2
# NOROOT (+ locked): uid 0 gains nothing at exec; ambient capabilities can never be raised.
SECUREBITS = 0x01 | 0x02 | 0x40 | 0x80
CODE_UID_INSIDE = 1  # a root server's code runs as this uid inside (mapped to config "uid")
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data or None)), target)


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), f"prctl {option}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def enter_namespaces(config: dict[str, object]) -> None:
    """Unshare everything and map the ids (see the module's docstring, step 1)."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
    flags |= CLONE_NEWUTS
    if os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(flags), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1\n")
        _write("/proc/self/gid_map", f"0 {gid} 1\n")
    else:
        # More than one mapping must be written from outside the new namespace.
        code_uid = int(str(config["uid"]))
        go_r, go_w = os.pipe()
        helper = os.fork()
        if helper == 0:
            status = 1
            try:
                os.close(go_w)
                os.read(go_r, 1)
                maps = f"0 0 1\n{CODE_UID_INSIDE} {code_uid} 1\n"
                _write(f"/proc/{os.getppid()}/uid_map", maps)
                _write(f"/proc/{os.getppid()}/gid_map", maps)
                status = 0
            finally:
                os._exit(status)
        os.close(go_r)
        _check(_libc.unshare(flags), "unshare")
        os.write(go_w, b"x")
        os.close(go_w)
        if os.waitpid(helper, 0)[1] != 0:
            raise OSError("the user namespace's id maps could not be written")
    # Inside: no user namespace below this one (one could mount an unbounded tmpfs).
    _write("/proc/sys/user/max_user_namespaces", "0")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _bind_read_only(root: str, path: str) -> None:
    target = root + path
    os.makedirs(target, exist_ok=True)
    _mount(path, target, None, MS_BIND | MS_REC)
    # In a user namespace a remount must keep the flags the original mount is locked with.
    kept = os.statvfs(path).f_flag
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
    flags |= MS_NOEXEC if kept & os.ST_NOEXEC else 0
    flags |= MS_NOATIME if kept & os.ST_NOATIME else 0
    flags |= MS_NODIRATIME if kept & os.ST_NODIRATIME else 0
    flags |= MS_RELATIME if kept & os.ST_RELATIME else 0
    flags |= 0 if kept & (os.ST_NOATIME | os.ST_RELATIME) else MS_STRICTATIME
    _mount(None, target, None, flags)


def build_root(config: dict[str, object], code: bytes, owner: int) -> None:
    """The new root (step 2); ``owner``: the uid inside that runs the code."""
    root = str(config["root"])
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
    options = f"size={scratch},mode=700,uid={owner},gid={owner}"
    _mount("scratch", work, "tmpfs", MS_NOSUID | MS_NODEV, options)
    with open(work + "/main.py", "wb") as file:
        file.write(code)
    os.chown(work + "/main.py", owner, owner)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")


def drop_bounding_and_bits() -> None:
    """Nothing gained at a later exec: an empty bounding set, and uid 0 earns nothing."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # past the kernel's last one: EINVAL
    _prctl(PR_SET_SECUREBITS, SECUREBITS)


def clear_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    _check(_libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")


def run_code(config: dict[str, object], owner: int) -> None:
    limits: dict[str, int] = dict(config["limits"])  # type: ignore[call-overload]
    if owner == 0:
        # The code shares its uid inside with this process and its parent: they count.
        limits["RLIMIT_NPROC"] += 2
    for name, value in limits.items():
        # CPU: SIGXCPU at the limit (the code's exit says why), SIGKILL a second later.
        hard = value + 1 if name == "RLIMIT_CPU" else value
        resource.setrlimit(getattr(resource, name), (value, hard))
    if owner != 0:
        os.setgroups([])
    drop_bounding_and_bits()
    if owner != 0:
        os.setgid(owner)
        os.setuid(owner)  # a uid of its own: no other process to signal, ptrace or count
    clear_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Cleared by a change of user: without it the code would outlive a killed parent.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    install_filter(bytes.fromhex(str(config["seccomp"])))
    os.closerange(3, 1 << 16)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    python = str(config["python"])
    os.execve(python, [python, "-I", "-S", "-B", "main.py"], {})


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install_filter(program: bytes) -> None:
    prog = _SockFprog(len(program) // 8, program)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


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


def first_process(config: dict[str, object], code: bytes) -> None:
    """Pid 1 of the new PID namespace (step 2); never returns."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the handle killed: the whole call goes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a handler would let the code signal us
    owner = CODE_UID_INSIDE if "uid" in config else 0
    build_root(config, code, owner)
    os.chroot(str(config["root"]))
    os.chdir("/work")
    # Not dumpable: the code (the same uid inside, for an unprivileged server) may not
    # ptrace this process, which holds the namespace's capabilities until they are dropped.
    _prctl(PR_SET_DUMPABLE, 0)
    child = os.fork()
    if child == 0:
        try:
            run_code(config, owner)
        finally:
            os._exit(127)
    drop_bounding_and_bits()
    clear_capabilities()
    # Leaving pid 1 ends every process left in the namespace (the kernel kills them).
    os._exit(reap(child))


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read(int(config["max_code_bytes"]) + 1)
    enter_namespaces(config)
    child = os.fork()
    if child == 0:
        try:
            first_process(config, code)
        finally:
            os._exit(126)
    os.closerange(0, 1)
    _, status = os.waitpid(child, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
