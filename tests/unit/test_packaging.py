"""The product ships without the dev tools, and never imports them."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "src" / "aichat_backend"

pytestmark = pytest.mark.timeout(60)


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_product_module_imports_the_dev_tools() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in PRODUCT.rglob("*.py")
        if any(m.split(".")[0] == "aichat_devtools" for m in _imported_modules(path))
    )
    assert offenders == []


def test_the_product_wheel_has_no_dev_tools(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("aichat_backend-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "aichat_backend" in tops and "aichat" in tops  # the product and its client stubs
    assert not any(top.startswith("aichat_devtools") for top in tops), tops
