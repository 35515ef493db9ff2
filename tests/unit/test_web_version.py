"""The web page's index names the version of its files (``make gen`` stamps it): a file
changed without a new stamp would reach returning browsers only after their cached copy
(a year) expired."""

from __future__ import annotations

from aichat_devtools import web_version


def test_the_index_names_the_current_version_of_the_files() -> None:
    assert web_version.stamped() == web_version.version(), "run `make gen`"


def test_every_file_envoy_serves_under_the_version_is_hashed() -> None:
    import re
    from pathlib import Path

    root = Path(web_version.__file__).resolve().parents[2]
    served = set(
        re.findall(
            r"filename: (src/aichat_web/(?!node_modules)\S+?)\}", (root / "envoy.yaml").read_text()
        )
    )
    hashed = {p.relative_to(root).as_posix() for p in web_version.hashed_files(web_version.WEB)}
    assert len(served) > 10 and served - {"src/aichat_web/index.html"} <= hashed
    # ... and every module of the page has its route (a missing one fails its import).
    modules = {p for p in hashed if p.startswith("src/aichat_web/js/")}
    assert modules <= served, modules - served
