"""What the engine reports as it works, for metrics; no-ops unless someone listens."""

from __future__ import annotations


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
