"""The Python sandbox's system call filter (seccomp BPF), built here, installed by ``sandbox_init``.

It closes the two ways around the sandbox's memory budget that no resource limit sees,
and nothing else:

- memory outside any address space: ``memfd_create`` and ``memfd_secret`` (anonymous
  files), ``shmget`` (System V segments outlive a detach), ``msgget`` and ``mq_open``
  (message queues), ``io_uring_setup`` (kernel rings): refused with EPERM;
- new namespaces (a user namespace of its own could mount an unbounded tmpfs):
  ``unshare`` and ``setns`` refused, ``clone`` with any ``CLONE_NEW*`` flag refused, and
  ``clone3`` answered ENOSYS (its flags hide behind a pointer a filter cannot read; libc
  then falls back to ``clone``).

A call from another ABI (32-bit or x32 on x86-64) is refused as a whole: the numbers
below are the native ones. Only architectures listed here are supported; elsewhere the
sandbox refuses to run (``python_sandbox.available``).
"""

from __future__ import annotations

import os
import struct

# struct sock_filter: u16 code, u8 jt, u8 jf, u32 k.
_INSTRUCTION = struct.Struct("=HBBI")
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_EPERM, _ENOSYS = 1, 38
# offsetof(struct seccomp_data, ...): nr, arch, args[0] (its low word: little-endian)
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_X32_BIT = 0x40000000
CLONE_NEW_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

_REFUSED = (
    *("memfd_create", "memfd_secret", "shmget", "msgget", "mq_open", "io_uring_setup"),
    *("unshare", "setns"),
)


class _Arch:
    def __init__(self, audit: int, numbers: dict[str, int], *, x32: bool) -> None:
        self.audit, self.numbers, self.x32 = audit, numbers, x32


ARCHES = {
    "x86_64": _Arch(
        0xC000003E,
        {
            "memfd_create": 319,
            "memfd_secret": 447,
            "shmget": 29,
            "msgget": 68,
            "mq_open": 240,
            "io_uring_setup": 425,
            "unshare": 272,
            "setns": 308,
            "clone": 56,
            "clone3": 435,
        },
        x32=True,
    ),
    "aarch64": _Arch(
        0xC00000B7,
        {
            "memfd_create": 279,
            "memfd_secret": 447,
            "shmget": 194,
            "msgget": 186,
            "mq_open": 180,
            "io_uring_setup": 425,
            "unshare": 97,
            "setns": 268,
            "clone": 220,
            "clone3": 435,
        },
        x32=False,
    ),
}


def machine() -> str:
    return os.uname().machine


def supported() -> bool:
    return machine() in ARCHES


def program(arch_name: str | None = None) -> bytes:
    """The filter for this machine (or ``arch_name``), as the kernel reads it."""
    arch = ARCHES[arch_name or machine()]
    code: list[tuple[int, int, int, int]] = []

    def op(kind: int, k: int, jt: int = 0, jf: int = 0) -> None:
        code.append((kind, jt, jf, k))

    # Jump offsets count instructions after the jump; the returns sit at the end, so each
    # jump is written as a placeholder and fixed once their places are known.
    to_fix: list[tuple[int, str, str]] = []  # (index, target when true, when false)

    def jump(kind: int, k: int, true: str = "next", false: str = "next") -> None:
        to_fix.append((len(code), true, false))
        op(kind, k)

    op(_LD_W_ABS, _ARCH)
    jump(_JEQ_K, arch.audit, false="kill")
    op(_LD_W_ABS, _NR)
    if arch.x32:
        jump(_JGE_K, _X32_BIT, true="kill")
    for name in _REFUSED:
        jump(_JEQ_K, arch.numbers[name], true="eperm")
    jump(_JEQ_K, arch.numbers["clone3"], true="enosys")
    jump(_JEQ_K, arch.numbers["clone"], false="allow")
    op(_LD_W_ABS, _ARG0_LOW)
    jump(_JSET_K, CLONE_NEW_FLAGS, true="eperm")
    places = {"allow": len(code), "eperm": len(code) + 1, "enosys": len(code) + 2}
    places["kill"] = len(code) + 3
    op(_RET_K, _RET_ALLOW)
    op(_RET_K, _RET_ERRNO | _EPERM)
    op(_RET_K, _RET_ERRNO | _ENOSYS)
    op(_RET_K, _RET_KILL_PROCESS)
    for index, true, false in to_fix:
        kind, _, _, k = code[index]

        def offset(target: str, index: int = index) -> int:
            return 0 if target == "next" else places[target] - index - 1

        code[index] = (kind, offset(true), offset(false), k)
    return b"".join(_INSTRUCTION.pack(*instruction) for instruction in code)
