"""The web page's settings file: what `aichat-backend web-config` writes for Envoy to serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aichat_backend.cli import main
from aichat_backend.config import Settings
from aichat_backend.web_config import page_config


def test_the_default_app_name_is_the_seeds() -> None:
    assert page_config(Settings.model_validate({}))["appName"] == "Galaxy Chat"


def test_the_command_writes_the_settings_the_page_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("AICHAT_APP_NAME", "Nebula Chat")
    monkeypatch.setenv("AICHAT_MAX_ATTACHMENT_BYTES", "4096")
    out = tmp_path / "var" / "web-config.json"
    assert main(["web-config", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {
        "appName": "Nebula Chat",
        "maxAttachmentBytes": 4096,
        "maxAttachmentsPerMessage": 10,
        "maxMessageBytes": 16 * 1024 * 1024,
    }


def test_an_empty_app_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICHAT_APP_NAME", "")
    with pytest.raises(SystemExit) as exit_info:
        main(["web-config", "--env-only"])
    assert exit_info.value.code == 2


def test_make_run_prints_a_sign_in_link_with_the_token_in_the_fragment(tmp_path: Path) -> None:
    import jwt

    from aichat_devtools import dev_envoy

    url = dev_envoy.sign_in_url(var=tmp_path / "var")
    page, _, fragment = url.partition("#")
    assert page == "http://127.0.0.1:8080/web/"  # nothing of the token before the '#'
    assert fragment.startswith("token=")
    claims = jwt.decode(fragment[len("token=") :], options={"verify_signature": False})
    assert claims["sub"] == dev_envoy.DEV_WEB_USER and claims["aud"] == "aichat"
