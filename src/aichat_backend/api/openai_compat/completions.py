"""One chat completion: the request becomes a ChatService turn, its events the response.

The turn is ``ChatServicer.run_turn``, StreamChat's own (inside the user's limits,
counted, its events numbered and logged, so it can be resumed with StreamTurnEvents), never
detached: a client that hangs up cancels it and its partial answer is stored INCOMPLETE.

Where the turn is stored: in the session the request names (``X-Aichat-Session`` or
``metadata.aichat_session``), or else in a new session made for this request, holding the
conversation it gave. The answer's ``aichat.session`` says which.

How its events become the response: ``completion_turn``.
"""

from __future__ import annotations

from aichat_backend import names
from aichat_backend.api.chat_service import ChatServicer
from aichat_backend.domain import Session
from aichat_backend.engine.requests import TurnRequest
from aichat_backend.engine.sessions import SessionManager
from aichat_backend.errors import NotFound
from aichat_backend.providers.catalogue import provider_kind
from aichat_backend.reasons import Reason
from aichat_backend.request_context import current_user

from .completion_turn import CompletionTurn
from .messages import last_user_message, whole_conversation
from .params import CompletionParams, invalid, unsupported

SESSION_HEADER = "x-aichat-session"
SOURCE_LABEL = "aichat.source"


class Completions:
    def __init__(self, chat: ChatServicer, sessions: SessionManager) -> None:
        self._chat = chat
        self._sessions = sessions
        self._catalogue = chat.engine.catalogue

    async def start(self, params: CompletionParams, session_header: str) -> CompletionTurn:
        """Checks, the session, and the turn ready to run (it runs as it is read)."""
        self._check_model(params)
        user = current_user()
        named = _named_session(session_header, params.session)
        if named:
            if params.tools:
                raise unsupported(
                    "tools", "the caller's own tools are used without a session (no header)"
                )
            if params.labels:
                raise unsupported("metadata", "only aichat_session is read with a session")
            given = last_user_message(params.messages)
            session, conversation, created = names.session(named), None, False
        else:
            given = whole_conversation(params.messages)
            labels = {SOURCE_LABEL: "openai-api", **params.labels}
            draft = Session(
                user_id=user,
                id="",
                model=params.model,
                system_prompt=given.system_prompt,
                labels=labels,
            )
            session = (await self._sessions.create(user, draft)).name
            conversation, created = given.conversation, True
        recorder = self._chat.turns.recorder(session)
        request = TurnRequest(
            user_id=user,
            session=session,
            text=given.text,
            attachments=given.files,
            model=params.model,
            temperature=params.temperature,
            max_output_tokens=params.max_tokens,
            relay_text=params.stream,  # a whole answer needs no delta per token
            turn_id=recorder.turn_id,
            conversation=conversation,
            client_tools=params.tools,
            stop=params.stop,
            end_user=params.end_user,
            offer_tools=params.offer_tools,
        )
        turn_name = names.turn(names.parse_session(session), recorder.turn_id)
        events = self._chat.run_turn(request, recorder)
        made = (self._sessions, user) if created else None
        return CompletionTurn(events, params, session, turn_name, made)

    def _check_model(self, params: CompletionParams) -> None:
        if not self._catalogue.has(params.model):
            raise NotFound(
                f"The model {params.model[:100]!r} does not exist here; GET /v1/models lists "
                "the models.",
                reason=Reason.MODEL_NOT_IN_CATALOGUE,
                field="model",
            )
        if params.temperature is None:
            return
        entry = self._catalogue.get(params.model)
        for name in (entry.name, *entry.fallbacks):
            if provider_kind(self._catalogue.get(name).provider).family == "anthropic":
                raise unsupported(
                    "temperature",
                    f"model {name!r} is served by Anthropic's Messages API, which takes no "
                    "temperature",
                )


def _named_session(header: str, metadata: str) -> str:
    ids = {v.strip().removeprefix("sessions/") for v in (header, metadata) if v.strip()}
    if len(ids) > 1:
        raise invalid("metadata", "aichat_session names another session than X-Aichat-Session")
    if not ids:
        return ""
    return names.parse_session(names.session(ids.pop()), "session")
