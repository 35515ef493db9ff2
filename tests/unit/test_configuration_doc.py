"""docs/configuration.md is the settings object's reference: complete and current."""

from __future__ import annotations

import re

from aichat_backend.config import ENV_PREFIX, Settings
from aichat_devtools import settings_doc
from tests.support.dev_stack import ROOT

DOC = ROOT / "docs" / "configuration.md"


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert not missing, f"settings without a description (docs/configuration.md): {missing}"


def test_every_variable_is_in_the_reference() -> None:
    text = DOC.read_text()
    missing = [
        ENV_PREFIX + name.upper()
        for name in Settings.model_fields
        if f"| `{ENV_PREFIX}{name.upper()}` |" not in text
    ]
    assert not missing, f"docs/configuration.md lacks {missing}: run `make gen`"


def test_every_tool_server_setting_has_a_description() -> None:
    missing = [
        f"{cls.__name__}.{name}"
        for _, _, cls in settings_doc.TOOL_SERVERS
        for name, field in cls.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, f"tool server settings without a description: {missing}"


def test_every_variable_the_code_names_is_in_the_reference() -> None:
    """Issue 30: settings read outside the settings object (the bundled tool servers', make
    run's) were documented nowhere. Any AICHAT_ name spelled in src/ must be in the file."""
    text = DOC.read_text()
    named = {
        name
        for package in ("aichat_backend", "aichat_devtools")
        for path in (ROOT / "src" / package).rglob("*.py")
        for name in re.findall(r"\bAICHAT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    missing = sorted(name for name in named if f"`{name}`" not in text)
    assert not missing, f"docs/configuration.md never names {missing}"


def test_the_reference_is_current() -> None:
    assert DOC.read_text() == settings_doc.render(), "docs/configuration.md is stale: `make gen`"


def test_the_groups_cover_the_settings_object() -> None:
    grouped = [n for _, fields in settings_doc.GROUPS for n in fields.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields)
