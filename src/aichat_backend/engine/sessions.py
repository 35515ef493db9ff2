"""Session management: validation, idempotent creation, updates, paging.

Everything here is scoped by the caller's user id; the API layer passes it in and this
module never learns where it came from.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aichat_backend import names, page_tokens
from aichat_backend.domain import UPDATABLE_SESSION_FIELDS, Message, Page, Session
from aichat_backend.engine.page_bytes import by_bytes, export_pages, export_path_pages, read_page
from aichat_backend.engine.session_store import SessionStore
from aichat_backend.errors import FailedPrecondition, InvalidArgument
from aichat_backend.reasons import Reason
from aichat_backend.records import MAX_REQUEST_ID_LENGTH, SessionSummary

SESSION_ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
MAX_DISPLAY_NAME = 200
MAX_SYSTEM_PROMPT = 100_000
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_TOOL_NAMES = 256
MAX_MODEL_NAME = 200
TITLE_FROM_MESSAGE = 60


@dataclass(slots=True)
class SessionLimits:
    memory_max: int
    idempotency_ttl_seconds: float
    # A ListMessages page stops early past this many bytes of messages (well under the
    # 16 MiB gRPC message limit, and its JSON under Envoy's response body limit).
    page_max_bytes: int = 4 * 1024 * 1024


def check_text(field: str, value: str, reason: Reason = Reason.INVALID_FIELD) -> None:
    """Refuse characters no database stores (PostgreSQL text cannot hold NUL)."""
    if "\x00" in value:
        raise InvalidArgument(
            f"{field} must not contain NUL characters", reason=reason, field=field
        )


def check_request_id(request_id: str) -> None:
    check_text("request_id", request_id, Reason.INVALID_REQUEST_ID)
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID_LENGTH} characters",
            reason=Reason.INVALID_REQUEST_ID,
            field="request_id",
        )


def title_from_message(text: str) -> str:
    """A session title from the first user message: its first line, shortened."""
    first = " ".join(text.strip().split())
    if len(first) <= TITLE_FROM_MESSAGE:
        return first
    cut = first[:TITLE_FROM_MESSAGE].rsplit(" ", 1)[0] or first[:TITLE_FROM_MESSAGE]
    return cut + "…"


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        limits: SessionLimits,
        model_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._model_exists = model_exists

    # --- validation -----------------------------------------------------------------

    def _validate(self, values: Mapping[str, Any]) -> None:
        for name in ("display_name", "model", "system_prompt"):
            if name in values:
                check_text(f"session.{name}", values[name])
        for name, value in values.get("labels", {}).items():
            check_text("session.labels", name + value)
        for name in values.get("tool_names", ()):
            check_text("session.tool_names", name)
        if len(values.get("model", "")) > MAX_MODEL_NAME:
            raise InvalidArgument(
                f"model must be at most {MAX_MODEL_NAME} characters",
                reason=Reason.INVALID_FIELD,
                field="session.model",
            )
        if "display_name" in values and len(values["display_name"]) > MAX_DISPLAY_NAME:
            raise InvalidArgument(
                f"display_name must be at most {MAX_DISPLAY_NAME} characters",
                reason=Reason.INVALID_FIELD,
                field="session.display_name",
            )
        if "system_prompt" in values and len(values["system_prompt"]) > MAX_SYSTEM_PROMPT:
            raise InvalidArgument(
                f"system_prompt must be at most {MAX_SYSTEM_PROMPT} characters",
                reason=Reason.INVALID_FIELD,
                field="session.system_prompt",
            )
        if "memory_limit" in values:
            limit = values["memory_limit"]
            if limit < 0 or limit > self._limits.memory_max:
                raise InvalidArgument(
                    f"memory_limit must be between 0 (server default) and "
                    f"{self._limits.memory_max}",
                    reason=Reason.INVALID_FIELD,
                    field="session.memory_limit",
                )
        if "labels" in values:
            labels = values["labels"]
            if len(labels) > MAX_LABELS:
                raise InvalidArgument(
                    f"at most {MAX_LABELS} labels",
                    reason=Reason.INVALID_FIELD,
                    field="session.labels",
                )
            for key, value in labels.items():
                if not LABEL_KEY_RE.match(key) or len(value) > MAX_LABEL_VALUE:
                    raise InvalidArgument(
                        "label keys are 1-63 lowercase letters, digits, '_', '-', '.' "
                        f"starting with a letter; values at most {MAX_LABEL_VALUE} characters",
                        reason=Reason.INVALID_FIELD,
                        field="session.labels",
                    )
        if "tool_names" in values:
            names = values["tool_names"]
            if len(names) > MAX_TOOL_NAMES or any(not n or len(n) > 200 for n in names):
                raise InvalidArgument(
                    f"tool_names: at most {MAX_TOOL_NAMES} non-empty names",
                    reason=Reason.INVALID_FIELD,
                    field="session.tool_names",
                )
        if values.get("tools_disabled") and values.get("tool_names"):
            raise InvalidArgument(
                "tools_disabled means no tool at all: leave tool_names empty with it",
                reason=Reason.INVALID_FIELD,
                field="session.tools_disabled",
            )
        model = values.get("model")
        if model and self._model_exists is not None and not self._model_exists(model):
            raise InvalidArgument(
                f"unknown model {model[:80]!r}; ListModels shows the catalogue",
                reason=Reason.UNKNOWN_MODEL,
                field="session.model",
            )

    # --- operations -----------------------------------------------------------------

    async def create(
        self, user_id: str, draft: Session, session_id: str = "", request_id: str = ""
    ) -> Session:
        if session_id and not SESSION_ID_RE.match(session_id):
            raise InvalidArgument(
                "session_id must be 1-63 lowercase letters, digits or hyphens, starting "
                "with a letter and not ending with a hyphen",
                reason=Reason.INVALID_SESSION_ID,
                field="session_id",
            )
        check_request_id(request_id)
        self._validate({f: getattr(draft, f) for f in UPDATABLE_SESSION_FIELDS})
        draft.id = session_id or str(uuid.uuid4())
        return await self._store.create_session(user_id, draft, request_id)

    async def get(self, user_id: str, name: str) -> Session:
        return await self._store.get_session(user_id, names.parse_session(name))

    async def list_sessions(self, user_id: str, page_size: int, page_token: str) -> Page[Session]:
        limit = page_tokens.clamp_page_size(page_size)
        after = None
        if page_token:
            t, sid = page_tokens.decode(page_token, "sessions", user_id, 2)
            if not isinstance(t, int) or not isinstance(sid, str):
                raise page_tokens.invalid_token()
            after = (t, sid)
        items = await self._store.list_sessions(user_id, limit + 1, after)
        token = ""
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            token = page_tokens.encode("sessions", user_id, [last.update_time_us, last.id])
        return Page(items, token)

    async def update(self, user_id: str, name: str, patch: Session, paths: list[str]) -> Session:
        session_id = names.parse_session(name, "session.name")
        if not paths:
            raise InvalidArgument(
                "nothing to update: set update_mask or some updatable field",
                reason=Reason.EMPTY_UPDATE,
                field="update_mask",
            )
        unknown = [p for p in paths if p not in UPDATABLE_SESSION_FIELDS]
        if unknown:
            # Quote a few, shortened: the message travels in trailers, which are small.
            named = ", ".join(repr(p[:64]) for p in unknown[:3])
            more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            raise InvalidArgument(
                f"cannot update {named}{more}; updatable fields: "
                f"{', '.join(UPDATABLE_SESSION_FIELDS)}",
                reason=Reason.INVALID_UPDATE_MASK,
                field="update_mask",
            )
        changes = {p: getattr(patch, p) for p in paths}
        self._validate(changes)

        def tools_unlocked(current: Session) -> None:
            names_after = changes.get("tool_names", current.tool_names)
            disabled_after = changes.get("tools_disabled", current.tools_disabled)
            if disabled_after and names_after:
                raise InvalidArgument(
                    "tools_disabled means no tool at all: leave tool_names empty with it",
                    reason=Reason.INVALID_FIELD,
                    field="session.tools_disabled",
                )
            if current.tools_locked and (
                sorted(current.tool_names) != sorted(names_after)
                or current.tools_disabled != disabled_after
            ):
                raise FailedPrecondition(
                    "tool_names cannot change after the first message of a session",
                    reason=Reason.TOOLS_LOCKED,
                    metadata={"resource": current.name},
                )

        tools_change = "tool_names" in changes or "tools_disabled" in changes
        check = tools_unlocked if tools_change else None
        return await self._store.update_session(user_id, session_id, changes, check)

    async def delete(self, user_id: str, name: str) -> None:
        await self._store.delete_session(user_id, names.parse_session(name))

    async def list_messages(
        self, user_id: str, parent: str, page_size: int, page_token: str
    ) -> Page[Message]:
        session_id = names.parse_session(parent, "parent")
        limit = page_tokens.clamp_page_size(page_size)
        after = None
        if page_token:
            (seq,) = page_tokens.decode(page_token, f"messages:{session_id}", user_id, 1)
            if not isinstance(seq, int):
                raise page_tokens.invalid_token()
            after = seq
        budget = self._limits.page_max_bytes
        items, more = await read_page(self._store, user_id, session_id, after, limit, budget)
        # The read was bounded in characters; the page is bounded in bytes as it is sent.
        fit = by_bytes(items, budget)
        if fit < len(items) or more:
            items = items[:fit]
            token = page_tokens.encode(f"messages:{session_id}", user_id, [items[-1].seq])
        else:
            token = ""
        return Page(items, token)

    async def clear_messages(self, user_id: str, name: str) -> None:
        await self._store.clear_messages(user_id, names.parse_session(name))

    async def export(
        self, user_id: str, name: str, all_branches: bool = False
    ) -> tuple[Session, SessionSummary, Callable[[], AsyncIterator[list[Message]]]]:
        """The session, its summary, and a reader of its messages a bounded page at a time
        (in bytes; no attachment content) that can be run more than once: the active path,
        or every message of every branch."""
        session_id = names.parse_session(name)
        session = await self._store.get_session(user_id, session_id)
        summary = await self._store.summarize_session(user_id, session_id)
        read = export_pages if all_branches else export_path_pages
        return session, summary, read(self._store, user_id, session_id)
