"""Every deployment rendering of envoy.yaml is a configuration the real Envoy accepts.

The image default, compose's and the Helm chart's (as Helm renders it) are checked by
`envoy --mode validate` with their /etc/aichat-edge files taken from the checkout (what
the edge image copies) and a JWKS and page settings of the test's own (what is mounted).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from aichat_devtools import deploy_configs, dev_token
from tests.deploy.test_helm import render as render_chart
from tests.support.dev_stack import ROOT
from tests.support.tools import binary

pytestmark = pytest.mark.timeout(120)


def validate(text: str, tmp_path: Path) -> None:
    keys, _ = dev_token.ensure_keys(tmp_path / "keys")
    web = tmp_path / "web-config.json"
    web.write_text(deploy_configs.default_web_config())
    edge = str(deploy_configs.EDGE_DIR)
    text = text.replace(str(deploy_configs.JWKS_FILE), str(keys.jwks_path))
    text = text.replace(str(deploy_configs.WEB_CONFIG_FILE), str(web))
    text = text.replace(edge + "/", str(ROOT) + "/")
    assert edge not in text
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    done = subprocess.run(
        [binary("envoy"), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("rendering", ["deploy/envoy/envoy.yaml", "deploy/compose/envoy.yaml"])
def test_committed_renderings_validate(rendering: str, tmp_path: Path) -> None:
    validate((ROOT / rendering).read_text(), tmp_path)


def test_the_charts_rendered_envoy_yaml_validates(tmp_path: Path) -> None:
    (config_map,) = [o for o in render_chart() if o["metadata"]["name"].endswith("-envoy")]
    text = config_map["data"]["envoy.yaml"]
    assert yaml.safe_load(text)["static_resources"]
    validate(text, tmp_path)
