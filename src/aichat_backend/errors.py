"""Domain errors: what went wrong, in words the API layer can map to a status.

The engine, store, providers and tools raise these; only ``api/errors.py`` knows how they
become a ``google.rpc.Status``. Each carries a machine-readable ``reason`` (the ErrorInfo
reason clients switch on) and a message safe to show to the caller: never exception text
from a library, a SQL statement or a secret.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

DOMAIN = "aichat.example.com"


class ErrorKind(enum.Enum):
    """The class of failure; maps one-to-one to a gRPC status code at the API edge."""

    CANCELLED = "CANCELLED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class AichatError(Exception):
    """Base of every error the service reports on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after
        # For INVALID_ARGUMENT: which request field was wrong (google.rpc.BadRequest).
        self.field = field

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(AichatError):
    kind = ErrorKind.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFound(AichatError):
    kind = ErrorKind.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(AichatError):
    kind = ErrorKind.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(AichatError):
    kind = ErrorKind.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Aborted(AichatError):
    kind = ErrorKind.ABORTED
    default_reason = "ABORTED"


class ResourceExhausted(AichatError):
    kind = ErrorKind.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(AichatError):
    kind = ErrorKind.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(AichatError):
    kind = ErrorKind.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class Unauthenticated(AichatError):
    kind = ErrorKind.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(AichatError):
    kind = ErrorKind.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unimplemented(AichatError):
    kind = ErrorKind.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"


class Cancelled(AichatError):
    kind = ErrorKind.CANCELLED
    default_reason = "CANCELLED"


class Internal(AichatError):
    kind = ErrorKind.INTERNAL
    default_reason = "INTERNAL"


class DatabaseUnavailable(Unavailable):
    """The database could not be reached or did not answer in time."""

    default_reason = "DATABASE_UNAVAILABLE"
