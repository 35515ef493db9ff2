"""The models file: its format, and parsing it into entries (``catalogue`` builds on them).

Shaped like the old ``llms.yml``::

    default: gpt-4o-mini            # optional; else the first entry
    models:                         # or ``llms:``, or a bare list
      - name: gpt-4o-mini
        provider: openai            # see PROVIDER_KINDS for the aliases
        model_name: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}  # ${VAR} / ${VAR:-default} from the passed env
        fallbacks: [claude]

and, per model, its limits, prices and reasoning (``catalogue_model_keys``).

A malformed file is a ``ValueError`` (the config layer makes it a start-up error). A
missing key is not: it becomes a setup hint, and only turns on that model fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue_model_keys import (
    DEFAULT_CURRENCY,
    OPTION_KEYS,
    parse_currency,
    parse_options,
)
from aichat_backend.providers.provider_kinds import provider_kind

_ENTRY_KEYS = {
    "name",
    "provider",
    "model_name",
    "base_url",
    "api_key",
    "fallbacks",
    "temperature",
    *OPTION_KEYS,
}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class CatalogueFile:
    """What a models file says, before the catalogue checks names across entries."""

    entries: list[ModelEntry]
    default_name: str | None
    # Per entry, what an operator must set to make it usable (the unset ``${VAR}``s).
    setup_hints: dict[str, list[str]]


def read_catalogue_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the model catalogue {str(path)!r}: {exc.strerror}") from None


def parse_catalogue_file(text: str, env: Mapping[str, str], *, source: str) -> CatalogueFile:
    """The entries of a models file; ``env`` supplies ``${VAR}`` values."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({exc})") from None
    default_name: str | None = None
    currency = DEFAULT_CURRENCY
    if isinstance(document, dict):
        unknown = set(document) - {"models", "llms", "default", "currency"}
        if unknown:
            raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
        raw_entries = document.get("models", document.get("llms"))
        default = document.get("default")
        if default is not None and not isinstance(default, str):
            raise ValueError(f"{source}: 'default' must be a model name")
        default_name = default
        currency = parse_currency(document, source)
    else:
        raw_entries = document
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ValueError(f"{source}: expected a non-empty list of models (under 'models:')")

    entries: list[ModelEntry] = []
    hints: dict[str, list[str]] = {}
    for index, raw in enumerate(raw_entries):
        entry, hint = _parse_entry(raw, env, source, index, currency)
        entries.append(entry)
        if hint:
            hints[entry.name] = hint
    return CatalogueFile(entries=entries, default_name=default_name, setup_hints=hints)


def _parse_entry(
    raw: Any, env: Mapping[str, str], source: str, index: int, currency: str
) -> tuple[ModelEntry, list[str]]:
    """The entry, and what to set before it is usable (empty when it is)."""
    where = f"{source}: model #{index + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with name, provider and model_name")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' is required")
    where = f"{where} ({name!r})"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    provider = raw.get("provider")
    if not isinstance(provider, str):
        raise ValueError(f"{where}: 'provider' is required")
    provider = provider.strip().lower()
    try:
        kind = provider_kind(provider)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    model_name = raw.get("model_name")
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"{where}: 'model_name' is required")

    key_vars: list[str] = []
    api_key = _substitute(_optional_scalar(raw, "api_key", where), env, key_vars)
    url_vars: list[str] = []
    base_url_raw = _optional_scalar(raw, "base_url", where)
    base_url = _substitute(base_url_raw, env, url_vars)
    if kind.base_url_required and base_url_raw is None:
        raise ValueError(f"{where}: provider {provider!r} needs a base_url")

    fallbacks = raw.get("fallbacks") or []
    if isinstance(fallbacks, str):
        fallbacks = [fallbacks]
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"{where}: 'fallbacks' must be a list of model names")
    temperature = raw.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise ValueError(f"{where}: 'temperature' must be a number")

    entry = ModelEntry(
        name=name.strip(),
        provider=provider,
        model_name=model_name.strip(),
        base_url=base_url or None,
        api_key=api_key or None,
        fallbacks=list(fallbacks),
        temperature=float(temperature) if temperature is not None else None,
        **parse_options(raw, where, currency),
    )
    # An empty base_url falls back to the alias's default URL; only a key the provider
    # needs, or a URL it has no default for, leaves the entry unusable.
    hint: list[str] = []
    if kind.needs_key and not entry.api_key:
        hint += key_vars or [f"api_key for {entry.name!r} in {source}"]
    if kind.base_url_required and not entry.base_url:
        hint += url_vars
    return entry, hint


def _optional_scalar(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where}: {key!r} must be a string")
    return str(value)


def _substitute(value: str | None, env: Mapping[str, str], missing: list[str]) -> str | None:
    """Expand ``${VAR}`` / ``${VAR:-default}``; record variables that were unset/empty."""
    if value is None:
        return None

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name, "")
        if found:
            return found
        if default is None:
            missing.append(name)
            return ""
        return default

    return _ENV_REF.sub(expand, value)
