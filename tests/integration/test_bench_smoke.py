"""The benchmark harness runs end to end at toy size, so it never rots.

Only that it completes and writes its report: the numbers of a toy run on a busy test
machine mean nothing, and are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.serve_process import child_env

# A hang guard, not a speed check: the toy run took 48 s beside the suite on this machine
# in a fast week and 110 s in a slow one (the VM's speed halved).
RUN_WITHIN = 300

pytestmark = [pytest.mark.timeout(RUN_WITHIN + 20), pytest.mark.slow]

KEYS = (
    "added_ttft_ms_p50",
    "added_ttft_ms_p99",
    "ttft_ratio_p50",
    "streams_held",
    "cpu_us_per_token",
    "rss_kib_per_stream",
    "unary_rps",
)


def test_toy_run_writes_every_headline_key(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    # A peer that cannot be installed (its folder cannot be made): the run says so and
    # goes on without it. Nothing is downloaded.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aichat_devtools.bench",
            "--toy",
            "--out",
            str(out),
            "--peer",
            "litellm",
            "--peers-dir",
            str(blocker / "peers"),
        ],
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=RUN_WITHIN,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    for key in KEYS:
        assert key in report, key
    assert {"cpu_model", "cores", "python"} <= report["machine"].keys()
    assert {"A", "F", "B-sqlite", "O"} <= report["arms"].keys()
    # Arm O (our OpenAI-compatible API, the peers' client) ran every phase the peers run.
    door = report["arms"]["O"]
    assert door["idle_ttft"]["ttft_ms_p50"] is not None
    assert {"held", "rss", "unary"} <= {k for k, v in door.items() if v}
    assert report["peers_openai"] == {}  # no peer ran here
    assert "P-litellm" not in report["arms"]
    assert report["skipped"]["P-litellm"].startswith("not run: cannot make")
    assert "P-litellm: not run" in proc.stdout  # the printed table says so too
    assert report["peers"] == {}
