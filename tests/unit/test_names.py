"""Resource names: one module formats and parses them, and refuses every other shape."""

import pytest

from aichat_backend import names
from aichat_backend.errors import InvalidArgument


def test_round_trips() -> None:
    assert names.parse_session(names.session("abc-1")) == "abc-1"
    assert names.parse_message(names.message("s1", "m1")) == names.MessageName("s1", "m1")
    assert names.parse_turn(names.turn("s1", "t1")) == names.TurnName("s1", "t1")
    assert names.parse_tool_server(names.tool_server("tasks")) == "tasks"
    assert names.parse_tool(names.tool("tasks", "add_task")) == names.ToolName("tasks", "add_task")


@pytest.mark.parametrize(
    ("parse", "bad"),
    [
        (names.parse_session, "sessions/"),
        (names.parse_session, "sessions/ABC"),
        (names.parse_session, "sessions/a/messages/b"),
        (names.parse_session, "toolServers/a"),
        (names.parse_session, ""),
        (names.parse_message, "sessions/a/messages/"),
        (names.parse_message, "sessions/a/turns/b"),
        (names.parse_turn, "sessions/a/messages/b"),
        (names.parse_tool_server, "toolServers/a/tools/b"),
        (names.parse_tool_server, "toolServers/a b"),
        (names.parse_tool, "toolServers/a"),
        (names.parse_tool, "toolServers/a/tools/"),
    ],
)
def test_other_shapes_are_refused_with_the_field(parse, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as caught:
        parse(bad, "the_field")
    assert caught.value.reason == "INVALID_RESOURCE_NAME"
    assert caught.value.field == "the_field"


def test_tool_name_is_recognised_without_error() -> None:
    assert names.is_tool_name("toolServers/a/tools/b")
    assert not names.is_tool_name("a__b")
