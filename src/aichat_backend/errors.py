"""Domain errors: what went wrong, in words the API layer can map to a status.

The engine, store, providers and tools raise these; only ``api/errors.py`` knows how they
become a ``google.rpc.Status``. Each carries a machine-readable ``reason`` (the ErrorInfo
reason clients switch on) and a message safe to show to the caller: never exception text
from a library, a SQL statement or a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from aichat_backend.reasons import Reason

DOMAIN = "aichat.example.com"


class ErrorKind(enum.Enum):
    """The class of failure; maps one-to-one to a gRPC status code at the API edge."""

    CANCELLED = enum.auto()
    INVALID_ARGUMENT = enum.auto()
    DEADLINE_EXCEEDED = enum.auto()
    NOT_FOUND = enum.auto()
    ALREADY_EXISTS = enum.auto()
    PERMISSION_DENIED = enum.auto()
    RESOURCE_EXHAUSTED = enum.auto()
    FAILED_PRECONDITION = enum.auto()
    ABORTED = enum.auto()
    UNIMPLEMENTED = enum.auto()
    INTERNAL = enum.auto()
    UNAVAILABLE = enum.auto()
    UNAUTHENTICATED = enum.auto()


class AichatError(Exception):
    """Base of every error the service reports on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL
    default_reason: Reason = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after
        # For INVALID_ARGUMENT: which request field was wrong (google.rpc.BadRequest).
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(AichatError):
    kind = ErrorKind.INVALID_ARGUMENT
    default_reason = Reason.INVALID_ARGUMENT


class NotFound(AichatError):
    kind = ErrorKind.NOT_FOUND
    default_reason = Reason.NOT_FOUND


class AlreadyExists(AichatError):
    kind = ErrorKind.ALREADY_EXISTS
    default_reason = Reason.ALREADY_EXISTS


class FailedPrecondition(AichatError):
    kind = ErrorKind.FAILED_PRECONDITION
    default_reason = Reason.FAILED_PRECONDITION


class Aborted(AichatError):
    kind = ErrorKind.ABORTED
    default_reason = Reason.ABORTED


class ResourceExhausted(AichatError):
    kind = ErrorKind.RESOURCE_EXHAUSTED
    default_reason = Reason.RESOURCE_EXHAUSTED


class Unavailable(AichatError):
    kind = ErrorKind.UNAVAILABLE
    default_reason = Reason.UNAVAILABLE


class DeadlineExceeded(AichatError):
    kind = ErrorKind.DEADLINE_EXCEEDED
    default_reason = Reason.DEADLINE_EXCEEDED


class Unauthenticated(AichatError):
    kind = ErrorKind.UNAUTHENTICATED
    default_reason = Reason.UNAUTHENTICATED


class PermissionDenied(AichatError):
    kind = ErrorKind.PERMISSION_DENIED
    default_reason = Reason.PERMISSION_DENIED


class Unimplemented(AichatError):
    kind = ErrorKind.UNIMPLEMENTED
    default_reason = Reason.UNIMPLEMENTED


class Cancelled(AichatError):
    kind = ErrorKind.CANCELLED
    default_reason = Reason.CANCELLED


class Internal(AichatError):
    kind = ErrorKind.INTERNAL
    default_reason = Reason.INTERNAL


class DatabaseUnavailable(Unavailable):
    """The database could not be reached or did not answer in time."""

    default_reason = Reason.DATABASE_UNAVAILABLE
