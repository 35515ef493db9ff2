"""Who is calling and which request this is, for the duration of one RPC (contextvars).

The interceptor sets these context variables; servicers read them. Nothing below the
API layer touches them: the engine receives the user id as an argument.
"""

from __future__ import annotations

import contextvars

from aichat_backend.errors import Internal

_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("aichat_user", default=None)
_request: contextvars.ContextVar[str] = contextvars.ContextVar("aichat_request", default="")
_method: contextvars.ContextVar[str] = contextvars.ContextVar("aichat_method", default="")


def current_user() -> str:
    user = _user.get()
    if user is None:  # the interceptor guarantees one; reaching here is a wiring bug
        raise Internal("no caller identity on this request")
    return user


def current_request_id() -> str:
    return _request.get()


def current_method() -> str:
    return _method.get()


_headers: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "aichat_headers", default=None
)


def bind(user: str | None, request_id: str, method: str) -> None:
    _user.set(user)
    _request.set(request_id)
    _method.set(method)
    _headers.set([])


def add_response_header(key: str, value: str) -> None:
    """Initial metadata to send with the response (the interceptor sends it)."""
    headers = _headers.get()
    if headers is not None:
        headers.append((key, value))


def response_headers() -> list[tuple[str, str]]:
    return list(_headers.get() or ())


def peek_user() -> str | None:
    return _user.get()


# The call's metadata as the edge sent it, for the few trusted headers besides the user
# id (the admin role, an API key id): read where they are used, not by the interceptor.
_metadata: contextvars.ContextVar[tuple[tuple[str, str | bytes], ...]] = contextvars.ContextVar(
    "aichat_metadata", default=()
)


def bind_metadata(metadata: tuple[tuple[str, str | bytes], ...]) -> None:
    _metadata.set(metadata)


def trusted_header(name: str) -> list[str]:
    """Every value of one metadata key (lower-case name) on this call."""
    return [v for k, v in _metadata.get() if k.lower() == name and isinstance(v, str)]
