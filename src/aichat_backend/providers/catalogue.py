"""The model catalogue: which names callers may ask for and how each reaches its LLM.

Built once at start-up from the models file (its format: ``catalogue_file``). A missing
key is not a start-up error: the server starts, and only turns on that model fail, with
FAILED_PRECONDITION naming what to set. The provider aliases live in ``provider_kinds``,
the building of SDK clients in ``sdk_clients``; their names are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from aichat_backend.errors import InvalidArgument
from aichat_backend.providers.base import MIN_THINKING_BUDGET, ChatProvider, ModelEntry
from aichat_backend.providers.catalogue_file import parse_catalogue_file, read_catalogue_text
from aichat_backend.providers.catalogue_model_keys import DEFAULT_CURRENCY
from aichat_backend.providers.model_limits import resolve_limits
from aichat_backend.providers.pricing import ModelPrices
from aichat_backend.providers.provider_kinds import (
    DEFAULT_KEY_VARIABLE,
    PROVIDER_KINDS,
    ProviderKind,
    effective_base_url,
    not_configured,
    provider_kind,
)
from aichat_backend.providers.retry import StreamTarget
from aichat_backend.providers.sdk_clients import HttpClientKind, build_provider, sdk_http_client
from aichat_backend.reasons import Reason

__all__ = [
    "DEFAULT_KEY_VARIABLE",
    "PROVIDER_KINDS",
    "HttpClientKind",
    "ModelCatalogue",
    "ProviderKind",
    "build_provider",
    "effective_base_url",
    "load_catalogue",
    "parse_catalogue",
    "provider_kind",
    "sdk_http_client",
]


class ModelCatalogue:
    """The configured models; one provider (SDK client) per entry, built on first use."""

    def __init__(
        self,
        entries: Sequence[ModelEntry],
        *,
        default_name: str | None = None,
        timeout_seconds: float = 60.0,
        http_client: HttpClientKind = "aiohttp",
        key_variable: str = DEFAULT_KEY_VARIABLE,
        setup_hints: Mapping[str, Sequence[str]] | None = None,
        prompt_caching: bool = False,
    ) -> None:
        """``setup_hints``: per entry, what an operator must set to make it usable (the
        unset ``${VAR}``s; ``load_catalogue`` fills it). Entries without a hint that
        lack a key name ``key_variable`` (the env-configured single model's key).
        ``prompt_caching``: the default of entries that do not say (Anthropic ones)."""
        if not entries:
            raise ValueError("the model catalogue has no models")
        self._entries: dict[str, ModelEntry] = {}
        for given in entries:
            entry = _resolved(given, prompt_caching)
            if entry.name in self._entries:
                raise ValueError(f"model {entry.name!r} is defined twice")
            self._entries[entry.name] = entry
        for entry in entries:
            for fallback in entry.fallbacks:
                if fallback == entry.name or fallback not in self._entries:
                    raise ValueError(
                        f"model {entry.name!r}: fallback {fallback!r} is not another model "
                        "of the catalogue"
                    )
        if default_name is not None and default_name not in self._entries:
            raise ValueError(f"default model {default_name!r} is not in the catalogue")
        currencies = {e.prices.currency for e in self._entries.values() if e.prices is not None}
        if len(currencies) > 1:
            # Costs are summed into one budget and one report: they must be one currency.
            raise ValueError(f"the models' prices are in several currencies: {sorted(currencies)}")
        self.currency = currencies.pop() if currencies else DEFAULT_CURRENCY
        self.default_name = default_name or entries[0].name
        self._timeout = timeout_seconds
        self._http_client: HttpClientKind = http_client
        self._key_variable = key_variable
        self._hints = {name: list(hint) for name, hint in (setup_hints or {}).items()}
        self._providers: dict[str, ChatProvider] = {}

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def has(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise InvalidArgument(
                f"Unknown model {name[:100]!r}.",
                reason=Reason.UNKNOWN_MODEL,
                field="model",
                metadata={"model": name[:100]},
            )
        return entry

    def prices_of(self, name: str) -> ModelPrices | None:
        """A model's prices (in ``currency``); None when it has none or is not known."""
        entry = self._entries.get(name)
        return entry.prices if entry is not None else None

    def is_configured(self, name: str) -> bool:
        """False when turns on this model would fail for want of a key or URL."""
        return not self._missing_setup(self.get(name))

    def provider_for(self, name: str) -> ChatProvider:
        provider = self._providers.get(name)
        if provider is None:
            entry = self.get(name)
            missing = self._missing_setup(entry)
            if missing:
                raise not_configured(entry, missing)
            provider = build_provider(entry, self._timeout, http_client=self._http_client)
            self._providers[name] = provider
        return provider

    def stream_targets(self, name: str) -> list[StreamTarget]:
        """The model and then its fallbacks, for ``open_stream_with_retry``.

        Providers resolve lazily, so a fallback without a key fails (and is skipped)
        only when it is reached.
        """
        entry = self.get(name)
        return [self._target(entry)] + [self._target(self._entries[f]) for f in entry.fallbacks]

    def _target(self, entry: ModelEntry) -> StreamTarget:
        return StreamTarget(
            label=entry.name,
            model=entry.model_name,
            temperature=entry.temperature,
            resolve=lambda: self.provider_for(entry.name),
        )

    async def aclose(self) -> None:
        """Close every SDK client's connection pool (at server shutdown)."""
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()

    def _missing_setup(self, entry: ModelEntry) -> list[str]:
        """What to set before ``entry`` can be used; empty when it is ready."""
        kind = provider_kind(entry.provider)
        missing_key = kind.needs_key and not entry.api_key
        missing_url = kind.base_url_required and not entry.base_url
        if not (missing_key or missing_url):
            return []
        return self._hints.get(entry.name) or [self._key_variable if missing_key else "base_url"]


def _resolved(entry: ModelEntry, prompt_caching: bool) -> ModelEntry:
    """The entry checked, with its limits and prompt caching decided (``ModelEntry``)."""
    if not entry.name:
        raise ValueError("a model entry has an empty name")
    try:
        kind = provider_kind(entry.provider)
    except ValueError as exc:
        raise ValueError(f"model {entry.name!r}: {exc}") from None
    if not entry.model_name:
        raise ValueError(f"model {entry.name!r}: model_name is empty")
    anthropic = kind.family == "anthropic"
    if 0 < entry.thinking_budget_tokens < MIN_THINKING_BUDGET:
        raise ValueError(
            f"model {entry.name!r}: thinking_budget_tokens must be at least "
            f"{MIN_THINKING_BUDGET} (Anthropic refuses less)"
        )
    if entry.thinking_budget_tokens and not anthropic:
        raise ValueError(
            f"model {entry.name!r}: thinking is Anthropic's; OpenAI-compatible models take "
            "reasoning_effort"
        )
    if entry.reasoning_effort and anthropic:
        raise ValueError(
            f"model {entry.name!r}: reasoning_effort is for OpenAI-compatible models; "
            "Anthropic models take thinking and thinking_budget_tokens"
        )
    if entry.prompt_caching and not anthropic:
        raise ValueError(
            f"model {entry.name!r}: prompt_caching marks Anthropic cache points; "
            "OpenAI-compatible providers cache prompts by themselves"
        )
    try:
        limits = resolve_limits(
            entry.provider, entry.model_name, entry.context_window, entry.max_output_tokens
        )
    except ValueError as exc:
        raise ValueError(f"model {entry.name!r}: {exc}") from None
    if entry.thinking_budget_tokens >= limits.max_output_tokens:
        raise ValueError(
            f"model {entry.name!r}: thinking_budget_tokens ({entry.thinking_budget_tokens}) "
            f"must be less than max_output_tokens ({limits.max_output_tokens})"
        )
    caching = entry.prompt_caching if entry.prompt_caching is not None else prompt_caching
    return dataclasses.replace(
        entry,
        fallbacks=list(entry.fallbacks),
        context_window=limits.context_window,
        max_output_tokens=limits.max_output_tokens,
        prompt_caching=caching and anthropic,
    )


# --- loading ---------------------------------------------------------------------------


def load_catalogue(
    path: str | Path,
    env: Mapping[str, str],
    *,
    timeout_seconds: float = 60.0,
    http_client: HttpClientKind = "aiohttp",
    prompt_caching: bool = False,
) -> ModelCatalogue:
    """Read and validate a catalogue file; ``env`` supplies ``${VAR}`` values."""
    return parse_catalogue(
        read_catalogue_text(path),
        env,
        source=str(path),
        timeout_seconds=timeout_seconds,
        http_client=http_client,
        prompt_caching=prompt_caching,
    )


def parse_catalogue(
    text: str,
    env: Mapping[str, str],
    *,
    source: str = "<catalogue>",
    timeout_seconds: float = 60.0,
    http_client: HttpClientKind = "aiohttp",
    prompt_caching: bool = False,
) -> ModelCatalogue:
    parsed = parse_catalogue_file(text, env, source=source)
    try:
        return ModelCatalogue(
            parsed.entries,
            default_name=parsed.default_name,
            timeout_seconds=timeout_seconds,
            http_client=http_client,
            setup_hints=parsed.setup_hints,
            prompt_caching=prompt_caching,
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
