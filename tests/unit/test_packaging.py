"""The product ships without the dev tools, and never imports them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.imports import imported_modules

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "src" / "aichat_backend"

pytestmark = pytest.mark.timeout(60)


def test_no_product_module_imports_the_dev_tools() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in PRODUCT.rglob("*.py")
        if any(m.split(".")[0] == "aichat_devtools" for m in imported_modules(path))
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
