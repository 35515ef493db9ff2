"""The engine talks to its ports: no module of it reaches the SQL store or gRPC.

Every module under engine/ is walked, with what it imports from the product in turn, so
a module split off (turn_open, round_open, resolution_open, ...) is held to the rule
without a list to keep.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.imports import imported_modules

SRC = Path(__file__).resolve().parents[2] / "src"
ENGINE = SRC / "aichat_backend" / "engine"
# The SQL store, the gRPC layer, and gRPC or protobuf themselves (with the generated stubs).
FORBIDDEN = ("aichat_backend.store", "aichat_backend.api", "google.protobuf", "aichat")

pytestmark = pytest.mark.timeout(30)


def _source(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _forbidden(module: str) -> bool:
    if module.split(".")[0].startswith("grpc"):  # grpc, grpc_status, grpc_health, ...
        return True
    return any(module == f or module.startswith(f"{f}.") for f in FORBIDDEN)


def _reached(start: Path) -> list[str]:
    """What ``start`` imports that it must not, with the product file that imports it."""
    seen: set[Path] = set()
    todo, bad = [start], []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            if _forbidden(module):
                bad.append(f"{path.relative_to(SRC)} imports {module}")
            elif module.startswith("aichat_backend") and (found := _source(module)):
                todo.append(found)
    return sorted(bad)


def test_the_engine_reaches_neither_the_store_nor_grpc() -> None:
    modules = sorted(ENGINE.glob("*.py"))
    assert {"turn_start.py", "turn_open.py", "round_open.py", "resolve.py"} <= {
        m.name for m in modules
    }
    offenders = {m.name: bad for m in modules if (bad := _reached(m))}
    assert offenders == {}
