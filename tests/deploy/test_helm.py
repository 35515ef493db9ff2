"""The Helm chart (deploy/helm/aichat), rendered and checked offline.

No helm binary reaches this machine's registries; helm-python-sdk (PyPI) carries Helm's
own Go SDK as a C library, so `render` and `lint` here are Helm's template engine and
linter, not an imitation. Every rendered object is validated against the Kubernetes
schemas kubernetes-validate bundles, then checked for what aichat needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from aichat_devtools import deploy_configs
from tests.support.dev_stack import ROOT

CHART = ROOT / "deploy" / "helm" / "aichat"
KUBERNETES = "1.33.0"
VALUES: dict[str, Any] = {"auth": {"issuer": "https://id.example.com/realms/chat"}}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    files = chart.render(
        VALUES if values is None else values, name="chat", namespace="aichat", is_install=True
    )
    return [d for text in files.values() for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render()}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_helm_lint_is_clean() -> None:
    report = helm_python.lint(str(CHART), VALUES, strict=True)
    assert report["errors"] == [] and report["messages"] == [], report


def test_every_object_is_valid_kubernetes(objects: dict[tuple[str, str], Any]) -> None:
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    kinds = sorted(kind for kind, _ in objects)
    assert kinds == sorted(
        ["ConfigMap"] * 3
        + ["Deployment"] * 2
        + ["Service"] * 2
        + ["PodDisruptionBudget"] * 2
        + ["HorizontalPodAutoscaler", "NetworkPolicy"]
    ), kinds


def test_the_issuer_is_required() -> None:
    with pytest.raises(helm_python.errors.HelmRenderError, match=r"auth\.issuer is required"):
        render({})


def test_backend_probes_drain_and_identity(objects: dict[tuple[str, str], Any]) -> None:
    deployment = objects[("Deployment", "chat-aichat-backend")]
    pod = deployment["spec"]["template"]["spec"]
    backend = container(deployment)
    assert backend["readinessProbe"]["grpc"] == {"port": 50051, "service": "aichat.readiness"}
    assert backend["livenessProbe"]["grpc"] == {"port": 50051, "service": ""}
    env = {e["name"]: e for e in backend["env"]}
    grace = float(env["AICHAT_SHUTDOWN_GRACE_SECONDS"]["value"])
    assert pod["terminationGracePeriodSeconds"] == grace + 10
    # Unique per replica: the pod's own name.
    assert env["AICHAT_REPLICA_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AICHAT_GRPC_ADDRESS"]["value"] == "0.0.0.0:50051"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER


def test_secrets_are_referenced_never_embedded(objects: dict[tuple[str, str], Any]) -> None:
    assert not [name for kind, name in objects if kind == "Secret"]
    env = {e["name"]: e for e in container(objects[("Deployment", "chat-aichat-backend")])["env"]}
    for name in ("AICHAT_DATABASE_URL", "AICHAT_API_KEY"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
    edge = objects[("Deployment", "chat-aichat-edge")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in edge["volumes"]}
    assert volumes["jwks"]["secret"]["secretName"] == "aichat-jwks"


def test_only_envoy_is_exposed(objects: dict[tuple[str, str], Any]) -> None:
    backend = objects[("Service", "chat-aichat-backend")]["spec"]
    assert backend["clusterIP"] == "None"  # headless: Envoy resolves every replica
    edge = objects[("Service", "chat-aichat-edge")]["spec"]
    assert [p["port"] for p in edge["ports"]] == [8080]
    policy = objects[("NetworkPolicy", "chat-aichat-backend")]["spec"]
    grpc_from = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert grpc_from["app.kubernetes.io/component"] == "edge"


def test_disruption_budgets_and_autoscaler(objects: dict[tuple[str, str], Any]) -> None:
    for part in ("backend", "edge"):
        pdb = objects[("PodDisruptionBudget", f"chat-aichat-{part}")]["spec"]
        labels = objects[("Deployment", f"chat-aichat-{part}")]["spec"]["selector"]
        assert pdb["selector"] == labels and pdb["minAvailable"] == 1
    hpa = objects[("HorizontalPodAutoscaler", "chat-aichat-backend")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "chat-aichat-backend"
    assert hpa["minReplicas"] >= 2
    # The autoscaler owns the replica count; the CPU target needs a request.
    backend = objects[("Deployment", "chat-aichat-backend")]
    assert "replicas" not in backend["spec"]
    assert container(backend)["resources"]["requests"]["cpu"]


def test_config_maps_carry_envoy_yaml_and_the_mcp_servers(
    objects: dict[tuple[str, str], Any],
) -> None:
    envoy = yaml.safe_load(objects[("ConfigMap", "chat-aichat-envoy")]["data"]["envoy.yaml"])
    (cluster,) = [c for c in envoy["static_resources"]["clusters"] if c["name"] == "aichat_backend"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "chat-aichat-backend"
    assert cluster["type"] == "STRICT_DNS"
    text = objects[("ConfigMap", "chat-aichat-envoy")]["data"]["envoy.yaml"]
    assert "{{" not in text
    (provider,) = [
        f["typed_config"]["providers"]["aichat"]
        for f in envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"
        ]["http_filters"]
        if f["name"] == "envoy.filters.http.jwt_authn"
    ]
    assert provider["issuer"] == "https://id.example.com/realms/chat"
    assert provider["audiences"] == ["aichat"]
    assert str(deploy_configs.JWKS_FILE) in text
    servers = json.loads(
        objects[("ConfigMap", "chat-aichat-mcp-servers")]["data"]["mcp-servers.json"]
    )
    assert servers["mcpServers"]["tasks"]["command"] == "/opt/aichat/bin/aichat-backend"
    backend = container(objects[("Deployment", "chat-aichat-backend")])
    env = {e["name"]: e.get("value") for e in backend["env"]}
    mounts = {m["name"]: m["mountPath"] for m in backend["volumeMounts"]}
    assert Path(env["AICHAT_MCP_SERVERS_FILE"]).parent == Path(mounts["mcp-servers"])


def test_the_charts_envoy_yaml_is_current() -> None:
    path = CHART / "files" / "envoy.yaml"
    what, config = deploy_configs.renderings()[path]
    assert path.read_text() == deploy_configs.text(what, config), "stale: run `make gen`"
