"""The README and docs/ are what a newcomer follows: every ```sh block in them runs here,
as written (the README's first, then each docs/*.md in name order).

One real `make run` stack (`aichat-dev run`: fake model, backend, Envoy) on free ports; the
blocks run in order in one bash (variables such as TOKEN carry over, as in a terminal) from a
directory that looks like the checkout. The only change made to their text is the ports
(tests never use fixed ones). Each block must succeed — `set -e`, and curl with
``--fail-with-body`` so an HTTP error fails it — and the blocks listed in EXPECTED must say
what the README says they say. A new ```sh block anywhere in them runs here too, and none
may leave a file in the checkout (scratch files go to a temporary directory).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from aichat_devtools.dev_run import FAKE_TOKEN_DELAY_MS
from tests.support.dev_stack import (
    BANNER,
    ROOT,
    Ports,
    dev_run,
    stack_env,
    workdir_like_checkout,
)
from tests.support.envoy import CONFIG

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# What `make run` itself keeps in the checkout; the examples may add nothing to it.
CHECKOUT_ENTRIES = {".venv", "gen", "var"}
MARK = "@@readme-block"

# A line of a block that names it → what its output must contain.
EXPECTED: dict[str, list[str]] = {
    "127.0.0.1:50051 list": ["aichat.v1.ChatService", "aichat.v1.SessionService"],
    "aichat.v1.SessionService/CreateSession": [
        '"name": "sessions/tuning"',
        "TURN_OUTCOME_COMPLETED",
    ],
    "TOKEN=$(.venv/bin/aichat-dev token": [
        '"name":"sessions/hello"',
        '"turnEnded":{"outcome":"TURN_OUTCOME_COMPLETED"',
        '{"status":"SERVING"}',
    ],
    "notes.txt": ['"attachments":[{"filename":"notes.txt"', "water the plants"],
    "127.0.0.1:8080 list": ["aichat.v1.ChatService", '"name": "sessions/hello"'],
    "add task water the plants": [
        "TURN_OUTCOME_AWAITING_APPROVAL",
        "TOOL_CALL_STATE_SUCCEEDED",
        '"turnEnded":{"outcome":"TURN_OUTCOME_COMPLETED"',
    ],
    "aichat-backend health --address": ["SERVING"],
    "sessionId=branches": [
        '"turnEnded":{"outcome":"TURN_OUTCOME_COMPLETED"',
        '"siblingIndex":1,"siblingCount":2',
        '"activeMessage":"sessions/branches/messages/',
        '"name":"sessions/branches-copy"',
    ],
    # docs/deployment.md
    "aichat-backend web-config": ['"appName": "Galaxy Chat"'],
    "openapi.json": ['{"status":"SERVING"}', '"swagger": "2.0"', "SERVING"],
    "/v1/chat/completions": [
        '"object":"list"',
        '"object":"chat.completion"',
        '"aichat":{"session":"sessions/hello"',
        "data: [DONE]",
    ],
}


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


def script(blocks: list[str], ports: Ports) -> str:
    lines = [
        "set -euo pipefail",
        # An HTTP error must fail the block, as a newcomer would see it fail.
        'curl() { command curl --fail-with-body "$@"; }',
    ]
    for index, block in enumerate(blocks):
        block = block.replace("127.0.0.1:50051", f"127.0.0.1:{ports.grpc}")
        block = block.replace("127.0.0.1:8080", f"127.0.0.1:{ports.envoy}")
        # A leading newline: curl's JSON answers end without one.
        lines += [f"printf '\\n{MARK} {index}\\n'", block]
    lines.append(f"printf '\\n{MARK} end\\n'")
    return "\n".join(lines)


def test_every_shell_block_of_the_readme_and_docs_runs_as_written(tmp_path: Path) -> None:
    blocks = [b for doc in [README, *DOCS] for b in sh_blocks(doc.read_text())]
    for needle in EXPECTED:
        assert sum(needle in b for b in blocks) == 1, f"docs: no one block with {needle!r}"
    ports = Ports.pick()
    work = workdir_like_checkout(tmp_path / "checkout")
    with dev_run(work, stack_env(ports)) as run:
        run.wait_for(BANNER)
        done = subprocess.run(
            ["bash", "-c", script(blocks, ports)],
            cwd=work,
            env=stack_env(ports),
            capture_output=True,
            text=True,
            timeout=180,
        )
    left = {p.name for p in work.iterdir()} - CHECKOUT_ENTRIES
    outputs = re.split(rf"\n{MARK} (\S+)\n", done.stdout)[1:]
    by_block = dict(zip(outputs[::2], outputs[1::2], strict=True))
    if done.returncode != 0 or "end" not in by_block:
        failed = max((int(k) for k in by_block if k.isdigit()), default=0)
        raise AssertionError(
            f"README block {failed} failed (exit {done.returncode}):\n{blocks[failed]}\n"
            f"--- its output:\n{by_block.get(str(failed), '')}\n--- stderr:\n{done.stderr[-3000:]}"
        )
    assert not left, f"the examples left files in the checkout: {sorted(left)}"
    for index, block in enumerate(blocks):
        for needle, wanted in EXPECTED.items():
            if needle in block:
                for text in wanted:
                    assert text in by_block[str(index)], (
                        f"README block {index} should print {text!r}:\n{block}\n"
                        f"--- it printed:\n{by_block[str(index)][-3000:]}"
                    )


def test_the_readme_states_envoys_clock_skew() -> None:
    text = yaml.safe_load(CONFIG.read_text())
    filters = text["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]["http_filters"]
    jwt = next(f for f in filters if f["name"] == "envoy.filters.http.jwt_authn")
    skew = jwt["typed_config"]["providers"]["aichat"]["clock_skew_seconds"]
    assert f"accepted up to {skew} s after its `exp`" in README.read_text()


def test_the_readme_says_how_the_demo_behaves() -> None:
    """Issue 30: a newcomer could not tell why answers trickled in, nor that CallTool asks
    nothing before it runs a tool that changes things."""
    text = " ".join(README.read_text().split())
    assert f"at {FAKE_TOKEN_DELAY_MS} ms a token" in text
    assert "`ToolService.CallTool`, runs at once whatever it does" in text
