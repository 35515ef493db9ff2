"""Model-facing names and the effective approval policy of each tool."""

from __future__ import annotations

import re

import mcp_types as types
import pytest

from aichat_backend.tools.base import MODEL_NAME_PATTERN, ApprovalPolicy
from aichat_backend.tools.config import parse_servers
from aichat_backend.tools.naming import model_names, plain_name
from aichat_backend.tools.pool import tool_info

pytestmark = pytest.mark.timeout(10)
VALID = re.compile(MODEL_NAME_PATTERN)


def test_plain_names_are_kept() -> None:
    assert plain_name("tasks", "add_task") == "tasks__add_task"
    assert model_names([("tasks", "add_task")]) == {("tasks", "add_task"): "tasks__add_task"}


def test_invalid_characters_and_long_names_become_valid() -> None:
    keys = [
        ("fs", "read.file"),
        ("fs", "read file"),
        ("fs", "read/file"),
        ("srv", "x" * 200),
        ("srv", "x" * 201),
        ("émoji", "tool✓"),
    ]
    names = model_names(keys)
    assert len(set(names.values())) == len(keys)
    for name in names.values():
        assert VALID.match(name), name
    assert names[("fs", "read.file")].startswith("fs__read_file_")


def test_colliding_names_are_disambiguated() -> None:
    keys = [("a__b", "c"), ("a", "b__c")]
    names = model_names(keys)
    assert names[("a__b", "c")] != names[("a", "b__c")]
    assert all(VALID.match(n) for n in names.values())


def test_names_do_not_depend_on_order() -> None:
    keys = [("a__b", "c"), ("a", "b__c"), ("fs", "read.file"), ("t", "ok")]
    assert model_names(keys) == model_names(reversed(keys))


def _tool(name: str, annotations: types.ToolAnnotations | None) -> types.Tool:
    return types.Tool(name=name, input_schema={"type": "object"}, annotations=annotations)


READ_ONLY = types.ToolAnnotations(read_only_hint=True)
WRITES = types.ToolAnnotations(read_only_hint=False, destructive_hint=False)
DESTRUCTIVE = types.ToolAnnotations(destructive_hint=True)


def _server(**options: object) -> object:
    [config] = parse_servers({"mcpServers": {"s": {"command": "x", **options}}}, environ={})
    return config


@pytest.mark.parametrize(
    ("options", "tool_name", "annotations", "asks"),
    [
        ({}, "read", READ_ONLY, False),  # auto: read-only runs at once
        ({}, "write", WRITES, True),  # auto: not read-only asks
        ({}, "drop", DESTRUCTIVE, True),
        ({}, "unknown", None, True),  # no annotations: assume the worst
        ({"approval": "always"}, "read", READ_ONLY, True),
        ({"approval": "never"}, "drop", DESTRUCTIVE, False),
        ({"approval": "never", "tool_approval": {"drop": "always"}}, "drop", DESTRUCTIVE, True),
        ({"approval": "never", "tool_approval": {"drop": "always"}}, "write", WRITES, False),
        ({"approval": "always", "tool_approval": {"read": "auto"}}, "read", READ_ONLY, False),
        ({"tool_approval": {"read": "always"}}, "read", READ_ONLY, True),
    ],
)
def test_approval_policy_resolution(
    options: dict[str, object],
    tool_name: str,
    annotations: types.ToolAnnotations | None,
    asks: bool,
) -> None:
    info = tool_info(_server(**options), _tool(tool_name, annotations), f"s__{tool_name}")  # type: ignore[arg-type]
    assert (info.approval_reason() is not None) is asks


def test_annotations_follow_the_spec_defaults() -> None:
    config = _server()
    bare = tool_info(config, _tool("t", None), "s__t")  # type: ignore[arg-type]
    assert not bare.annotations.read_only
    assert bare.annotations.destructive  # spec default when not read-only
    writes = tool_info(config, _tool("w", WRITES), "s__w")  # type: ignore[arg-type]
    assert not writes.annotations.destructive
    reads = tool_info(config, _tool("r", READ_ONLY), "s__r")  # type: ignore[arg-type]
    assert reads.annotations.read_only and not reads.annotations.destructive
    assert reads.approval is ApprovalPolicy.AUTO
