"""`make run` for tests: the real `aichat-dev run` (fake model, backend, Envoy) on free ports.

It runs in a work directory of its own that looks like a checkout to the README's commands
(``.venv`` and ``gen`` link to this one), so ``var/`` (database, keys, rendered Envoy
configuration) is the test's, never the developer's. The banner on stderr is the readiness
signal; every process the run started is found through /proc, so a test can check that
each one is gone after a stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
DEV_CLI = Path(sys.executable).parent / "aichat-dev"
BANNER = "aichat is running."
START_LIMIT = 90.0  # a loaded 2-core machine; normally ~5 s


@dataclass(frozen=True)
class Ports:
    grpc: int
    envoy: int
    admin: int
    fake: int
    openai: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*free_ports(5))

    def env(self) -> dict[str, str]:
        return {
            "AICHAT_GRPC_ADDRESS": f"127.0.0.1:{self.grpc}",
            "AICHAT_OPENAI_ADDRESS": f"127.0.0.1:{self.openai}",
            "AICHAT_DEV_ENVOY_PORT": str(self.envoy),
            "AICHAT_DEV_ENVOY_ADMIN_PORT": str(self.admin),
            "AICHAT_DEV_FAKE_LLM_PORT": str(self.fake),
        }


def workdir_like_checkout(path: Path) -> Path:
    """A directory where ``.venv/bin/…`` and ``gen/aichat.pb`` resolve as in the checkout."""
    path.mkdir(parents=True, exist_ok=True)
    for name in (".venv", "gen"):
        link = path / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    return path


def stack_env(ports: Ports, **extra: str) -> dict[str, str]:
    """The caller's environment without its AICHAT_* (a developer's key must not leak)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHAT_")}
    env.update(ports.env())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process below ``root``: pid → start time (to tell a reused pid apart)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            parents.setdefault(info[0], []).append(int(entry.name))
            starts[int(entry.name)] = info[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def alive(pid: int, start: int) -> bool:
    info = _stat(pid)
    return info is not None and info[2] == start and info[1] != "Z"


def wait_until(what: str, condition: Callable[[], bool], within: float) -> None:
    """Bounded wait on a condition a process outside this one makes true."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)


class DevRun:
    """One `aichat-dev run` (optionally under a parent shell); its stderr is kept."""

    def __init__(self, workdir: Path, env: dict[str, str], *, under_shell: bool = False) -> None:
        argv = [str(DEV_CLI), "run"]
        if under_shell:
            # A parent that is not the test, as `make` is: `; :` keeps sh from exec'ing.
            argv = ["/bin/sh", "-c", '"$0" "$@"; :', *argv]
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.known: dict[int, int] = {}
        self._changed = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, needle: str, within: float = START_LIMIT) -> None:
        def seen() -> bool:
            return any(needle in line for line in self.lines)

        with self._changed:
            self._changed.wait_for(lambda: seen() or self._eof, within)
            if not seen():
                raise AssertionError(
                    f"`aichat-dev run` did not say {needle!r} "
                    f"(rc={self.proc.poll()}):\n{chr(10).join(self.lines)[-6000:]}"
                )

    def wait_exit(self, within: float = 40.0) -> int:
        code = self.proc.wait(within)
        self._reader.join(10)
        return code

    def supervisor_pid(self) -> int:
        """The `aichat-dev run` process itself (below the shell when there is one)."""
        if self.proc.args[0] != "/bin/sh":
            return self.proc.pid
        kids = [p for p in descendants(self.proc.pid) if (_stat(p) or (0,))[0] == self.proc.pid]
        assert len(kids) == 1, kids
        return kids[0]

    def snapshot(self) -> dict[int, int]:
        """Every process this run has now (the shell, the supervisor, its children…)."""
        self.known.update(descendants(self.proc.pid))
        return dict(self.known)

    def kill_everything(self) -> None:
        """Teardown after a failed test: nothing it started may outlive the test."""
        procs = {**self.known, **descendants(self.proc.pid)}
        for pid, start in procs.items():
            if alive(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def dev_run(workdir: Path, env: dict[str, str], *, under_shell: bool = False) -> Iterator[DevRun]:
    run = DevRun(workdir, env, under_shell=under_shell)
    try:
        yield run
    finally:
        run.kill_everything()
