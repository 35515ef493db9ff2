"""What a MemoryStore holds, and the small rules its two halves share."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from aichat_backend import names
from aichat_backend.domain import (
    ContextSummary,
    Message,
    MessageState,
    Role,
    Session,
    ToolCall,
    ToolCallState,
    now_us,
    session_not_found,
)
from aichat_backend.errors import Aborted, NotFound
from aichat_backend.money import MIXED_CURRENCY
from aichat_backend.reasons import Reason
from aichat_backend.records import IdempotencyRecord, TurnClaim, Usage
from aichat_backend.store.turn_leases import UNFINISHED_CALL_STATES

UNFINISHED = {ToolCallState(s) for s in UNFINISHED_CALL_STATES}


@dataclass
class StoredSession:
    session: Session
    last_seq: int = 0
    turn_id: str | None = None
    owner: str | None = None
    expires_us: int | None = None
    title_by_user: bool = False  # named by its user: no title model renames it

    def claimable(self, now: int) -> bool:
        return self.turn_id is None or (self.expires_us is not None and self.expires_us < now)


@dataclass
class StoredCall:
    message_id: str
    session_id: str
    position: int
    call: ToolCall
    create_time_us: int


@dataclass
class UsageDay:
    """A usage_daily row: a user's calls of one model on one UTC day."""

    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    reasoning_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost_nanos: int = 0
    currency: str = ""

    def add(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.turns += 1
        self.reasoning_tokens += usage.reasoning_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        if usage.cost is not None:
            self.cost_nanos += usage.cost.nanos
            # One currency per row, as usage_repo's upsert keeps it.
            if self.currency in ("", usage.cost.currency):
                self.currency = usage.cost.currency
            else:
                self.currency = MIXED_CURRENCY


@dataclass
class MemoryState:
    idempotency_ttl_seconds: float
    sessions: dict[tuple[str, str], StoredSession] = field(default_factory=dict)
    # (user, message id) → the message without its tool calls (they live in ``calls``)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    calls: dict[tuple[str, str, str], StoredCall] = field(default_factory=dict)
    keys: dict[tuple[str, str, str], IdempotencyRecord] = field(default_factory=dict)
    usage: dict[tuple[str, str, str], UsageDay] = field(default_factory=dict)

    # --- sessions and claims ------------------------------------------------------------

    def session(self, user: str, session_id: str) -> StoredSession:
        found = self.sessions.get((user, session_id))
        if found is None:
            raise session_not_found(session_id)
        return found

    def claim(self, user: str, session_id: str, claim: TurnClaim) -> StoredSession:
        """Claim the session (SESSION_NOT_FOUND, SESSION_BUSY): nothing changed on refusal."""
        stored, now = self.session(user, session_id), now_us()
        if not stored.claimable(now):
            raise Aborted(
                f"{names.session(session_id)} is answering another message; wait for that turn",
                reason=Reason.SESSION_BUSY,
                metadata={"resource": names.session(session_id)},
                retry_after=1.0,
            )
        return stored

    def take_claim(self, stored: StoredSession, claim: TurnClaim) -> None:
        stored.turn_id, stored.owner = claim.turn_id, claim.owner
        stored.expires_us = now_us() + int(claim.lease_seconds * 1e6)

    def release(self, user: str, session_id: str, turn_id: str) -> None:
        stored = self.sessions.get((user, session_id))
        if stored is not None and stored.turn_id == turn_id:
            stored.turn_id = stored.owner = stored.expires_us = None
            stored.session.update_time_us = now_us()

    # --- idempotency keys -----------------------------------------------------------------

    def key(self, user: str, scope: str, request_id: str) -> IdempotencyRecord | None:
        found = self.keys.get((user, scope, request_id))
        ttl_us = int(self.idempotency_ttl_seconds * 1_000_000)
        if found is None or found.create_time_us <= now_us() - ttl_us:
            return None
        return found

    def put_key(
        self,
        user: str,
        scope: str,
        request_id: str,
        resource: str,
        fingerprint: str = "",
        turn_id: str = "",
    ) -> None:
        self.keys[(user, scope, request_id)] = IdempotencyRecord(
            resource, None, now_us(), fingerprint, turn_id
        )

    # --- messages ---------------------------------------------------------------------------

    def add_message(self, user: str, m: Message) -> None:
        kept = copy.deepcopy(m)
        kept.tool_calls = []
        self.messages[(user, m.id)] = kept

    def append(
        self,
        user: str,
        session_id: str,
        role: Role,
        state: MessageState,
        model: str,
        mid: str,
        parent_id: str = "",
    ) -> Message:
        stored = self.session(user, session_id)
        stored.last_seq += 1
        stored.session.message_count += 1
        stored.session.update_time_us = now = now_us()
        m = Message(
            session_id,
            mid,
            stored.last_seq,
            role,
            state=state,
            model=model,
            create_time_us=now,
            parent_id=parent_id,
        )
        # The active path moves on only from the parent (the user may have switched away).
        if stored.session.active_message_id == parent_id:
            stored.session.active_message_id = mid
        self.add_message(user, m)
        return copy.deepcopy(m)

    def write(self, user: str, m: Message, state: MessageState | None = None) -> bool:
        kept = self.messages.get((user, m.id))
        if kept is None:
            return False
        kept.text, kept.state = m.text, state or m.state
        kept.finish_reason, kept.model = m.finish_reason[:64], m.model
        kept.input_tokens, kept.output_tokens = m.input_tokens, m.output_tokens
        kept.reasoning = copy.deepcopy(m.reasoning)
        kept.reasoning_tokens, kept.cost = m.reasoning_tokens, m.cost
        kept.cached_input_tokens, kept.cache_write_tokens = (
            m.cached_input_tokens,
            m.cache_write_tokens,
        )
        return True

    def in_session(self, user: str, session_id: str) -> list[Message]:
        found = [
            m for (u, _), m in self.messages.items() if u == user and m.session_id == session_id
        ]
        return sorted(found, key=lambda m: m.seq)

    def read(self, user: str, m: Message, *, with_content: bool) -> Message:
        """A stored message as a read hands it out: its calls, attachments' content or not."""
        out = copy.deepcopy(m)
        if not with_content:
            for a in out.attachments:
                a.content = a.text_content = None
        mine = [c for (u, mid, _), c in self.calls.items() if u == user and mid == m.id]
        out.tool_calls = [copy.deepcopy(c.call) for c in sorted(mine, key=lambda c: c.position)]
        return out

    def get(self, user: str, session_id: str, message_id: str) -> Message:
        m = self.messages.get((user, message_id))
        if m is None or m.session_id != session_id:
            raise NotFound(
                f"message {names.message(session_id, message_id)} was not found",
                reason=Reason.MESSAGE_NOT_FOUND,
            )
        return self.read(user, m, with_content=False)

    def set_summary(
        self, user: str, session_id: str, message_id: str, summary: ContextSummary
    ) -> ContextSummary:
        m = self.messages.get((user, message_id))
        if m is None or m.session_id != session_id:
            raise NotFound(
                f"message {names.message(session_id, message_id)} was not found",
                reason=Reason.MESSAGE_NOT_FOUND,
            )
        if m.context_summary is None:  # once: a second summary keeps the first
            m.context_summary = copy.deepcopy(summary)
        return copy.deepcopy(m.context_summary)

    def recent(self, user: str, session_id: str, limit: int) -> list[Message]:
        found = self.in_session(user, session_id)[-limit:] if limit > 0 else []
        return [self.read(user, m, with_content=True) for m in found]

    # --- tool calls and usage --------------------------------------------------------------

    def pending(self, user: str, session_id: str) -> list[StoredCall]:
        found = [
            c
            for (u, _, _), c in self.calls.items()
            if u == user
            and c.session_id == session_id
            and c.call.state is ToolCallState.PENDING_APPROVAL
        ]
        return sorted(found, key=lambda c: (c.create_time_us, c.position))

    def add_usage(self, user: str, usage: Usage, day: str) -> None:
        self.usage.setdefault((user, day, usage.model[:200]), UsageDay()).add(usage)
