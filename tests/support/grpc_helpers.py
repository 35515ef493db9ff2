"""Small helpers for talking to the server under test the way a client would."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def md(user: str | None, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    base = (("x-user-id", user),) if user is not None else ()
    return (*base, *extra)


def rich_status(err: grpc.RpcError) -> status_pb2.Status:
    """The google.rpc.Status a failed call carried in its trailers."""
    trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no {STATUS_DETAILS_KEY} in trailers of {err!r}")


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(err).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("status has no ErrorInfo")


def retry_info(err: grpc.RpcError) -> error_details_pb2.RetryInfo | None:
    for detail in rich_status(err).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info
    return None


async def joined_body(call: Any) -> httpbody_pb2.HttpBody:
    """A streamed google.api.HttpBody (ExportSession) as one: first content type, all data."""
    chunks = [chunk async for chunk in call]
    return httpbody_pb2.HttpBody(
        content_type=chunks[0].content_type if chunks else "",
        data=b"".join(c.data for c in chunks),
    )
