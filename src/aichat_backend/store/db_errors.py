"""Which driver errors mean "the database is unreachable" and which mean "bad data".

``Database`` turns the first into ``DatabaseUnavailable`` and the second into
``InvalidArgument``; anything else is a bug and propagates as it is.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, TimeoutError, OSError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        # asyncpg reports a dropped or timed-out connection with its own exception types.
        orig = type(exc.orig).__name__ if exc.orig is not None else ""
        return orig in {
            "ConnectionDoesNotExistError",
            "InterfaceError",
            "ConnectionFailureError",
            "CannotConnectNowError",
            "TooManyConnectionsError",
            "QueryCanceledError",
        }
    return False


def is_bad_data(exc: BaseException) -> bool:
    """SQLSTATE class 22 (data exception): NUL in text, a string too long, and the like."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate is None:
        sqlstate = getattr(getattr(exc.orig, "__cause__", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")
