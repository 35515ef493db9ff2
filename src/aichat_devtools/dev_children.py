"""The children of `make run`, and how every way of stopping it stops all of them.

A child gets its own process group, so a terminal's Ctrl-C (sent to the foreground group)
reaches only the supervisor, which stops the children in order and waits for them; and
PR_SET_PDEATHSIG, so a supervisor killed outright (SIGKILL, no handler runs) still takes
them along. The supervisor itself handles SIGTERM, SIGINT and SIGHUP the same way and dies
with its own parent (``make``, a shell, a test).

The death signal is set by a few lines of Python that then exec the child (the
``_GUARD`` below), not by ``preexec_fn``: that would run Python between fork and exec,
which is unsafe once the supervisor has threads (its gRPC health probe starts some).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """Raised in the main thread by a stop signal: unwinds into the cleanup."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``sig`` when our parent ends (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    # The parent may have died before prctl took effect: then nobody will signal us.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


# Run as `python -I -c _GUARD <supervisor pid> <program> <args…>`: unblock the stop signals
# (the mask is inherited from _signals_held), ask for SIGTERM when the supervisor dies, then
# become the program (the death signal survives exec).
_GUARD = f"""
import ctypes, os, signal, sys
signal.pthread_sigmask(signal.SIG_UNBLOCK, {sorted(int(s) for s in STOP_SIGNALS)!r})
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, {int(signal.SIGTERM)}, 0, 0, 0)
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)  # the supervisor is gone already
os.execvp(sys.argv[2], sys.argv[2:])
"""


def install_stop_handlers() -> None:
    """SIGTERM, SIGINT and SIGHUP become :class:`Stopped`; we also die with our parent."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Stopped(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    _die_with_parent(os.getppid())


def ignore_stop_signals() -> None:
    """While stopping: a second Ctrl-C must not leave children half-stopped."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Between fork and our record of the child, a stop signal would leak the child."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class Children:
    """The processes one run started, newest last."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` in its own process group, to die with this process."""
        guarded = [sys.executable, "-I", "-c", _GUARD, str(os.getpid()), *argv]
        # Not the terminal's: a background process group that reads it would be stopped.
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        with _signals_held():
            proc: subprocess.Popen[str] = subprocess.Popen(
                guarded, text=True, process_group=0, **kwargs
            )
            self.procs.append(proc)
        proc.args = list(argv)  # what it runs, for messages
        return proc

    def wait_any(self) -> subprocess.Popen[str]:
        """Block until one child ends (or a stop signal raises); return that child."""
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    return proc
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:  # all reaped elsewhere already
                return self.procs[0]
            for proc in self.procs:
                if proc.pid == pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)

    def stop_all(self, grace: float, say: Callable[[str], None]) -> None:
        """SIGTERM to each child that runs, a bounded wait, then SIGKILL to its group."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{_name(proc)} did not stop within {grace:.0f} s: killed")
            # Whatever the child left in its group (it may have started its own children).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _name(proc: subprocess.Popen[str]) -> str:
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    return " ".join(str(a) for a in args[:4])
