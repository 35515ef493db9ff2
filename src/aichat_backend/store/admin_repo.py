"""What the operator API stores: the rate-limit bypass list and the audit log.

Not scoped by a user like the other repositories: only admins reach it (the API layer
checks), and it is about every user. Each change and its audit entry are written in one
transaction, so no change goes unrecorded.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from aichat_backend import names
from aichat_backend.admin_records import Actor, Bypass, SubjectType
from aichat_backend.domain import now_us
from aichat_backend.errors import AlreadyExists, NotFound
from aichat_backend.reasons import Reason
from aichat_backend.store.admin_tables import admin_audit_log, rate_limit_bypasses
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import PENDING_APPROVAL, tool_calls


def _bypass(row: Any) -> Bypass:
    return Bypass(
        id=row["id"],
        subject_type=SubjectType(row["subject_type"]),
        subject=row["subject"],
        reason=row["reason"],
        creator=row["creator"],
        create_time_us=row["create_time_us"],
    )


async def audit(tx: Tx, actor: Actor, action: str, target: str, detail: dict[str, Any]) -> None:
    await tx.execute(
        insert(admin_audit_log).values(
            actor=actor.user_id,
            action=action,
            target=target,
            detail=detail,
            request_id=actor.request_id,
            create_time_us=now_us(),
        )
    )


async def add_bypass(
    tx: Tx, actor: Actor, subject_type: SubjectType, subject: str, reason: str
) -> Bypass:
    bypass = Bypass(
        id=uuid.uuid4().hex,
        subject_type=subject_type,
        subject=subject,
        reason=reason,
        creator=actor.user_id,
        create_time_us=now_us(),
    )
    try:
        async with tx.begin_nested():
            await tx.execute(
                insert(rate_limit_bypasses).values(
                    id=bypass.id,
                    subject_type=subject_type.value,
                    subject=subject,
                    reason=reason,
                    creator=actor.user_id,
                    create_time_us=bypass.create_time_us,
                )
            )
    except IntegrityError:
        raise AlreadyExists(
            f"a bypass for this {subject_type.value.replace('_', ' ')} already exists",
            reason=Reason.BYPASS_ALREADY_EXISTS,
            metadata={"subject_type": subject_type.value},
        ) from None
    await audit(
        tx,
        actor,
        "rate_limit_bypass.create",
        names.rate_limit_bypass(bypass.id),
        {"subject_type": subject_type.value, "subject": subject, "reason": reason},
    )
    return bypass


async def remove_bypass(tx: Tx, actor: Actor, bypass_id: str) -> Bypass:
    row = (
        (await tx.execute(select(rate_limit_bypasses).where(rate_limit_bypasses.c.id == bypass_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(
            f"{names.rate_limit_bypass(bypass_id)} does not exist",
            reason=Reason.BYPASS_NOT_FOUND,
            metadata={"resource": names.rate_limit_bypass(bypass_id)},
        )
    bypass = _bypass(row)
    await tx.execute(delete(rate_limit_bypasses).where(rate_limit_bypasses.c.id == bypass_id))
    await audit(
        tx,
        actor,
        "rate_limit_bypass.delete",
        names.rate_limit_bypass(bypass_id),
        {"subject_type": bypass.subject_type.value, "subject": bypass.subject},
    )
    return bypass


async def bypass_page(tx: Tx, limit: int, after: tuple[int, str] | None) -> list[Bypass]:
    """Oldest first, keyset on (create_time_us, id)."""
    c = rate_limit_bypasses.c
    query = select(rate_limit_bypasses)
    if after is not None:
        t, bid = after
        query = query.where(or_(c.create_time_us > t, and_(c.create_time_us == t, c.id > bid)))
    query = query.order_by(c.create_time_us, c.id).limit(limit)
    return [_bypass(r) for r in (await tx.execute(query)).mappings()]


async def all_bypass_subjects(tx: Tx) -> set[tuple[str, str]]:
    """Every (subject_type, subject) in force: what each replica caches."""
    c = rate_limit_bypasses.c
    return {(r[0], r[1]) for r in await tx.execute(select(c.subject_type, c.subject))}


async def pending_approvals(tx: Tx, ttl_seconds: float) -> int:
    """Tool calls waiting for a user, not yet expired, across all users."""
    oldest = now_us() - int(ttl_seconds * 1_000_000)
    total = await tx.scalar(
        select(func.count())
        .select_from(tool_calls)
        .where(PENDING_APPROVAL, tool_calls.c.update_time_us > oldest)
    )
    return int(total or 0)


async def audit_entries(tx: Tx, limit: int = 100) -> list[dict[str, Any]]:
    """The newest audit entries (for tests and operators reading the table)."""
    query = select(admin_audit_log).order_by(admin_audit_log.c.id.desc()).limit(limit)
    return [dict(r) for r in (await tx.execute(query)).mappings()]
