"""What every call knows of itself from its metadata: request id and the caller's identity.

Read the same way for gRPC calls (the interceptor) and the OpenAI-compatible HTTP API,
whose headers Envoy sets exactly as it sets a gRPC call's metadata.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from aichat_backend.errors import AichatError, Unauthenticated
from aichat_backend.reasons import Reason

# Health and reflection answer anyone: load balancers and grpcurl carry no user.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Call:
    """What the interceptor knows about one RPC."""

    __slots__ = ("error", "kind", "method", "open", "request_id", "start", "user")

    def __init__(self, method: str, metadata: tuple[Any, ...], auth_header: str, max_user: int):
        self.method = method
        self.kind = "unary"
        self.start = time.perf_counter()
        self.request_id = ""
        self.user: str | None = None
        self.error: AichatError | None = None
        values: dict[str, list[str]] = {}
        for key, value in metadata or ():
            values.setdefault(key.lower(), []).append(value if isinstance(value, str) else "")
        supplied = values.get("x-request-id", [""])[0]
        self.request_id = supplied if REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
        self.open = method.startswith(OPEN_SERVICES)
        if not self.open:
            users = values.get(auth_header, [])
            if len(users) != 1:
                self.error = Unauthenticated(
                    f"exactly one {auth_header} metadata value is required"
                    + ("" if not users else f", got {len(users)}"),
                    reason=Reason.MISSING_IDENTITY if not users else Reason.AMBIGUOUS_IDENTITY,
                )
            else:
                user = users[0]
                # Never trimmed: " victim " and "victim" would name one user.
                if (
                    not user.strip()
                    or user != user.strip()
                    or len(user) > max_user
                    or not user.isprintable()
                ):
                    self.error = Unauthenticated(
                        f"{auth_header} must be 1-{max_user} printable characters, without "
                        "leading or trailing spaces",
                        reason=Reason.INVALID_IDENTITY,
                    )
                else:
                    self.user = user
