"""docs/configuration.md is the settings object's reference: complete and current."""

from __future__ import annotations

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


def test_the_reference_is_current() -> None:
    assert DOC.read_text() == settings_doc.render(), "docs/configuration.md is stale: `make gen`"


def test_the_groups_cover_the_settings_object() -> None:
    grouped = [n for _, fields in settings_doc.GROUPS for n in fields.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields)
