"""Scripts run inside the Python sandbox that try to hold as much memory as they can.

Each prints ``held <MiB>``: the most memory it held at one time, by its own count of the
bytes it wrote (written, not reserved: every page counted was really taken). Each way
stops by itself at ``CEILING_MIB`` so a sandbox without the bound does not take the
machine down with it.
"""

from __future__ import annotations

CEILING_MIB = 1024

# Every process the call may have, each filling its own address space, all at once.
FORKED = """
import os
STEP, CEILING = 4 << 20, {ceiling} << 20

def hog():
    held = []
    try:
        while len(held) * STEP < CEILING:
            held.append(bytearray(b"\\x01") * STEP)
    except MemoryError:
        pass
    return held

report_r, report_w = os.pipe()
hold_r, hold_w = os.pipe()
children = 0
while children < 64:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        os.close(report_r); os.close(hold_w)
        held = hog()
        os.write(report_w, b"%d\\n" % (len(held) * STEP >> 20))
        os.read(hold_r, 1)  # keep it until the parent has counted everyone
        os._exit(0)
    children += 1
os.close(report_w); os.close(hold_r)
counts = []
with os.fdopen(report_r) as reports:  # one line each (they keep the pipe open: no EOF)
    for _ in range(children):
        counts.append(int(reports.readline()))
own = hog()
print("processes", children + 1)
print("held", sum(counts) + (len(own) * STEP >> 20))
"""

# Memory that belongs to no process's address space: anonymous files, System V shared
# memory, and a tmpfs mounted in a user namespace of its own.
OUTSIDE = """
import ctypes, os
STEP, CEILING = 4 << 20, {ceiling} << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
chunk = b"\\x01" * STEP
held = {{}}

def memfd():
    total = 0
    fds = []
    try:
        while total < CEILING:
            fd = os.memfd_create("hog")
            fds.append(fd)
            try:
                while total < CEILING:
                    os.write(fd, chunk)
                    total += STEP
            except OSError as exc:  # this file is full (its size limit): take another
                if exc.errno != 27:  # EFBIG
                    raise
    except OSError as exc:
        print("memfd stopped:", type(exc).__name__, exc.errno)
    return total

def sysv():
    total = 0
    while total < CEILING:
        ident = libc.shmget(0, STEP, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if ident < 0:
            print("shmget stopped: errno", ctypes.get_errno())
            break
        address = libc.shmat(ident, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            print("shmat stopped: errno", ctypes.get_errno())
            break
        ctypes.memset(address, 1, STEP)
        libc.shmdt(ctypes.c_void_p(address))  # detached, the segment stays
        total += STEP
    return total

def nested_tmpfs():
    if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
        print("unshare stopped: errno", ctypes.get_errno())
        return 0
    os.makedirs("/work/mnt", exist_ok=True)
    if libc.mount(b"none", b"/work/mnt", b"tmpfs", 0, None) != 0:
        print("mount stopped: errno", ctypes.get_errno())
        return 0
    total = 0
    try:
        while total < CEILING:
            with open(f"/work/mnt/{{total}}", "wb") as file:
                file.write(chunk)
            total += STEP
    except OSError as exc:
        print("tmpfs stopped:", type(exc).__name__, exc.errno)
    return total

for way in (memfd, sysv, nested_tmpfs):
    held[way.__name__] = way() >> 20
    print(way.__name__, held[way.__name__])
print("held", sum(held.values()))  # all still held: fds open, segments kept
"""


def forked(ceiling_mib: int = CEILING_MIB) -> str:
    return FORKED.format(ceiling=ceiling_mib)


def outside(ceiling_mib: int = CEILING_MIB) -> str:
    return OUTSIDE.format(ceiling=ceiling_mib)


def held_mib(stdout: str) -> int:
    line = next(x for x in stdout.splitlines() if x.startswith("held "))
    return int(line.split()[1])
