"""SQL tables. The proto is not the schema: these are shaped for the queries we run.

Times are BIGINT microseconds since the epoch (exact keyset comparisons on every
backend); every row carries the owner's ``user_id`` so that each query is scoped by it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

USER_ID = String(256)
ID = String(64)


def usage_columns() -> list[Column[int]]:
    """The parts of a usage's token totals (reasoning, prompt cache), as messages and
    usage_daily both keep them."""
    return [
        Column(name, BigInteger, nullable=False, default=0, server_default="0")
        for name in ("reasoning_tokens", "cached_input_tokens", "cache_write_tokens")
    ]


sessions = Table(
    "sessions",
    metadata,
    Column("user_id", USER_ID, primary_key=True),
    Column("id", ID, primary_key=True),
    Column("display_name", Text, nullable=False, default=""),
    Column("model", String(200), nullable=False, default=""),
    Column("system_prompt", Text, nullable=False, default=""),
    Column("tool_names", JSON, nullable=False),
    Column("memory_limit", Integer, nullable=False, default=0),
    Column("labels", JSON, nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
    # Monotonic message sequence: survives ClearMessages so ordering never repeats.
    Column("last_seq", Integer, nullable=False, default=0),
    Column("tools_locked", Boolean, nullable=False, default=False),
    # True: no tool at all (tool_names is then empty, which otherwise means every tool).
    Column("tools_disabled", Boolean, nullable=False, default=False),
    # The user named the session (CreateSession or UpdateSession display_name): the title
    # model never renames it (one conditional UPDATE, so a rename racing it wins).
    Column("title_by_user", Boolean, nullable=False, default=False, server_default="0"),
    # One turn at a time per session, across replicas: the running turn's answer id
    # and a lease it renews; a crashed replica's lease simply runs out.
    Column("active_turn_id", ID, nullable=True),
    Column("active_turn_expires_us", BigInteger, nullable=True),
    # Which replica runs it: a restarted replica marks its own unfinished turns at once.
    Column("active_turn_owner", String(128), nullable=True),
    # The last message of the active path (the conversation shown and continued); NULL
    # while the session has no message.
    Column("active_message_id", ID, nullable=True),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    # ListSessions: newest activity first, keyset on (update_time_us, id).
    Index("ix_sessions_user_activity", "user_id", "update_time_us", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", USER_ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("text", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("model", String(200), nullable=False, default=""),
    Column("finish_reason", String(64), nullable=False, default=""),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("create_time_us", BigInteger, nullable=False),
    # The owner's rating of an answer ("up"/"down"), NULL when none (SetMessageFeedback).
    Column("feedback_rating", String(16), nullable=True),
    Column("feedback_comment", Text, nullable=True),
    Column("feedback_time_us", BigInteger, nullable=True),
    # An answer's reasoning, block by block as the provider sent it (ReasoningBlock's
    # JSON: signatures kept to be sent back); NULL when the model did not reason.
    Column("reasoning", JSON(none_as_null=True), nullable=True),
    *usage_columns(),
    # What the answer's model call cost (nano units of ``currency``); NULL: unpriced.
    Column("cost_nanos", BigInteger, nullable=True),
    Column("currency", String(3), nullable=False, default="", server_default=""),
    # The message this one follows ('' for a first message, not NULL: sibling lookups are
    # then plain equalities on the index below on every database). No foreign key: a
    # session's messages are deleted together (ClearMessages, the session's cascade),
    # never one by one, and a self-reference would only order those deletes.
    Column("parent_id", ID, nullable=False, default="", server_default=""),
    # A compaction checkpoint on the last message it folded (domain.ContextSummary): its
    # text, and its counts as JSON; NULL on every other message.
    Column("summary_text", Text, nullable=True),
    Column("summary_meta", JSON(none_as_null=True), nullable=True),
    # What this message counts against its owner's storage quota (its text, reasoning and
    # attachments, ``store.storage``): a delete subtracts exactly what was added.
    Column("stored_bytes", BigInteger, nullable=False, default=0, server_default="0"),
    ForeignKeyConstraint(
        ["user_id", "session_id"], ["sessions.user_id", "sessions.id"], ondelete="CASCADE"
    ),
    # ListMessages and context building: a session's messages in order.
    UniqueConstraint("user_id", "session_id", "seq"),
    # A message's siblings and children (sibling positions, newest descendant).
    Index(
        "ix_messages_user_id_session_id_parent_id_seq",
        "user_id",
        "session_id",
        "parent_id",
        "seq",
    ),
    # Start-up sweep for answers a crash left unfinished.
    Index("ix_messages_state", "state"),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    Column("filename", Text, nullable=False),
    Column("mime_type", String(200), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
    # What the model is shown (decoded text, text extracted from a PDF); NULL for images.
    Column("text_content", Text, nullable=True),
    ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
    Index("ix_attachments_message", "message_id", "position"),
)

# A literal, not a bound parameter: only then can the planners use the partial index below.
PENDING_APPROVAL = text("state = 'pending_approval'")

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("message_id", ID, primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("user_id", USER_ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("position", Integer, nullable=False),
    Column("tool_name", String(128), nullable=False),
    Column("server", String(128), nullable=False, default=""),
    Column("arguments", JSON, nullable=False),
    Column("state", String(32), nullable=False),
    Column("result_text", Text, nullable=False, default=""),
    Column("is_error", Boolean, nullable=False, default=False),
    Column("duration_ms", BigInteger, nullable=False, default=0),
    Column("approval_reason", Text, nullable=False, default=""),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
    # Pending approvals of a session.
    Index("ix_tool_calls_session_state", "user_id", "session_id", "state"),
    # Pending approvals of everyone (the operator API's count): only those rows, so the
    # index stays as small as the set of calls waiting for a user.
    Index(
        "ix_tool_calls_pending",
        "update_time_us",
        postgresql_where=PENDING_APPROVAL,
        sqlite_where=PENDING_APPROVAL,
    ),
)

# Tokens per user, model and UTC day, as providers report them, and what they cost
# (budgets and billing).
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("user_id", USER_ID, primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("model", String(200), primary_key=True),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("turns", Integer, nullable=False, default=0),
    *usage_columns(),
    # The priced calls' cost in nano units of ``currency`` ('' while none was priced;
    # money.MIXED_CURRENCY once calls of two currencies met in the row).
    Column("cost_nanos", BigInteger, nullable=False, default=0, server_default="0"),
    Column("currency", String(3), nullable=False, default="", server_default=""),
)

# What each user stores now (the sum of their messages' ``stored_bytes``), kept as a
# counter by every write and delete of a message: the storage quota is checked against
# one row, never a SUM over the user's messages.
user_storage = Table(
    "user_storage",
    metadata,
    Column("user_id", USER_ID, primary_key=True),
    Column("stored_bytes", BigInteger, nullable=False, default=0),
    # The operator's listing: largest first.
    Index("ix_user_storage_stored_bytes", "stored_bytes", "user_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", USER_ID, primary_key=True),
    Column("scope", String(64), primary_key=True),
    Column("request_id", String(256), primary_key=True),
    # What the first request produced: a resource name and/or a serialized response.
    Column("resource", Text, nullable=False, default=""),
    Column("response", LargeBinary, nullable=True),
    Column("create_time_us", BigInteger, nullable=False),
    # What the first request asked (a hash): the same request_id with another request is
    # refused, not answered with the first one's result. Empty for keys older than it.
    Column("fingerprint", String(64), nullable=False, default="", server_default=""),
    # The turn the first request started, which a concurrent duplicate joins (chat turns).
    Column("turn_id", ID, nullable=False, default="", server_default=""),
    # Expiry sweep.
    Index("ix_idempotency_keys_created", "create_time_us"),
)

# A turn's events, kept for resuming it by sequence number (turns/): one row per turn,
# and its events in batches, one row per flush (not per token).
turn_logs = Table(
    "turn_logs",
    metadata,
    Column("turn_id", ID, primary_key=True),
    Column("user_id", USER_ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("replica_id", String(128), nullable=False),
    # The answer the turn's current round writes: where a crash's partial text is put back.
    Column("answer_id", ID, nullable=False),
    Column("last_seq", Integer, nullable=False),
    # No event numbered above this was sent before the next flush: a crash's recovered last
    # event is numbered past it (sequences only grow for every reader).
    Column("seq_limit", Integer, nullable=False, default=0, server_default="0"),
    # The first event not kept, once the log outgrew its bound (0: none cut).
    Column("cut_from", Integer, nullable=False, default=0, server_default="0"),
    Column("stored_bytes", BigInteger, nullable=False),
    Column("ended", Boolean, nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["user_id", "session_id"], ["sessions.user_id", "sessions.id"], ondelete="CASCADE"
    ),
    # Retention and crash sweeps.
    Index("ix_turn_logs_ended_update_time_us", "ended", "update_time_us"),
    Index("ix_turn_logs_user_id_session_id", "user_id", "session_id"),
)

turn_event_batches = Table(
    "turn_event_batches",
    metadata,
    Column("turn_id", ID, primary_key=True),
    Column("first_seq", Integer, primary_key=True),
    Column("last_seq", Integer, nullable=False),
    Column("final", Boolean, nullable=False),  # holds the turn's last event
    Column("data", LargeBinary, nullable=False),  # turns/frames.py encoding
    ForeignKeyConstraint(["turn_id"], ["turn_logs.turn_id"], ondelete="CASCADE"),
)
