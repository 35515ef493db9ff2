"""Typed values of one servers-file entry, each refused with a message naming the key.

``fail`` turns a problem into the ``ValueError`` that names the entry it came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aichat_backend.tools.base import ApprovalPolicy

Fail = Callable[[str], ValueError]

# ${VAR} or ${env:VAR}: a backend variable named by the file, never its value.
_VARIABLE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


def optional_str(entry: dict[str, Any], key: str, fail: Fail) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f'"{key}" must be a string')
    return value


def str_map(entry: dict[str, Any], key: str, fail: Fail) -> dict[str, str]:
    value = entry.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise fail(f'"{key}" must be an object of string to string')
    return dict(value)


def expand_map(
    values: dict[str, str], environ: Mapping[str, str], fail: Fail, what: str
) -> dict[str, str]:
    def expand(key: str, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in environ:
                raise fail(f"{what}[{key!r}] names ${{{variable}}}, which is not set")
            return environ[variable]

        return _VARIABLE.sub(one, text)

    return {key: expand(key, value) for key, value in values.items()}


def seconds(entry: dict[str, Any], key: str, fail: Fail) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise fail(f'"{key}" must be a number of seconds in (0, 3600]')
    return float(value)


def policy(value: Any, fail: Fail, what: str) -> ApprovalPolicy:
    if isinstance(value, str):
        try:
            return ApprovalPolicy(value.lower())
        except ValueError:
            pass
    raise fail(f'{what} must be "auto", "always" or "never" (got {value!r})')
