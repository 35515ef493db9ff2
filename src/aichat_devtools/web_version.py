"""Stamps the web page's version into its index.html (``make gen``; ``make check-gen``
fails when it is stale).

Envoy serves the page's files under ``/web/v/<version>/`` with a year's max-age and
``immutable``: a browser downloads each version once. The version is a hash of the
files themselves and of the npm lockfile (which pins the vendored modules), so any
change makes new URLs; the index, served ``no-cache``, is what names the version.
No build step: the files are served as they are, and their imports are relative.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "src" / "aichat_web"
VERSIONED = re.compile(r"/web/v/[0-9a-f]{12}/")


def hashed_files(web: Path) -> list[Path]:
    """What the versioned URLs serve (vendor modules through the lockfile)."""
    fixed = [web / "styles.css", web / "favicon.svg", web / "package-lock.json"]
    return sorted([*fixed, *(web / "js").glob("*.js")])


def version(web: Path = WEB) -> str:
    digest = hashlib.sha256()
    for path in hashed_files(web):
        digest.update(path.relative_to(web).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def stamped(web: Path = WEB) -> str:
    """The version index.html names."""
    found: set[str] = set(VERSIONED.findall((web / "index.html").read_text()))
    if len(found) != 1:
        raise ValueError(f"index.html names {len(found)} versions; expected one")
    return found.pop()[len("/web/v/") : -1]


def stamp(web: Path = WEB) -> str:
    index = web / "index.html"
    current = version(web)
    text = index.read_text()
    updated = VERSIONED.sub(f"/web/v/{current}/", text)
    if updated != text:
        index.write_text(updated)
    return current


if __name__ == "__main__":
    print(stamp(Path(sys.argv[1]) if len(sys.argv) > 1 else WEB))
