"""The SQL side of the engine's ``TurnStore``: every transaction shape of a chat turn.

The engine says what a turn stores; this module decides how: which writes share a
transaction, which are one statement PostgreSQL receives without BEGIN and COMMIT (the
common turn's begin and finish, a lease renewal), and which reads run in autocommit. The
repositories it composes (answers, tool calls, leases, idempotency keys, messages) each
own their statements.
"""

from __future__ import annotations

from aichat_backend.domain import ContextSummary, Message, MessageState, ToolCall, ToolCallState
from aichat_backend.records import (
    RESOLVE_SCOPE,
    TURN_SCOPE,
    BegunTurn,
    HistoryWindow,
    NewTurn,
    Resolution,
    ResolutionState,
    StoredTurn,
    TurnContext,
    Usage,
    already_decided,
    turn_in_progress,
)
from aichat_backend.store.answers_repo import AnswerRepository
from aichat_backend.store.database import Database, Tx
from aichat_backend.store.idempotency_repo import IdempotencyRepository
from aichat_backend.store.messages_repo import MessageRepository
from aichat_backend.store.sessions_repo import SessionRepository
from aichat_backend.store.storage import StorageQuota
from aichat_backend.store.tool_calls_repo import ToolCallRepository
from aichat_backend.store.tree_repo import TreeRepository
from aichat_backend.store.turn_leases import LeaseRepository
from aichat_backend.store.turn_leases import sweep_interrupted as sweep
from aichat_backend.store.usage_repo import add_usage


