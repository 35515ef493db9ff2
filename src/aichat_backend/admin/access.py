"""Who may call the operator API: an admin role forwarded by the edge, or a listed user id.

The role arrives the way the user id does: Envoy removes any client-sent copy of the
header, then sets it from a claim of the verified token (jwt_authn ``claim_to_headers``)
or from the auth server's answer (ext_authz). Whoever reaches the gRPC port directly is
trusted with both, which is why that port stays private.
"""

from __future__ import annotations

from dataclasses import dataclass

from aichat_backend import request_context
from aichat_backend.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class AdminAccess:
    admin_users: frozenset[str]
    role_header: str = "x-aichat-role"
    role: str = "admin"

    def is_admin(self, user_id: str, role_values: list[str]) -> bool:
        if user_id in self.admin_users:
            return True
        # An identity provider may send several roles: "admin", "admin,viewer", "a b".
        roles = {r for v in role_values for r in v.replace(",", " ").split()}
        return self.role in roles

    def require(self) -> str:
        """The calling admin's user id, or PERMISSION_DENIED (ADMIN_REQUIRED)."""
        user = request_context.current_user()
        if self.is_admin(user, request_context.trusted_header(self.role_header.lower())):
            return user
        raise PermissionDenied(
            "The operator API needs the admin role.",
            reason="ADMIN_REQUIRED",
            metadata={"role": self.role},
        )
