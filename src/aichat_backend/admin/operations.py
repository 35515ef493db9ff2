"""The operator API's changes and reports: each change is stored, audited and logged.

The audit entry is written in the change's own transaction (no change without its
record) and also goes to the log as one line with who, what and the request id.
"""

from __future__ import annotations

import datetime as dt
import logging

from aichat_backend import page_tokens
from aichat_backend.admin.bypass import BypassList
from aichat_backend.admin_records import Actor, Bypass, SubjectType, UsageQuery, UsageRow
from aichat_backend.errors import InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.store import admin_repo, storage, usage_report
from aichat_backend.store.database import Database

log = logging.getLogger("aichat_backend.audit")

MAX_SUBJECT = 256
MAX_REASON = 1000


def _check_subject(subject: str) -> str:
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
        raise InvalidArgument(
            f"subject must be 1-{MAX_SUBJECT} printable characters",
            reason=Reason.INVALID_SUBJECT,
            field="rate_limit_bypass.subject",
        )
    return subject


class AdminOperations:
    def __init__(self, db: Database, bypass: BypassList) -> None:
        self._db = db
        self._bypass = bypass

    async def add_bypass(
        self, actor: Actor, subject_type: SubjectType, subject: str, reason: str
    ) -> Bypass:
        subject = _check_subject(subject)
        if len(reason) > MAX_REASON:
            raise InvalidArgument(
                f"reason is longer than {MAX_REASON} characters",
                reason=Reason.REASON_TOO_LONG,
                field="rate_limit_bypass.reason",
            )
        async with self._db.transaction() as tx:
            bypass = await admin_repo.add_bypass(tx, actor, subject_type, subject, reason)
        self._audited(actor, "rate_limit_bypass.create", bypass)
        await self._bypass.reload()  # here at once; other replicas at their next refresh
        return bypass

    async def remove_bypass(self, actor: Actor, bypass_id: str) -> None:
        async with self._db.transaction() as tx:
            bypass = await admin_repo.remove_bypass(tx, actor, bypass_id)
        self._audited(actor, "rate_limit_bypass.delete", bypass)
        await self._bypass.reload()

    async def bypass_page(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[list[Bypass], str]:
        limit = page_tokens.clamp_page_size(page_size)
        after = None
        if page_token:
            t, bid = page_tokens.decode(page_token, "bypasses", owner, 2)
            if not isinstance(t, int) or not isinstance(bid, str):
                raise page_tokens.invalid_token()
            after = (t, bid)
        async with self._db.read() as tx:
            items = await admin_repo.bypass_page(tx, limit + 1, after)
        token = ""
        if len(items) > limit:
            items = items[:limit]
            token = page_tokens.encode("bypasses", owner, [items[-1].create_time_us, items[-1].id])
        return items, token

    async def usage_page(
        self, owner: str, query: UsageQuery, page_size: int, page_token: str
    ) -> tuple[list[UsageRow], str]:
        limit = page_tokens.clamp_page_size(page_size)
        arity = len(query.key_columns())
        after = None
        if page_token:
            keys = page_tokens.decode(page_token, query.page_kind(), owner, arity)
            if not all(isinstance(k, str) for k in keys):
                raise page_tokens.invalid_token()
            after = [str(k) for k in keys]
        async with self._db.read() as tx:
            rows = await usage_report.usage_page(tx, query, limit + 1, after)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = page_tokens.encode(
                query.page_kind(), owner, usage_report.row_key(query, rows[-1])
            )
        return rows, token

    async def storage_page(
        self, owner: str, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[tuple[str, int]], str]:
        """(user, stored bytes) rows, largest first, and the next page's token."""
        limit = page_tokens.clamp_page_size(page_size)
        after = None
        if page_token:
            size, who = page_tokens.decode(page_token, "storage", owner, 2)
            if not isinstance(size, int) or not isinstance(who, str):
                raise page_tokens.invalid_token()
            after = (size, who)
        async with self._db.read() as tx:
            rows = await storage.largest(tx, limit + 1, after, user_id)
        token = ""
        if len(rows) > limit:
            rows = rows[:limit]
            token = page_tokens.encode("storage", owner, [rows[-1][1], rows[-1][0]])
        return rows, token

    @staticmethod
    def today() -> dt.date:
        return dt.datetime.now(dt.UTC).date()

    @staticmethod
    def _audited(actor: Actor, action: str, bypass: Bypass) -> None:
        log.info(
            "admin change",
            extra={
                "actor": actor.user_id,
                "action": action,
                "target": bypass.id,
                "subject_type": bypass.subject_type.value,
                "subject": bypass.subject,
                "request_id": actor.request_id,
            },
        )
