"""Who may call the operator API: an admin role forwarded by the edge, or a listed user id.

The role arrives the way the user id does: Envoy removes any client-sent copy of the
header, then sets it from a claim of the verified token (jwt_authn ``claim_to_headers``)
or from the auth server's answer (ext_authz). Whoever reaches the gRPC port directly is
trusted with both, which is why that port stays private.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from aichat_backend import request_context
from aichat_backend.errors import PermissionDenied
from aichat_backend.reasons import Reason


@dataclass(frozen=True, slots=True)
class AdminAccess:
    admin_users: frozenset[str]
    role_header: str = "x-aichat-role"
    role: str = "admin"

    def is_admin(self, user_id: str, role_values: list[str]) -> bool:
        if user_id in self.admin_users:
            return True
        return self.role in {r for v in role_values for r in roles_in(v)}

    def require(self) -> str:
        """The calling admin's user id, or PERMISSION_DENIED (ADMIN_REQUIRED)."""
        user = request_context.current_user()
        if self.is_admin(user, request_context.trusted_header(self.role_header.lower())):
            return user
        raise PermissionDenied(
            "The operator API needs the admin role.",
            reason=Reason.ADMIN_REQUIRED,
            metadata={"role": self.role},
        )


def roles_in(value: str) -> list[str]:
    """The roles in one header value: "admin", "admin,viewer" or "a b" (auth servers), or a
    list claim as Envoy's jwt_authn forwards it (base64 of its JSON: ["viewer","admin"])."""
    if value.startswith("W"):  # base64 of "[" … is how every JSON array's encoding begins
        try:
            decoded = json.loads(base64.b64decode(value + "=" * (-len(value) % 4), validate=True))
        except (binascii.Error, ValueError):
            decoded = None
        if isinstance(decoded, list):
            return [r for r in decoded if isinstance(r, str)]
    return value.replace(",", " ").split()
