"""Talking REST to the service through Envoy the way a browser or curl does."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml

from tests.support.envoy import render_for_test

HERE = Path(__file__).resolve().parent
EXT_AUTHZ_TEMPLATE = HERE / "ext_authz.yaml"
AUTH_SERVER_PORT = 3002  # the literal port of the template; rendering replaces it


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


def status_body(response: httpx2.Response) -> dict[str, Any]:
    """The JSON google.rpc.Status of an error response (asserting it is one)."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.headers,
        response.text,
    )
    body = response.json()
    assert isinstance(body.get("code"), int) and body["code"] != 0, body
    assert isinstance(body.get("message"), str), body
    return body  # type: ignore[no-any-return]


def detail(body: dict[str, Any], type_name: str) -> dict[str, Any] | None:
    for item in body.get("details", []):
        if item.get("@type") == f"type.googleapis.com/google.rpc.{type_name}":
            return item  # type: ignore[no-any-return]
    return None


def reason(body: dict[str, Any]) -> str:
    info = detail(body, "ErrorInfo")
    assert info is not None, body
    return str(info["reason"])


@dataclass
class Event:
    """One Server-Sent Event of a chat stream and when it arrived."""

    data: dict[str, Any]
    at: float

    @property
    def kind(self) -> str:
        # The event's field, whatever JSON's order (it follows field numbers: a
        # reasoningDelta, number 9, comes after the turn's name, number 8).
        return next(k for k in self.data if k not in ("sequence", "turn"))


class SseReader:
    """Reads the `data:` events of an SSE response one at a time, stamping each on arrival.

    Holding the reader keeps the response's line iterator alive: dropping a half-read
    iterator would close the connection, which is a hang-up to the server.
    """

    def __init__(self, response: httpx2.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> Event | None:
        data: list[str] = []
        async for line in self._lines:
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                return Event(json.loads("\n".join(data)), time.monotonic())
        return None


async def read_sse(response: httpx2.Response) -> list[Event]:
    """Every event of an SSE response, to its end."""
    reader = SseReader(response)
    events = []
    while (event := await reader.next()) is not None:
        events.append(event)
    return events


def streamed_text(events: list[Event]) -> str:
    return "".join(e.data["textDelta"]["text"] for e in events if e.kind == "textDelta")


def render_ext_authz(*, backend_port: int, auth_port: int) -> dict[str, Any]:
    """envoy.yaml with the template's ext_authz in place of jwt_authn, for a test run."""
    template = yaml.safe_load(EXT_AUTHZ_TEMPLATE.read_text())
    config = render_for_test(backend_port=backend_port)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    filters = manager["typed_config"]["http_filters"]
    names = [f["name"] for f in filters]
    filters[names.index("envoy.filters.http.jwt_authn")] = template["http_filter"]
    config["static_resources"]["clusters"].append(template["cluster"])
    for node in _dicts(config):
        if node.get("port_value") == AUTH_SERVER_PORT:
            node["port_value"] = auth_port
        if node.get("uri") == f"http://127.0.0.1:{AUTH_SERVER_PORT}":
            node["uri"] = f"http://127.0.0.1:{auth_port}"
    return config


def _dicts(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
