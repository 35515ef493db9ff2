"""Envoy in front of the dev backend (filled in by the REST gateway work)."""

from __future__ import annotations

import subprocess


def start(env: dict[str, str]) -> subprocess.Popen[str] | None:
    return None


def banner() -> str:
    return ""
