"""Ports for processes a test must tell where to listen before they start.

A port found by binding port 0 and closing the socket lies in the kernel's ephemeral
range: until the child binds it (seconds, for `make run`), any connect() on the machine
may take it as its source port, and parallel test workers make thousands. These ports come
from below that range instead, where the kernel never hands out a port by itself; each
pytest-xdist worker draws from a block of its own, at random (another copy of the suite
may run beside this one), and a port is checked free before it is handed out.
"""

from __future__ import annotations

import os
import random
import socket

# The kernel's default ephemeral range is 32768-60999; ours stays below it.
FIRST, LAST = 20_000, 32_000
BLOCKS = 12
_handed: set[int] = set()


def worker_block() -> range:
    """This process's block of ports: one per xdist worker (gw0, gw1, ...), 0 otherwise."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % BLOCKS if worker.isdigit() else 0
    size = (LAST - FIRST) // BLOCKS
    return range(FIRST + index * size, FIRST + (index + 1) * size)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on now, none handed out before by this process."""
    block = worker_block()
    chosen: list[int] = []
    for port in random.sample(block, len(block)):
        if port not in _handed and _bindable(port):
            chosen.append(port)
            if len(chosen) == count:
                _handed.update(chosen)
                return chosen
    raise RuntimeError(f"no {count} free ports left in {block}")


def free_port() -> int:
    return free_ports(1)[0]
