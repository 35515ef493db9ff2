"""A turn's messages: the user's message, the answer of each round, the turn's result.

The user message is stored with a placeholder answer in one write overlapped with the
upstream request (which also claims the session), and each answer is written once when
its round ends. Tokens are never written one by one. On PostgreSQL the first and the last
write of a common turn are one statement each (data-modifying CTEs that carry the
lease's claim and release from ``turn_leases``; built in ``answer_statements``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aichat_backend.domain import Attachment, Message, MessageState, Role, now_us
from aichat_backend.records import TurnClaim, Usage
from aichat_backend.store import storage
from aichat_backend.store.answer_statements import (
    BEGIN,
    BEGIN_ONE_STATEMENT,
    FINISH_ANSWER,
    FINISH_ONE_STATEMENT,
    UNFINISHED,
    WRITE_ANSWER,
)
from aichat_backend.store.database import Tx
from aichat_backend.store.message_rows import detail_params
from aichat_backend.store.messages_repo import MessageRepository, new_message_id
from aichat_backend.store.tree_repo import TreeRepository
from aichat_backend.store.turn_leases import LeaseRepository
from aichat_backend.store.usage_repo import add_usage, usage_params


def _chained(given: Sequence[Message], first_seq: int, now: int, parent_id: str) -> list[Message]:
    """Messages given whole, numbered from ``first_seq``, each the child of the one before
    (the first of ``parent_id``)."""
    out: list[Message] = []
    for i, m in enumerate(given):
        parent = out[-1].id if out else parent_id
        out.append(replace(m, seq=first_seq + i, create_time_us=now, parent_id=parent))
    return out


class AnswerRepository:
    def __init__(self, db: Tx, user_id: str) -> None:
        self._db = db
        self._user = user_id

    async def begin(
        self,
        session_id: str,
        claim: TurnClaim,
        text: str,
        attachments_in: Sequence[Attachment],
        model: str,
        title: str,
        answer_id: str,
        *,
        earlier: Sequence[Message] = (),
        rounds: Sequence[Message] = (),
        parent_id: str | None = None,
        question: Message | None = None,
        quota: int = storage.UNLIMITED,
    ) -> tuple[Message, Message]:
        """Claim the session and store the user message and a placeholder answer.

        This is the only write before the first token, so it is kept to one UPDATE
        (claim, both sequence numbers, title, tool lock) and one multi-row INSERT; on
        PostgreSQL without attachments, to one statement that does both, which the
        caller may run in ``Database.statement()``. A conversation given whole is stored
        in the same INSERT: ``earlier`` before the user message, ``rounds`` after it
        (their tool calls are the caller's to store).

        The user message follows ``parent_id`` and the answer follows it (a conversation
        given whole is chained between them). With ``question`` (RegenerateAnswer) no user
        message is stored: the answer is a new child of that existing one.

        What is stored is counted against the user's storage ``quota`` (``storage``), or
        refused with STORAGE_QUOTA_EXCEEDED.
        """
        now = now_us()
        size = sum(storage.message_bytes(m) for m in (*earlier, *rounds))
        if question is None:
            size += storage.text_bytes(text) + storage.attachment_bytes(attachments_in)
        if parent_id is None and question is None:
            parent_id = await MessageRepository(self._db, self._user).active(session_id)
        added = (1 if question is not None else 2) + len(earlier) + len(rounds)
        params = {
            "p_added": added,
            "p_user": self._user,
            "p_sid": session_id,
            "p_now": now,
            "p_turn": claim.turn_id,
            "p_owner": claim.owner,
            "p_expires": now + int(claim.lease_seconds * 1e6),
            "p_title": title,
            "p_answer": answer_id,
            "p_size": size,
            "p_quota": quota,
        }
        user_msg_id = question.id if question is not None else new_message_id()
        one_statement = (
            not attachments_in
            and not earlier
            and not rounds
            and question is None
            and self._db.dialect.name == "postgresql"
        )
        if one_statement:
            params.update(p_user_msg=user_msg_id, p_text=text, p_model=model, p_parent=parent_id)
            seqs = (await self._db.execute(BEGIN_ONE_STATEMENT, params)).scalars().all()
            row = (max(seqs),) if seqs else None
            if row is None:
                used = await storage.stored(self._db, self._user)
                if used + size > quota:
                    raise storage.quota_exceeded(quota, used, size)
        else:
            # Counted first: a claim refused next rolls the count back with it.
            await storage.reserve(self._db, self._user, size, quota)
            row = (await self._db.execute(BEGIN, params)).first()
        if row is None:
            await LeaseRepository(self._db, self._user).refuse_claim(session_id)
        seq = row[0]
        answer = Message(
            session_id=session_id,
            id=answer_id,
            seq=seq,
            role=Role.ASSISTANT,
            state=MessageState.STREAMING,
            model=model,
            create_time_us=now,
        )
        if question is not None:
            answer.parent_id = question.id
            await MessageRepository(self._db, self._user).insert([answer])
            return question, answer
        base = seq - added
        parent_id = parent_id or ""
        before = _chained(earlier, base + 1, now, parent_id)
        base += len(before) + 1
        user_msg = Message(
            session_id=session_id,
            id=user_msg_id,
            seq=base,
            role=Role.USER,
            text=text,
            create_time_us=now,
            attachments=list(attachments_in),
            parent_id=before[-1].id if before else parent_id,
        )
        after = _chained(rounds, base + 1, now, user_msg_id)
        answer.parent_id = after[-1].id if after else user_msg_id
        if not one_statement:
            await MessageRepository(self._db, self._user).insert(
                [*before, user_msg, *after, answer]
            )
        return user_msg, answer

    async def placeholder(
        self, session_id: str, model: str, parent_id: str, message_id: str | None = None
    ) -> Message:
        """The next round's answer, a child of the round before it."""
        return await MessageRepository(self._db, self._user).append(
            session_id,
            Role.ASSISTANT,
            "",
            state=MessageState.STREAMING,
            message_id=message_id or new_message_id(),
            model=model,
            parent_id=parent_id,
        )

    async def finish(
        self,
        session_id: str,
        turn_id: str,
        answer: Message,
        usage: Usage | None,
    ) -> None:
        """A turn's last write: the answer, the session released, the usage if any. One
        statement on PostgreSQL, which the caller may run in ``Database.statement()``.
        Idempotent: sent again, it changes nothing more."""
        params = self._answer_params(answer)
        if self._db.dialect.name == "postgresql":
            params.update(p_sid=session_id, p_turn=turn_id, p_now=now_us())
            if usage is not None:
                params.update(usage_params(self._user, usage, prefix="u_"))
            await self._db.execute(FINISH_ONE_STATEMENT[usage is not None], params)
            return
        delta = await storage.rewrite_delta(
            self._db, self._user, answer.id, params["p_size"], UNFINISHED
        )
        landed = await self._db.execute(FINISH_ANSWER, params)
        await LeaseRepository(self._db, self._user).release(session_id, turn_id)
        if landed.rowcount:  # type: ignore[attr-defined]
            await storage.add(self._db, self._user, delta)
            if usage is not None:
                await add_usage(self._db, self._user, usage)

    async def write_message(self, m: Message, state: MessageState | None = None) -> None:
        """Write an answer's text, state and usage as they are in ``m`` (or with ``state``),
        and count its bytes' difference (inside a transaction: the row stays locked)."""
        params = self._answer_params(m, state)
        delta = await storage.rewrite_delta(self._db, self._user, m.id, params["p_size"])
        await self._db.execute(WRITE_ANSWER, params)
        await storage.add(self._db, self._user, delta)

    def _answer_params(self, m: Message, state: MessageState | None = None) -> dict[str, Any]:
        return {
            "p_user": self._user,
            "p_id": m.id,
            "p_text": m.text,
            "p_state": (state or m.state).value,
            "p_finish": m.finish_reason[:64],
            "p_in": m.input_tokens,
            "p_out": m.output_tokens,
            "p_model": m.model,
            "p_size": storage.message_bytes(m),
            **detail_params(m),
        }

    # --- replay ---------------------------------------------------------------------

    async def turn_result(self, first_answer_id: str) -> tuple[Message | None, Message | None]:
        """(the turn's user message, its last answer) for replaying a finished turn."""
        user_msg, answers = await self.turn_answers(first_answer_id)
        return user_msg, answers[-1] if answers else None

    async def turn_answers(self, first_answer_id: str) -> tuple[Message | None, list[Message]]:
        """(the turn's user message, its answer messages in order), from the first answer:
        its parent, and the chain of rounds below it (never another branch)."""
        tree = TreeRepository(self._db, self._user)
        answers = await tree.by_ids(await tree.turn_rounds(first_answer_id))
        if not answers:
            return None, []
        parents = await tree.by_ids([answers[0].parent_id]) if answers[0].parent_id else []
        user_msg = parents[0] if parents and parents[0].role is Role.USER else None
        return user_msg, answers
