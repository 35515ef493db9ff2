"""The bench's peer arms without the peer: its launch config, the install that fails and
says why, the start that fails and says why, and the client that calls it.

LiteLLM itself is never downloaded here (the suite must stay fast and offline): the
install runs pip with no index, and the client is driven against the bench's own fake
upstream, which speaks the same OpenAI wire format a peer's endpoint does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from aichat_devtools import bench_peer, bench_peer_litellm, bench_peer_setup
from aichat_devtools import bench_procs as procs
from aichat_devtools import bench_spawn as spawning
from aichat_devtools.bench_peer import PeerArm
from aichat_devtools.bench_peer_setup import Launch, PeerUnavailable
from aichat_devtools.bench_upstream import ScenarioBehaviour, scenario_text
from aichat_devtools.fake_llm import FakeLLMServer

pytestmark = pytest.mark.timeout(60)

UPSTREAM = "http://127.0.0.1:9/v1"


def test_litellm_launch_is_its_production_setup_against_our_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_TEST_SECRET_TOKEN", "must-not-leak")
    venv = tmp_path / "venv"
    launch = bench_peer_litellm.litellm_launch(venv, tmp_path / "work", UPSTREAM, 4321)

    config = yaml.safe_load(Path(launch.args[launch.args.index("--config") + 1]).read_text())
    assert config == bench_peer_litellm.litellm_config(UPSTREAM)
    (model,) = config["model_list"]
    assert model["model_name"] == bench_peer_setup.MODEL
    assert model["litellm_params"]["model"] == f"openai/{bench_peer_setup.MODEL}"
    assert model["litellm_params"]["api_base"] == UPSTREAM
    assert config["general_settings"]["master_key"].startswith("sk-")  # LiteLLM insists
    assert "database_url" not in config["general_settings"]
    assert config["litellm_settings"]["set_verbose"] is False

    assert launch.args[0] == str(venv / "bin" / "litellm")
    flags = dict(zip(launch.args[1::2], launch.args[2::2], strict=True))
    assert flags["--num_workers"] == "1"
    assert flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "4321"
    assert launch.base_url == "http://127.0.0.1:4321/v1"
    assert launch.ready_url.startswith("http://127.0.0.1:4321/")
    assert launch.api_key == config["general_settings"]["master_key"]

    assert launch.env["LITELLM_LOG"] == "ERROR"
    assert launch.env["LITELLM_MODE"] == "PRODUCTION"
    assert launch.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    # Third-party code gets a bare environment: nothing of ours, no caller secrets.
    assert "BENCH_TEST_SECRET_TOKEN" not in launch.env
    assert "PYTHONPATH" not in launch.env
    assert not any(k.startswith("AICHAT_") for k in launch.env)
    assert launch.env["PATH"].split(":")[0] == str(venv / "bin")


@pytest.mark.timeout(60)
def test_install_that_cannot_reach_a_registry_says_why(tmp_path: Path) -> None:
    # No index at all: pip fails at once, and nothing is downloaded.
    with pytest.raises(PeerUnavailable) as caught:
        bench_peer_litellm.install_litellm(
            tmp_path, env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
        )
    message = str(caught.value)
    assert f"pip install litellm[proxy]=={bench_peer_litellm.LITELLM_VERSION} failed" in message
    assert "litellm" in message.split("failed", 1)[1]  # pip's own reason comes along
    assert not (tmp_path / f"litellm-{bench_peer_litellm.LITELLM_VERSION}" / ".installed").exists()


def test_install_into_a_folder_that_cannot_be_made_says_why(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(PeerUnavailable, match="cannot make"):
        bench_peer_litellm.install_litellm(blocker / "peers")


def test_start_up_hooks_other_than_pips_are_refused(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "distutils-precedence.pth").write_text("")
    assert bench_peer_litellm.unexpected_startup_hooks(tmp_path) == []
    (site / "litellm_init.pth").write_text("import os")
    assert bench_peer_litellm.unexpected_startup_hooks(tmp_path) == ["litellm_init.pth"]


async def test_a_peer_that_exits_at_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def prepare(root: Path, workdir: Path, upstream_v1: str, port: int) -> Launch:
        code = "import sys; print('no such config', file=sys.stderr); sys.exit(3)"
        return Launch(
            arm="P-broken",
            args=[sys.executable, "-c", code],
            env=bench_peer_setup.peer_env(workdir, Path(sys.executable).parent),
            cwd=workdir,
            base_url=f"http://127.0.0.1:{port}/v1",
            ready_url=f"http://127.0.0.1:{port}/health",
            api_key="k",
        )

    monkeypatch.setitem(bench_peer.PREPARE, "broken", prepare)
    children: list[spawning.Child] = []

    def spawn(launch: Launch) -> spawning.Child:
        child = spawning.spawn(
            launch.arm,
            launch.args,
            core=None,
            log_dir=tmp_path / "logs",
            bare_env=launch.env,
            cwd=launch.cwd,
        )
        children.append(child)
        return child

    port = procs.free_port()
    with pytest.raises(PeerUnavailable) as caught:
        await bench_peer.start_peer("broken", tmp_path, tmp_path, UPSTREAM, port, spawn)
    assert "exited before it answered" in str(caught.value)
    assert "no such config" in str(caught.value)
    assert children and not children[0].alive()

    with pytest.raises(PeerUnavailable, match="unknown peer 'nope'"):
        await bench_peer.start_peer("nope", tmp_path, tmp_path, UPSTREAM, port, spawn)


async def test_peer_arm_streams_and_answers_unary_over_the_openai_wire_format() -> None:
    async with FakeLLMServer(default=ScenarioBehaviour(None)) as upstream:
        arm = PeerArm("P-test", upstream.base_url, "sk-test", {"x-bench-peer": "yes"})
        try:
            streamed = await arm.stream(scenario_text(0, 1, 5))
            unary = await arm.unary(scenario_text(0, 0, 3))
        finally:
            await arm.aclose()
    assert streamed.ok, streamed.error
    assert streamed.tokens == 5
    assert streamed.ttft is not None and streamed.ttft > 0
    assert len(streamed.gaps) == streamed.messages - 1
    assert unary.ok, unary.error
    assert unary.latency > 0
    assert len(upstream.requests) == 2
    for request in upstream.requests:
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.headers["x-bench-peer"] == "yes"
    assert upstream.requests[0].body["stream"] is True
    assert not upstream.requests[1].body.get("stream")
