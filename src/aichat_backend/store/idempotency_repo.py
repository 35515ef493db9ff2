"""AIP-155 request ids: the first result of a write, kept so a retry can replay it."""

from __future__ import annotations

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from aichat_backend.domain import now_us
from aichat_backend.records import IdempotencyRecord
from aichat_backend.store.database import Tx
from aichat_backend.store.tables import idempotency_keys


class IdempotencyRepository:
    def __init__(self, db: Tx, user_id: str, ttl_seconds: float) -> None:
        self._db = db
        self._user = user_id
        self._ttl_us = int(ttl_seconds * 1_000_000)

    async def get(self, scope: str, request_id: str) -> IdempotencyRecord | None:
        row = (
            (
                await self._db.execute(
                    select(idempotency_keys).where(
                        and_(
                            idempotency_keys.c.user_id == self._user,
                            idempotency_keys.c.scope == scope,
                            idempotency_keys.c.request_id == request_id,
                            idempotency_keys.c.create_time_us > now_us() - self._ttl_us,
                        )
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return IdempotencyRecord(
            row["resource"],
            row["response"],
            row["create_time_us"],
            row["fingerprint"],
            row["turn_id"],
        )

    async def put(
        self,
        scope: str,
        request_id: str,
        resource: str,
        response: bytes | None = None,
        *,
        fingerprint: str = "",
        turn_id: str = "",
    ) -> bool:
        """Record the first result; False when another request recorded one first."""
        # An expired key may still be there: clear it so the id can be used afresh.
        await self._db.execute(
            delete(idempotency_keys).where(
                and_(
                    idempotency_keys.c.user_id == self._user,
                    idempotency_keys.c.scope == scope,
                    idempotency_keys.c.request_id == request_id,
                    idempotency_keys.c.create_time_us <= now_us() - self._ttl_us,
                )
            )
        )
        try:
            async with self._db.begin_nested():
                await self._db.execute(
                    insert(idempotency_keys).values(
                        user_id=self._user,
                        scope=scope,
                        request_id=request_id,
                        resource=resource,
                        response=response,
                        create_time_us=now_us(),
                        fingerprint=fingerprint,
                        turn_id=turn_id,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def set_response(self, scope: str, request_id: str, response: bytes) -> None:
        await self._db.execute(
            update(idempotency_keys)
            .where(
                and_(
                    idempotency_keys.c.user_id == self._user,
                    idempotency_keys.c.scope == scope,
                    idempotency_keys.c.request_id == request_id,
                )
            )
            .values(response=response)
        )

    async def forget(self, scope: str, request_id: str) -> None:
        await self._db.execute(
            delete(idempotency_keys).where(
                and_(
                    idempotency_keys.c.user_id == self._user,
                    idempotency_keys.c.scope == scope,
                    idempotency_keys.c.request_id == request_id,
                )
            )
        )


async def purge_expired(db: Tx, ttl_seconds: float) -> int:
    result = await db.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.create_time_us <= now_us() - int(ttl_seconds * 1_000_000)
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
