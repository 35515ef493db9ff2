"""What a Python file imports, read from its source (nothing is imported)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """The absolute imports of ``path``; ``from package import name`` gives both
    ``package`` and ``package.name`` (the name may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(found)
