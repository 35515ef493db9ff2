"""Reading roles from the trusted role header: the spellings auth servers and Envoy use."""

from __future__ import annotations

import base64
import json

import pytest

from aichat_backend.admin.access import AdminAccess, roles_in


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        ("admin", ["admin"]),
        ("admin,viewer", ["admin", "viewer"]),
        ("viewer admin", ["viewer", "admin"]),
        (b64(["viewer", "admin"]), ["viewer", "admin"]),
        (b64(["admin"]), ["admin"]),
        (b64([1, "admin", None]), ["admin"]),
        ("Wizard", ["Wizard"]),  # starts like base64 of "[", is not
        ("W10", []),  # base64 of "[]"
        ("", []),
    ],
)
def test_roles_in(value: str, roles: list[str]) -> None:
    assert roles_in(value) == roles


def test_listed_users_or_the_exact_role() -> None:
    access = AdminAccess(frozenset({"ops"}), role="admin")
    assert access.is_admin("ops", [])
    assert access.is_admin("someone", ["viewer", "admin"])
    assert not access.is_admin("someone", ["administrator", "Admin", b64(["viewer"])])
    assert not access.is_admin("someone", [])


def test_the_pending_literal_is_the_pending_state() -> None:
    """tables.PENDING_APPROVAL spells the state as SQL (for its partial index)."""
    from aichat_backend.domain import ToolCallState
    from aichat_backend.store.tables import PENDING_APPROVAL

    assert str(PENDING_APPROVAL) == f"state = '{ToolCallState.PENDING_APPROVAL.value}'"
