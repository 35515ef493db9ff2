"""What the engine reports as it works, for metrics; no-ops unless someone listens."""

from __future__ import annotations

from aichat_backend.domain import Message


class TurnObserver:
    """Subclass and override what you need; every method must be cheap and never raise."""

    def first_token(self, model: str, seconds: float) -> None:
        """Time from the request reaching the engine to the first text of the answer."""

    def tokens(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Usage a provider reported for one model call."""

    def provider_error(self, provider: str, reason: str) -> None:
        """A model call failed (after retries and fallbacks)."""

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        """A tool call ended: outcome "ok", "error" (the tool failed) or "timeout"."""

    def turn_cut_off(self, turn_id: str, message: Message, reason: str) -> None:
        """A turn ended without its last event (its caller left, its deadline passed, an
        error); ``message`` is its answer as stored (or as far as storing got)."""

    def round_started(self, turn_id: str, answer_id: str) -> None:
        """The turn's next round (after tool results) writes the stored ``answer_id``."""


class Observers(TurnObserver):
    """Several observers as one."""

    def __init__(self, *observers: TurnObserver) -> None:
        self._all = observers

    def first_token(self, model: str, seconds: float) -> None:
        for o in self._all:
            o.first_token(model, seconds)

    def tokens(self, model: str, input_tokens: int, output_tokens: int) -> None:
        for o in self._all:
            o.tokens(model, input_tokens, output_tokens)

    def provider_error(self, provider: str, reason: str) -> None:
        for o in self._all:
            o.provider_error(provider, reason)

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        for o in self._all:
            o.tool_call(server, tool, outcome, seconds)

    def turn_cut_off(self, turn_id: str, message: Message, reason: str) -> None:
        for o in self._all:
            o.turn_cut_off(turn_id, message, reason)

    def round_started(self, turn_id: str, answer_id: str) -> None:
        for o in self._all:
            o.round_started(turn_id, answer_id)