class SqlTurnStore:
    def __init__(
        self, db: Database, idempotency_ttl_seconds: float, quota: StorageQuota | None = None
    ) -> None:
        self._db = db
        self._ttl = idempotency_ttl_seconds
        self._quota = quota or StorageQuota()

    def _keys(self, tx: Tx, user_id: str) -> IdempotencyRepository:
        return IdempotencyRepository(tx, user_id, self._ttl)

    # --- reading ---------------------------------------------------------------------

    async def find_replay(self, user_id: str, scope: str, request_id: str) -> StoredTurn | None:
        async with self._db.read() as tx:
            first = await self._keys(tx, user_id).get(scope, request_id)
            if first is None:
                return None
            user_message, answers = await AnswerRepository(tx, user_id).turn_answers(first.resource)
        return StoredTurn(user_message, answers, first.turn_id, first.fingerprint)

    async def load_context(
        self, user_id: str, session_id: str, window: HistoryWindow, leaf: str | None = None
    ) -> TurnContext:
        # One statement, in autocommit: nothing before the upstream request but this read
        # (TreeRepository.context: the path to ``leaf``, never another branch).
        async with self._db.read() as tx:
            session, history = await TreeRepository(tx, user_id).context(
                session_id, leaf, window.requested, window.default, window.maximum, window.extra
            )
        return TurnContext(session, history)

    async def question_of(self, user_id: str, session_id: str, message_id: str) -> str:
        async with self._db.read() as tx:
            return await TreeRepository(tx, user_id).question_of(session_id, message_id)

    # --- a turn's writes ---------------------------------------------------------------

    async def store_summary(
        self, user_id: str, session_id: str, message_id: str, summary: ContextSummary
    ) -> ContextSummary:
        async with self._db.transaction() as tx:
            return await MessageRepository(tx, user_id).set_summary(session_id, message_id, summary)

    async def begin_turn(self, user_id: str, turn: NewTurn) -> BegunTurn:
        # The common turn (no files, no request id, nothing waiting) is one statement on
        # PostgreSQL (AnswerRepository.begin), sent without BEGIN and COMMIT.
        given = turn.earlier or turn.rounds
        one_statement = (
            not turn.attachments and not turn.request_id and turn.deny_pending is None and not given
        )
        unit = self._db.statement() if one_statement else self._db.transaction()
        async with unit as tx:
            if turn.request_id and not await self._keys(tx, user_id).put(
                TURN_SCOPE,
                turn.request_id,
                turn.answer_id,
                fingerprint=turn.fingerprint,
                turn_id=turn.claim.turn_id,
            ):
                raise turn_in_progress()
            user_message, answer = await AnswerRepository(tx, user_id).begin(
                turn.session_id,
                turn.claim,
                turn.text,
                turn.attachments,
                turn.model,
                turn.title,
                turn.answer_id,
                earlier=turn.earlier,
                rounds=turn.rounds,
                parent_id=turn.parent_id,
                question=turn.question,
                quota=self._quota.of(user_id),
            )
            calls = ToolCallRepository(tx, user_id)
            for m in (*turn.earlier, *turn.rounds):
                if m.tool_calls:
                    await calls.add_calls(turn.session_id, m.id, m.tool_calls)
            denied: list[ToolCall] = []
            if turn.deny_pending is not None:
                denied = await ToolCallRepository(tx, user_id).deny_all_pending(
                    turn.session_id, turn.deny_pending
                )
        return BegunTurn(user_message, answer, denied)

    async def store_tool_round(
        self,
        user_id: str,
        session_id: str,
        answer: Message,
        calls: list[ToolCall],
        usage: Usage | None,
    ) -> None:
        async with self._db.transaction() as tx:
            await AnswerRepository(tx, user_id).write_message(answer, MessageState.STREAMING)
            await ToolCallRepository(tx, user_id).add_calls(session_id, answer.id, calls)
            if usage is not None:
                await add_usage(tx, user_id, usage)

    async def update_call(self, user_id: str, message_id: str, call: ToolCall) -> None:
        async with self._db.statement() as tx:
            await ToolCallRepository(tx, user_id).update_call(message_id, call)

    async def next_round(
        self, user_id: str, session_id: str, done: Message, model: str, history: int = 0
    ) -> tuple[Message, list[Message]]:
        async with self._db.transaction() as tx:
            answers = AnswerRepository(tx, user_id)
            await answers.write_message(done, MessageState.COMPLETE)
            context: list[Message] = []
            if history > 0:
                # The path to this round (never another branch), as a new turn reads it.
                _, context = await TreeRepository(tx, user_id).context(
                    session_id, done.id, history, history, history
                )
            placeholder = await answers.placeholder(session_id, model, done.id)
        return placeholder, context

    async def end_for_approval(
        self, user_id: str, session_id: str, turn_id: str, answer: Message
    ) -> None:
        async with self._db.transaction() as tx:
            await AnswerRepository(tx, user_id).write_message(answer, MessageState.COMPLETE)
            await LeaseRepository(tx, user_id).release(session_id, turn_id)

    async def finish(
        self, user_id: str, session_id: str, turn_id: str, answer: Message, usage: Usage | None
    ) -> None:
        # One statement on PostgreSQL (AnswerRepository.finish), idempotent by itself.
        async with self._db.statement() as tx:
            await AnswerRepository(tx, user_id).finish(session_id, turn_id, answer, usage)

    async def cut_off(
        self,
        user_id: str,
        session_id: str,
        turn_id: str,
        answer: Message,
        why: str,
        *,
        write_answer: bool,
    ) -> None:
        async with self._db.transaction() as tx:
            if write_answer:
                await AnswerRepository(tx, user_id).write_message(answer)
            await ToolCallRepository(tx, user_id).fail_unfinished_calls(answer.id, why)
            await LeaseRepository(tx, user_id).release(session_id, turn_id)

    # --- approvals -----------------------------------------------------------------------

    async def expire_pending(
        self, user_id: str, session_id: str, older_than_us: int, why: str
    ) -> int:
        async with self._db.transaction() as tx:
            calls = ToolCallRepository(tx, user_id)
            expired = 0
            for p in await calls.pending_calls(session_id):
                if p.create_time_us < older_than_us:
                    p.call.state = ToolCallState.DENIED
                    p.call.result_text = why
                    expired += await calls.decide(p.message_id, p.call, approved=False)
        return expired

    async def load_resolution(
        self, user_id: str, session_id: str, call_ids: list[str]
    ) -> ResolutionState:
        async with self._db.read() as tx:
            session = await SessionRepository(tx, user_id).get(session_id)
            calls = ToolCallRepository(tx, user_id)
            pending = await calls.pending_calls(session_id)
            waiting = {p.call.id for p in pending}
            others = {
                i: await calls.call_state(session_id, i) for i in call_ids if i not in waiting
            }
            denied = [i for i, state in others.items() if state is ToolCallState.DENIED]
            superseded = await calls.superseded(session_id, denied)
            round_message = user_message = None
            if pending:
                messages = MessageRepository(tx, user_id)
                round_message = await messages.get(session_id, pending[0].message_id)
                tree = TreeRepository(tx, user_id)
                question = await tree.question_of(session_id, round_message.id)
                user_message = await messages.get(session_id, question)
        return ResolutionState(session, pending, others, round_message, user_message, superseded)

    async def open_resolution(self, user_id: str, resolution: Resolution) -> None:
        r = resolution
        async with self._db.transaction() as tx:
            await LeaseRepository(tx, user_id).claim(r.session_id, r.claim)
            # Running again: a crash while the approved tools run is swept like any other.
            await AnswerRepository(tx, user_id).write_message(
                r.round_message, MessageState.STREAMING
            )
            calls = ToolCallRepository(tx, user_id)
            for d in r.decided:
                if not await calls.decide(d.message_id, d.call, approved=d.approved):
                    raise already_decided(d.call.id)
            if r.request_id and not await self._keys(tx, user_id).put(
                RESOLVE_SCOPE,
                r.request_id,
                r.round_message.id,
                fingerprint=r.fingerprint,
                turn_id=r.claim.turn_id,
            ):
                raise turn_in_progress()

    # --- leases ----------------------------------------------------------------------------

    async def renew_lease(
        self, user_id: str, session_id: str, turn_id: str, lease_seconds: float
    ) -> None:
        async with self._db.statement() as tx:
            await LeaseRepository(tx, user_id).renew(session_id, turn_id, lease_seconds)

    async def record_usage(self, user_id: str, usage: Usage) -> None:
        async with self._db.statement() as tx:
            await add_usage(tx, user_id, usage)

    async def write_title(self, user_id: str, session_id: str, title: str) -> bool:
        async with self._db.statement() as tx:
            return await SessionRepository(tx, user_id).write_title(session_id, title)

    async def sweep_interrupted(self) -> int:
        async with self._db.transaction() as tx:
            return await sweep(tx)
