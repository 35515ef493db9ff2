"""A started completion's turn, read once: as SSE chunks, or as one ``chat.completion``.

The status line of a streamed response waits for the turn's first event worth sending
(text, a heartbeat, the end), so a turn refused or failed before that raises its error
here, before any byte: the HTTP layer answers it with its own code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from aichat.v1 import chat_service_pb2 as cpb
from aichat.v1 import resources_pb2 as rpb
from google.protobuf import json_format

from aichat_backend.api.turn_frames import error_from_status
from aichat_backend.engine.sessions import SessionManager
from aichat_backend.errors import AichatError, Internal
from aichat_backend.reasons import Reason

from .params import CompletionParams
from .wire import (
    DONE,
    KEEPALIVE,
    Chunks,
    Extension,
    ReturnedCall,
    approval_note,
    completion,
    usage_json,
)

log = logging.getLogger(__name__)

Events = AsyncGenerator[cpb.StreamChatResponse, None]


class CompletionTurn:
    """A started request's turn, read once: as a stream of SSE chunks or as one answer."""

    def __init__(
        self,
        events: Events,
        params: CompletionParams,
        session: str,
        turn: str,
        made: tuple[SessionManager, str] | None,
    ) -> None:
        self._events = events
        self._params = params
        self.session = session
        self._made = made  # the session this request made: removed if the turn never began
        self._created = int(time.time())
        self._id = "chatcmpl-" + turn.rsplit("/", 1)[-1]
        self.extension = Extension(session=session, turn=turn)
        self.model = params.model
        self.returned: list[ReturnedCall] = []
        self._started = False
        self._failure: cpb.TurnEnded | None = None
        self._done = False

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The response's SSE events; the first is held until there is something to say."""
        chunks: Chunks | None = None
        async with aclosing(self._events) as events:
            try:
                async for out in events:
                    kind = out.WhichOneof("event")
                    if kind == "turn_started":
                        self._begin(out.turn_started)
                        continue
                    if kind in ("tool_call", "approval_required"):
                        self._note_calls(out)
                        continue
                    if kind == "turn_ended" and not self._ended_well(out.turn_ended):
                        continue  # the turn's stream raises its error next
                    if chunks is None:
                        chunks = Chunks(
                            self._id, self._created, self.model, self._params.include_usage
                        )
                        yield chunks.role()
                    if kind == "text_delta":
                        yield chunks.content(out.text_delta.text)
                    elif kind == "heartbeat":
                        yield KEEPALIVE
                    elif kind == "turn_ended":
                        for piece in self._finish(out.turn_ended, chunks):
                            yield piece
                self._raise_failure()
            except BaseException:
                await self._discard_unused_session()
                raise

    async def collect(self) -> dict[str, object]:
        """The whole answer as one ``chat.completion``."""
        text: list[str] = []
        async with aclosing(self._events) as events:
            try:
                async for out in events:
                    kind = out.WhichOneof("event")
                    if kind == "turn_started":
                        self._begin(out.turn_started)
                    elif kind == "text_delta":
                        text.append(out.text_delta.text)
                    elif kind in ("tool_call", "approval_required"):
                        self._note_calls(out)
                    elif kind == "turn_ended" and self._ended_well(out.turn_ended):
                        ended = out.turn_ended
                        reason = self._finish_reason(ended)
                        if self.extension.pending:
                            text.append(approval_note(self.extension.pending, self.session))
                        usage = usage_json(ended.usage.input_tokens, ended.usage.output_tokens)
                        return completion(
                            self._id,
                            self._created,
                            ended.message.model or self.model,
                            "".join(text),
                            self.returned,
                            reason,
                            usage,
                            self.extension,
                        )
                self._raise_failure()
            except BaseException:
                await self._discard_unused_session()
                raise
        raise Internal("the turn ended without a result", reason=Reason.TURN_WITHOUT_RESULT)

    # --- the events ---------------------------------------------------------------------

    def _begin(self, started: cpb.TurnStarted) -> None:
        self._started = True
        self.model = started.model or self.model

    def _note_calls(self, out: cpb.StreamChatResponse) -> None:
        if out.HasField("tool_call"):
            call = out.tool_call
            if call.state == rpb.TOOL_CALL_STATE_RETURNED:
                self.returned.append(_call(call))
        else:
            self.extension.pending = [_call(c) for c in out.approval_required.tool_calls]

    def _ended_well(self, ended: cpb.TurnEnded) -> bool:
        """Completed or waiting for approval; else the failure is kept for the end (the
        turn's stream raises its error right after this event)."""
        if ended.outcome in (cpb.TURN_OUTCOME_COMPLETED, cpb.TURN_OUTCOME_AWAITING_APPROVAL):
            self._done = True
            return True
        self._failure = ended
        return False

    def _raise_failure(self) -> None:
        """After the turn's stream: a turn that ended badly and whose stream did not raise
        why (never expected), or that ended without its last event."""
        if self._done:
            return
        ended = self._failure
        if ended is not None and ended.HasField("error"):
            raise error_from_status(ended.error)
        raise Internal("the turn ended without an answer", reason=Reason.TURN_WITHOUT_RESULT)

    def _finish_reason(self, ended: cpb.TurnEnded) -> str:
        if ended.outcome == cpb.TURN_OUTCOME_AWAITING_APPROVAL:
            self.extension.outcome = "awaiting_approval"
            return "stop"
        if self.returned:
            return "tool_calls"
        reason = ended.message.finish_reason
        return reason if reason in ("stop", "length", "content_filter") else "stop"

    def _finish(self, ended: cpb.TurnEnded, chunks: Chunks) -> list[bytes]:
        reason = self._finish_reason(ended)
        pieces: list[bytes] = []
        if self.returned:
            pieces.append(chunks.tool_calls(self.returned))
        if self.extension.pending:
            pieces.append(chunks.content(approval_note(self.extension.pending, self.session)))
        pieces.append(chunks.finish(reason, self.extension))
        if self._params.include_usage:
            usage = usage_json(ended.usage.input_tokens, ended.usage.output_tokens)
            pieces.append(chunks.usage(usage))
        pieces.append(DONE)
        return pieces

    async def _discard_unused_session(self) -> None:
        """A session made for a turn that never began (refused by a limit, say) is not
        left behind empty in the user's list."""
        if self._made is None or self._started:
            return
        sessions, user = self._made
        try:
            await sessions.delete(user, self.session)
        except (AichatError, OSError) as exc:
            log.warning("could not remove an unused session: %s", type(exc).__name__)


def _call(call: rpb.ToolCall) -> ReturnedCall:
    return ReturnedCall(call.id, call.tool_name, json_format.MessageToDict(call.arguments))
