"""Every RPC of aichat.v1, fed garbage: answers are typed errors, never UNKNOWN or a leak.

The RPC list comes from the generated descriptors, so a new RPC (or a new *_service
file) is covered without touching this file. For each one we send undecodable bytes,
an empty request and requests filled with absurd values (path traversal in names, huge
strings, extreme numbers, unknown enum values, control characters), always with a valid
identity, on SQLite and PostgreSQL.

Every error must carry a google.rpc.Status with an ErrorInfo, say nothing of our
internals, and be neither UNKNOWN nor INTERNAL: bad input is the caller's problem, so an
INTERNAL here means an exception nobody planned for. UNIMPLEMENTED is fine for an RPC
that has not landed, with reason NOT_YET_AVAILABLE.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aichat.v1
import grpc
import pytest
from aichat.v1 import resources_pb2 as rpb
from aichat.v1 import session_service_pb2 as spb
from google.protobuf import descriptor as pd
from google.protobuf import field_mask_pb2, message_factory, struct_pb2
from google.protobuf import message as pm
from google.rpc import error_details_pb2

from tests.support.grpc_helpers import error_info, md, rich_status
from tests.support.server import Running, make_settings, running_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def server(database_url: str, tmp_path: Any) -> AsyncIterator[Running]:
    """conftest's ``server`` (SQLite and PostgreSQL), with the per-user rate limit off:
    the sweep sends hundreds of calls as one user, and a RESOURCE_EXHAUSTED for going
    too fast would hide the answer to the request itself."""
    settings = make_settings(database_url, data_dir=tmp_path, rate_rps=0)
    async with running_server(settings) as running:
        yield running


GARBAGE = [
    b"\xff\xff\xff\xff",  # field 0 / an invalid wire type
    b"\x0a\xff\xff\xff\xff\x0f",  # field 1, length-delimited, length far past the end
    b"\x08",  # field 1 varint, truncated
    b"\x0b\x10\x01",  # a group start that never ends
]
LEAK_MARKERS = ("Traceback", "Exception", 'File "', "sqlalchemy", "asyncpg", "sqlite3")


@dataclass(frozen=True)
class Rpc:
    path: str
    request: type[pm.Message]
    server_streaming: bool

    def __str__(self) -> str:
        return self.path


def all_rpcs() -> list[Rpc]:
    """Every unary-request RPC declared in any aichat.v1 *_pb2 module."""
    rpcs: list[Rpc] = []
    for info in pkgutil.iter_modules(aichat.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"aichat.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert not method.client_streaming, "add client streaming support here"
                rpcs.append(
                    Rpc(
                        path=f"/{service.full_name}/{method.name}",
                        request=message_factory.GetMessageClass(method.input_type),
                        server_streaming=method.server_streaming,
                    )
                )
    return sorted(rpcs, key=lambda r: r.path)


RPCS = all_rpcs()


def test_descriptor_discovery_finds_every_service() -> None:
    services = {r.path.split("/")[1] for r in RPCS}
    assert {
        "aichat.v1.SessionService",
        "aichat.v1.ChatService",
        "aichat.v1.ToolService",
    } <= services
    assert len(RPCS) >= 15


# --- absurd requests, built from the descriptors ----------------------------------------


@dataclass(frozen=True)
class Absurd:
    label: str
    text: str
    number: str  # "neg", "min" or "max"
    real: float
    enum: int
    repeat: int


ABSURD = [
    Absurd("traversal", "sessions/../../etc", "neg", -1.0, 999, 3),
    Absurd("other-shapes", "toolServers/../tools/..%2F..", "min", math.nan, -7, 2),
    Absurd("nested-name", "sessions/a/messages/../../../b", "max", math.inf, 2**31 - 1, 1),
    Absurd("control", "\x00\u202e\ufeff\U0001f642 '; DROP TABLE sessions; --", "neg", -1e308, 5, 3),
    Absurd("huge", "x" * 300_000, "max", 1e308, 1, 2),
    Absurd("many", "a", "min", -0.0, 3, 5_000),
]

_INT_RANGE = {
    pd.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    pd.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    pd.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    pd.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    pd.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    pd.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    pd.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    pd.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    pd.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    pd.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: pd.FieldDescriptor, a: Absurd) -> Any:
    t = field.type
    if t == pd.FieldDescriptor.TYPE_STRING:
        return a.text
    if t == pd.FieldDescriptor.TYPE_BYTES:
        return a.text.encode("utf-8", "surrogatepass") + b"\xff\x00"
    if t == pd.FieldDescriptor.TYPE_BOOL:
        return True
    if t in (pd.FieldDescriptor.TYPE_DOUBLE, pd.FieldDescriptor.TYPE_FLOAT):
        if t == pd.FieldDescriptor.TYPE_FLOAT and math.isfinite(a.real) and abs(a.real) > 3e38:
            return math.copysign(math.inf, a.real)
        return a.real
    if t == pd.FieldDescriptor.TYPE_ENUM:
        return a.enum  # proto3 enums are open: unknown numbers travel as they are
    low, high = _INT_RANGE[t]
    if a.number == "neg":
        return -1 if low < 0 else high
    return low if a.number == "min" and low < 0 else high


def _fill_field(msg: pm.Message, field: pd.FieldDescriptor, a: Absurd, depth: int) -> None:
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    container = getattr(msg, field.name)
    if is_map:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        for i in range(min(a.repeat, 100)):
            key = _scalar(key_field, a)
            key = f"{key}{i}" if isinstance(key, str) else key
            if value_field.message_type is not None:
                fill(container[key], a, depth + 1)
            else:
                container[key] = _scalar(value_field, a)
    elif field.is_repeated:
        if field.message_type is not None:
            for _ in range(min(a.repeat, 3)):
                fill(container.add(), a, depth + 1)
        else:
            container.extend([_scalar(field, a)] * a.repeat)
    elif field.message_type is not None:
        fill(container, a, depth + 1)
    else:
        setattr(msg, field.name, _scalar(field, a))


def fill(msg: pm.Message, a: Absurd, depth: int = 0) -> pm.Message:
    """Set every field of ``msg`` (recursively, a few levels deep) to an absurd value."""
    if msg.DESCRIPTOR.full_name == "google.protobuf.Struct":
        assert isinstance(msg, struct_pb2.Struct)
        finite = a.real if math.isfinite(a.real) else 0
        msg.update({a.text[:1000]: a.text, "n": [finite, None, {"deep": [[[a.text[:100]]]]}]})
        return msg
    if depth > 3:
        return msg
    for field in msg.DESCRIPTOR.fields:
        _fill_field(msg, field, a, depth)
    return msg


# Fields that name a resource get a real, valid name in the base request, so validation
# of the other fields is reached (and each of them is then made absurd on its own).
NAME_FIELDS = ("name", "parent", "session")


def valid_base(rpc: Rpc, session_name: str) -> pm.Message:
    request = rpc.request()
    tool_name = "toolServers/nowhere/tools/nothing"
    for path, field in leaves(request.DESCRIPTOR):
        if field.name in NAME_FIELDS and field.type == pd.FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                continue
            target = _walk(request, path[:-1])
            is_tool = "Tool" in target.DESCRIPTOR.name and "Call" in target.DESCRIPTOR.name
            setattr(target, field.name, tool_name if is_tool else session_name)
    return request


def leaves(
    desc: pd.Descriptor, prefix: tuple[str, ...] = (), depth: int = 0
) -> list[tuple[tuple[str, ...], pd.FieldDescriptor]]:
    """Field paths down to scalars, repeated fields and well-known types (2 levels)."""
    out: list[tuple[tuple[str, ...], pd.FieldDescriptor]] = []
    for f in desc.fields:
        nested = (
            f.message_type is not None
            and not f.is_repeated
            and not f.message_type.full_name.startswith("google.")
            and depth < 2
        )
        if nested:
            out += leaves(f.message_type, (*prefix, f.name), depth + 1)
        else:
            out.append(((*prefix, f.name), f))
    return out


def _walk(msg: pm.Message, path: tuple[str, ...]) -> pm.Message:
    for name in path:
        msg = getattr(msg, name)
    return msg


def one_absurd_field(
    base: pm.Message, path: tuple[str, ...], field: pd.FieldDescriptor, a: Absurd
) -> pm.Message:
    request = type(base)()
    request.CopyFrom(base)
    target = _walk(request, path[:-1])
    target.ClearField(field.name)
    _fill_field(target, field, a, depth=2)
    return request


# --- calling an RPC with raw bytes and checking the answer --------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    error: grpc.aio.AioRpcError | None


async def call_raw(server: Running, rpc: Rpc, payload: bytes, user: str) -> Outcome:
    """One call with identity serializers: the bytes go out exactly as given."""
    try:
        if rpc.server_streaming:
            stream = server.channel.unary_stream(rpc.path)(payload, metadata=md(user), timeout=30)
            async for _ in stream:
                pass
        else:
            await server.channel.unary_unary(rpc.path)(payload, metadata=md(user), timeout=30)
    except grpc.aio.AioRpcError as err:
        return Outcome(err.code(), err)
    return Outcome(grpc.StatusCode.OK, None)


def problems_with(rpc: Rpc, what: str, outcome: Outcome) -> list[str]:
    """Everything wrong with one answer (empty when it is acceptable)."""
    where = f"{rpc} [{what}]"
    err = outcome.error
    if err is None:
        return []
    found: list[str] = []
    if outcome.code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        found.append(f"{where}: {outcome.code.name} ({err.details()!r})")
    try:
        status = rich_status(err)
        info = error_info(err)
    except AssertionError as exc:
        return [*found, f"{where}: {outcome.code.name} without google.rpc.Status/ErrorInfo: {exc}"]
    if status.code != outcome.code.value[0]:
        found.append(f"{where}: Status.code {status.code} != {outcome.code.name}")
    if not info.reason or not info.domain:
        found.append(f"{where}: ErrorInfo without reason/domain: {info}")
    for text in (err.details() or "", status.message):
        leaked = [m for m in LEAK_MARKERS if m in text]
        if leaked:
            found.append(f"{where}: message leaks {leaked}: {text[:200]!r}")
    if outcome.code == grpc.StatusCode.UNIMPLEMENTED and info.reason != "NOT_YET_AVAILABLE":
        found.append(f"{where}: UNIMPLEMENTED with reason {info.reason}")
    return found


async def _still_healthy(server: Running, user: str) -> None:
    list_sessions = next(r for r in RPCS if r.path.endswith("/ListSessions"))
    outcome = await call_raw(server, list_sessions, b"", user)
    assert outcome.code == grpc.StatusCode.OK, outcome.error


async def _each_rpc(
    server: Running,
    user: str,
    payloads: Callable[[Rpc], list[tuple[str, bytes]]],
    check: Callable[[Rpc, str, Outcome], list[str]],
) -> None:
    problems: list[str] = []
    for rpc in RPCS:
        for what, payload in payloads(rpc):
            outcome = await call_raw(server, rpc, payload, user)
            problems += check(rpc, what, outcome)
    assert not problems, "\n".join(problems)
    await _still_healthy(server, user)


async def test_undecodable_bytes_are_malformed_request(server: Running, user: str) -> None:
    def check(rpc: Rpc, what: str, outcome: Outcome) -> list[str]:
        where = f"{rpc} [{what}]"
        found = problems_with(rpc, what, outcome)
        if outcome.error is None:
            return [*found, f"{where}: garbage bytes answered OK"]
        if outcome.code != grpc.StatusCode.INVALID_ARGUMENT:
            found.append(f"{where}: {outcome.code.name}, want INVALID_ARGUMENT")
        elif error_info(outcome.error).reason != "MALFORMED_REQUEST":
            found.append(f"{where}: reason {error_info(outcome.error).reason}")
        return found

    def payloads(rpc: Rpc) -> list[tuple[str, bytes]]:
        raws = list(GARBAGE)
        strings = [
            f
            for f in rpc.request.DESCRIPTOR.fields
            if f.type == pd.FieldDescriptor.TYPE_STRING and not f.is_repeated
        ]
        if strings:  # a string field holding invalid UTF-8 (proto3 refuses to decode it)
            raws.append(bytes([strings[0].number << 3 | 2, 2, 0xC3, 0x28]))
        # Guard the premise: each payload really fails to decode as this request type.
        for raw in raws:
            with pytest.raises(Exception):  # noqa: B017 - DecodeError or its upb cousin
                rpc.request.FromString(raw)
        return [(raw.hex(), raw) for raw in raws]

    await _each_rpc(server, user, payloads, check)


async def test_empty_requests_get_typed_answers(server: Running, user: str) -> None:
    await _each_rpc(server, user, lambda rpc: [("empty", b"")], problems_with)


# Text fields that a database may refuse to store (PostgreSQL text cannot hold NUL).
NUL_FIELDS = ("session.display_name", "session.model", "session.system_prompt", "request_id")


async def test_absurd_values_get_typed_answers(server: Running, user: str) -> None:
    """Every field absurd at once, then each field absurd on its own in an otherwise valid
    request (real session name), so checks deep inside each RPC are reached too."""
    limit = server.app.settings.max_message_bytes
    created = await server.sessions.CreateSession(
        spb.CreateSessionRequest(session=rpb.Session(display_name="target")), metadata=md(user)
    )

    def payloads(rpc: Rpc) -> list[tuple[str, bytes]]:
        out = [(f"all:{a.label}", fill(rpc.request(), a)) for a in ABSURD]
        base = valid_base(rpc, created.name)
        for path, field in leaves(rpc.request.DESCRIPTOR):
            for a in ABSURD:
                out.append((f"{'.'.join(path)}:{a.label}", one_absurd_field(base, path, field, a)))
        raws = [(label, msg.SerializeToString()) for label, msg in out]
        for label, raw in raws:
            assert len(raw) < limit, (rpc, label, len(raw))  # stay within what grpc accepts
        return raws

    await _each_rpc(server, user, payloads, problems_with)


# --- regressions: bugs this sweep found (fixed in 87fe5f7), pinned one test each ------


@pytest.mark.parametrize(
    "paths", [["x" * 100_000], [f"p{i}" for i in range(5_000)]], ids=["one-long-path", "many-paths"]
)
async def test_huge_update_mask_gets_invalid_argument(
    server: Running, user: str, paths: list[str]
) -> None:
    """The error once echoed every path: trailers past the client's 16 KiB limit turned it
    into RESOURCE_EXHAUSTED 'Stream removed' with no google.rpc.Status."""
    created = await server.sessions.CreateSession(spb.CreateSessionRequest(), metadata=md(user))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.UpdateSession(
            spb.UpdateSessionRequest(
                session=rpb.Session(name=created.name),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=md(user),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "INVALID_UPDATE_MASK"


@pytest.mark.parametrize("field", NUL_FIELDS)
async def test_nul_character_is_invalid_argument(server: Running, user: str, field: str) -> None:
    """PostgreSQL once answered INTERNAL (CharacterNotInRepertoireError) while SQLite
    stored the NUL: both backends must refuse it the same way, naming the field."""
    if field == "request_id":
        request = spb.CreateSessionRequest(request_id="a\x00b")
    else:
        name = field.split(".", 1)[1]
        request = spb.CreateSessionRequest(session=rpb.Session(**{name: "a\x00b"}))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.CreateSession(request, metadata=md(user))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert error_info(err.value).reason in ("INVALID_FIELD", "INVALID_REQUEST_ID")
    violations = [
        v.field
        for d in rich_status(err.value).details
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)
        for v in _unpack_bad_request(d).field_violations
    ]
    assert violations == [field]


def _unpack_bad_request(detail: Any) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    return bad


async def test_long_model_name_is_invalid_argument(server: Running, user: str) -> None:
    """The column holds 200 characters: PostgreSQL once answered INTERNAL
    (StringDataRightTruncationError) while SQLite stored the longer name."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await server.sessions.CreateSession(
            spb.CreateSessionRequest(session=rpb.Session(model="m" * 201)), metadata=md(user)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    assert error_info(err.value).reason == "INVALID_FIELD"
