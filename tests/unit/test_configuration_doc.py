"""docs/configuration.md is the settings object's reference: complete and current."""

from __future__ import annotations

import re

from pydantic_settings import BaseSettings

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


def test_every_aichat_variable_the_code_reads_is_in_the_reference() -> None:
    """Settings classes of their own (the bundled tool servers) and variables named in
    code are documented too: every ``AICHAT_…`` name in the product's source."""
    text = DOC.read_text()
    source = ROOT / "src" / "aichat_backend"
    named = {
        m.group(0)
        for path in source.rglob("*.py")
        for m in re.finditer(r"AICHAT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    documented = set(re.findall(r"`(AICHAT_[A-Z0-9_]+)`", text))
    # A prefix in prose ("AICHAT_DB_…") is a family, documented member by member.
    missing = sorted(
        n for n in named - documented if not any(d.startswith(n + "_") for d in documented)
    )
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_settings_class_of_the_product_is_in_the_reference() -> None:
    documented = {cls for _, cls in settings_doc.GROUPS + settings_doc.TOOL_GROUPS}
    classes = {
        cls
        for cls in _settings_classes()
        if cls.__module__.startswith("aichat_backend.") and not issubclass(cls, Settings)
    }
    assert classes <= documented, f"not in docs/configuration.md: {classes - documented}"


def _settings_classes() -> set[type[BaseSettings]]:
    import importlib
    import pkgutil

    import aichat_backend

    for info in pkgutil.walk_packages(aichat_backend.__path__, "aichat_backend."):
        if ".migrations" not in info.name and not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: set[type[BaseSettings]] = set()
    todo = [BaseSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found
