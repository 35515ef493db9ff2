"""Titles written by a model: after a session's first answer, a few words in the
conversation's language from the title model (``ChatConfig.title_model``).

Never on the way to the first token, nor to the turn's end: the job starts as the first
turn ends (``TurnEnded.title_pending`` tells the client one is coming) and runs in the
background, bounded in time and in number; whatever goes wrong, the session keeps the
title it has (the first line of its first message) and the turn is untouched. A session
its user named is never retitled: the store's write is conditional on that
(``TurnStore.write_title``), so a rename racing the job wins.
"""

from __future__ import annotations

import asyncio
import logging

from aichat_backend.engine.events import TurnEnded, TurnOutcome
from aichat_backend.engine.requests import TurnRequest
from aichat_backend.engine.turn_store import TurnStore
from aichat_backend.engine.usage import call_usage
from aichat_backend.providers.base import (
    ChatMessage,
    ChatRole,
    ProviderRequest,
    StreamFinished,
    TextChunk,
)
from aichat_backend.providers.catalogue import ModelCatalogue
from aichat_backend.records import BegunTurn

log = logging.getLogger(__name__)

INSTRUCTION = (
    "You write titles for chat conversations. Reply with a title of at most six words "
    "for the conversation below, in the language the user writes in. Reply with the "
    "title only: no quotes, no final period, no explanation."
)
MAX_OUTPUT_TOKENS = 32
# What the model is shown of each side: a title needs the gist, not a 4 MB message.
EXCERPT_CHARS = 2000
MAX_TITLE_CHARS = 80
# Quotes, markdown emphasis and sentence ends a model may wrap a title in (some of them
# typographic or full-width, written as escapes).
QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb*_` "
ENDINGS = ".\u3002!\uff01"


def clean_title(raw: str) -> str:
    """The model's reply as a title: its first non-empty line, without the quotes,
    markdown and final punctuation small models add; empty when nothing is left."""
    line = next((x.strip() for x in raw.splitlines() if x.strip()), "")
    for prefix in ("title:", "Title:", "#"):
        line = line.removeprefix(prefix).strip()
    line = line.strip(QUOTES).rstrip(ENDINGS).strip()
    line = " ".join(line.split())
    if len(line) > MAX_TITLE_CHARS:
        line = line[:MAX_TITLE_CHARS].rsplit(" ", 1)[0] + "…"
    return line


def starts_conversation(req: TurnRequest, begun: BegunTurn) -> bool:
    """Whether this turn starts a session's conversation (its first message: sequences
    only grow, so a cleared session's next turn is not one; a regenerated first answer
    is not a new conversation) on the sessions API (the OpenAI-compatible door sends
    conversations whole, for callers that keep their own)."""
    first = begun.user_message.seq == 1 and not req.regenerate
    return req.conversation is None and first


class TitleWriter:
    def __init__(
        self,
        store: TurnStore,
        catalogue: ModelCatalogue,
        model: str,
        *,
        timeout_seconds: float = 20.0,
        max_concurrent: int = 4,
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._model = model
        self._timeout = timeout_seconds
        self._max = max_concurrent
        self._jobs: set[asyncio.Task[None]] = set()

    def after_first_answer(self, user_id: str, question: str, ended: TurnEnded) -> bool:
        """A session's first turn ended: title it if the model answered. Whether a title
        is coming (``TurnEnded.title_pending``)."""
        if ended.outcome is not TurnOutcome.COMPLETED:
            return False
        message = ended.message
        return self.schedule(user_id, message.session_id, question, message.text)

    def schedule(self, user_id: str, session_id: str, question: str, answer: str) -> bool:
        """Start titling the session in the background; False when no job was started
        (as many run as allowed: the session keeps its first-line title)."""
        if len(self._jobs) >= self._max:
            log.info("title skipped: %d titles being written", len(self._jobs))
            return False
        job = asyncio.get_running_loop().create_task(
            self._title(user_id, session_id, question, answer), name=f"title {session_id}"
        )
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return True

    async def settled(self) -> None:
        """Wait for the titles being written now (tests; shutdown)."""
        while self._jobs:
            await asyncio.wait(list(self._jobs))

    async def aclose(self) -> None:
        """Shutdown: titles not written yet are given up (the sessions keep theirs)."""
        for job in list(self._jobs):
            job.cancel()
        await self.settled()

    async def _title(self, user_id: str, session_id: str, question: str, answer: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                title = clean_title(await self._ask(user_id, question, answer))
                if title:
                    written = await self._store.write_title(user_id, session_id, title)
                    log.info("session titled", extra={"session": session_id, "written": written})
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            log.warning("title model timed out", extra={"model": self._model})
        except Exception as exc:  # a background job: it fails alone, the title stays
            log.warning(
                "title not written",
                extra={"model": self._model, "error": type(exc).__name__, "detail": str(exc)},
            )

    async def _ask(self, user_id: str, question: str, answer: str) -> str:
        entry = self._catalogue.get(self._model)
        provider = self._catalogue.provider_for(self._model)
        request = ProviderRequest(
            model=entry.model_name,
            system_prompt=INSTRUCTION,
            messages=(
                ChatMessage(
                    ChatRole.USER,
                    f"User: {question[:EXCERPT_CHARS]}\n\nAssistant: {answer[:EXCERPT_CHARS]}",
                ),
            ),
            temperature=entry.temperature,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            thinking_budget_tokens=0,  # a title is not worth thinking about
        )
        parts: list[str] = []
        finished: StreamFinished | None = None
        async with provider.stream(request) as events:
            async for event in events:
                if isinstance(event, TextChunk):
                    parts.append(event.text)
                elif isinstance(event, StreamFinished):
                    finished = event
        # Paid for like any call: the user's usage and cost of the day (ListUsage, GetMyUsage).
        usage = call_usage(self._model, finished, self._catalogue.prices_of)
        if usage is not None:
            await self._store.record_usage(user_id, usage)
        return "".join(parts)
