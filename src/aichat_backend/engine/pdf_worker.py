"""The PDF text extractor's worker process: ``python -m aichat_backend.engine.pdf_worker``.

pypdf is pure Python: a 2 KB PDF can cost seconds of CPU per page, and on the server's
event loop that stalls every caller. So extraction runs here, in a long-lived child that
reads jobs from stdin and answers on stdout, one at a time. Its bounds, set here because
only a process can bound itself cheaply:

- CPU time per job: ``RLIMIT_CPU``'s soft limit is moved to (CPU used so far + budget) for
  each job; the kernel's SIGXCPU becomes an exception between two bytecodes. A loop stuck
  inside C never sees it: the parent's wall-clock bound kills the process instead.
- memory: ``RLIMIT_AS`` for the whole process (a MemoryError is a refusal, not a crash);
- pages and extracted characters: counted as pages are read, stopping at the first excess.

Nothing from the server is imported: the child starts in ~0.2 s and holds no secret.
"""

from __future__ import annotations

import io
import resource
import signal
import struct
import sys
from typing import Any, BinaryIO

# A job: max pages, max characters, CPU seconds, content length; then the content.
JOB = struct.Struct("!IIdI")
# An answer: outcome, payload length; then the payload (text, or "why" for a refusal).
ANSWER = struct.Struct("!BI")
OK, UNREADABLE, TOO_MANY_PAGES, TEXT_TOO_LONG, TOO_COSTLY = range(5)


class _OverBudget(BaseException):
    """This job used its CPU time. A BaseException: pypdf's own ``except Exception`` blocks
    must not turn it into a read error."""


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise _OverBudget


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _extract(content: bytes, max_pages: int, max_chars: int) -> tuple[int, str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    if reader.is_encrypted:
        return UNREADABLE, "the PDF is encrypted"
    count = len(reader.pages)
    if count > max_pages:
        return TOO_MANY_PAGES, f"the PDF has {count} pages; the limit is {max_pages}"
    texts: list[str] = []
    total = 0
    for page in reader.pages:
        text = (page.extract_text() or "").strip()
        total += len(text)
        if total > max_chars:
            return TEXT_TOO_LONG, f"the PDF's text is over {max_chars} characters"
        if text:
            texts.append(text)
    return OK, "\n\n".join(texts)


def run_job(content: bytes, max_pages: int, max_chars: int, cpu_seconds: float) -> tuple[int, str]:
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    started = _cpu_used()
    # Whole seconds (the kernel's unit), rounded up: a budget is never cut short.
    soft = int(_cpu_used() + cpu_seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        return _extract(content, max_pages, max_chars)
    except _OverBudget:
        return TOO_COSTLY, f"reading the PDF took over {cpu_seconds:g} s of CPU"
    except MemoryError:
        return TOO_COSTLY, "reading the PDF needed too much memory"
    except RecursionError:
        return UNREADABLE, "the PDF is nested too deeply"
    except Exception as exc:  # any pypdf failure: broken xref, limits, bad streams, …
        if _cpu_used() - started >= cpu_seconds:
            # The budget ran out inside code that wrapped our signal's exception.
            return TOO_COSTLY, f"reading the PDF took over {cpu_seconds:g} s of CPU"
        return UNREADABLE, f"not a readable PDF ({type(exc).__name__})"
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def main() -> int:
    memory = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is for the server
    import pypdf  # noqa: F401  (warm: the first job should not pay the import)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(ANSWER.pack(OK, 0))  # ready
    stdout.flush()
    while (header := _read_exact(stdin, JOB.size)) is not None:
        max_pages, max_chars, cpu_seconds, length = JOB.unpack(header)
        content = _read_exact(stdin, length)
        if content is None:
            break
        outcome, payload = run_job(content, max_pages, max_chars, cpu_seconds)
        data = payload.encode("utf-8", "replace")
        stdout.write(ANSWER.pack(outcome, len(data)) + data)
        stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
