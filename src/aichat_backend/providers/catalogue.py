"""The model catalogue: which names callers may ask for and how each reaches its LLM.

Loaded once at start-up from a YAML file shaped like the old ``llms.yml``::

    default: gpt-4o-mini            # optional; else the first entry
    models:                         # or ``llms:``, or a bare list
      - name: gpt-4o-mini
        provider: openai            # see PROVIDER_KINDS for the aliases
        model_name: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}  # ${VAR} / ${VAR:-default} from the passed env
        fallbacks: [claude]

A malformed file is a ``ValueError`` (the config layer makes it a start-up error). A
missing key is not: the server starts, and only turns on that model fail, with
FAILED_PRECONDITION naming what to set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai
import yaml

from aichat_backend.errors import FailedPrecondition, InvalidArgument
from aichat_backend.providers.base import ChatProvider, ModelEntry
from aichat_backend.providers.openai_adapter import MaxTokensParam, OpenAIProvider
from aichat_backend.providers.retry import StreamTarget

DEFAULT_KEY_VARIABLE = "AICHAT_API_KEY"


@dataclass(frozen=True)
class ProviderKind:
    family: Literal["openai", "anthropic"]
    # Always passed explicitly: given None, the SDKs would read OPENAI_BASE_URL /
    # ANTHROPIC_BASE_URL from the process environment behind the config layer's back.
    default_base_url: str | None  # None only with base_url_required
    needs_key: bool
    # Keyless local servers still need *some* key: the OpenAI SDK refuses to build without.
    placeholder_key: str = ""
    base_url_required: bool = False
    max_tokens_param: MaxTokensParam = "max_tokens"


PROVIDER_KINDS: dict[str, ProviderKind] = {
    "openai": ProviderKind(
        "openai", "https://api.openai.com/v1", True, max_tokens_param="max_completion_tokens"
    ),
    "anthropic": ProviderKind("anthropic", "https://api.anthropic.com", True),
    "ollama": ProviderKind("openai", "http://localhost:11434/v1", False, "ollama"),
    "vllm": ProviderKind("openai", "http://localhost:8000/v1", False, "EMPTY"),
    "openrouter": ProviderKind("openai", "https://openrouter.ai/api/v1", True),
    "gemini": ProviderKind(
        "openai", "https://generativelanguage.googleapis.com/v1beta/openai/", True
    ),
    "openai-compatible": ProviderKind("openai", None, False, "not-needed", base_url_required=True),
}

_ENTRY_KEYS = {"name", "provider", "model_name", "base_url", "api_key", "fallbacks", "temperature"}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


HttpClientKind = Literal["aiohttp", "httpx"]


def sdk_http_client(family: str, kind: HttpClientKind = "aiohttp") -> Any:
    """The HTTP client under an SDK: aiohttp (the SDKs' own `aiohttp` option), or httpx.

    aiohttp parses HTTP in C: measured here, a streamed chunk costs ~190 µs of CPU
    against ~316 µs through httpx, and a short request 1.3-1.7 ms against 2.2 ms.
    Both keep the SDK's defaults (timeouts, connection limits, redirects).
    """
    if family == "anthropic":
        import anthropic

        return (
            anthropic.DefaultAioHttpClient()
            if kind == "aiohttp"
            else anthropic.DefaultAsyncHttpxClient()
        )
    return openai.DefaultAioHttpClient() if kind == "aiohttp" else openai.DefaultAsyncHttpxClient()


def build_provider(
    entry: ModelEntry,
    timeout_seconds: float,
    max_retries: int = 0,
    http_client: HttpClientKind = "aiohttp",
) -> ChatProvider:
    """One SDK client (one connection pool) wrapped in its adapter.

    ``max_retries`` defaults to 0: the SDKs would retry silently, even mid-turn; our
    own retry (``providers.retry``) only retries before the first token.
    """
    kind = provider_kind(entry.provider)
    base_url = effective_base_url(entry)
    # Never None: the SDKs would fall back to OPENAI_API_KEY / ANTHROPIC_API_KEY.
    api_key = entry.api_key or kind.placeholder_key
    if not api_key or not base_url:
        raise _not_configured(entry, [DEFAULT_KEY_VARIABLE if not api_key else "base_url"])
    if kind.family == "anthropic":
        # Imported on first use: the SDK costs ~40 MB of memory to load.
        import anthropic

        from aichat_backend.providers.anthropic_adapter import AnthropicProvider

        return AnthropicProvider(
            anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout_seconds,
                max_retries=max_retries,
                http_client=sdk_http_client("anthropic", http_client),
            ),
            name=entry.provider,
        )
    return OpenAIProvider(
        openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
            http_client=sdk_http_client("openai", http_client),
        ),
        name=entry.provider,
        max_tokens_param=kind.max_tokens_param,
    )


def effective_base_url(entry: ModelEntry) -> str | None:
    """The URL the SDK client gets (None: an openai-compatible entry without one)."""
    kind = provider_kind(entry.provider)
    base_url = entry.base_url or kind.default_base_url
    if base_url and kind.family == "anthropic":
        # The SDK appends /v1/messages itself; llms.yml files say "https://…/v1".
        base_url = re.sub(r"/v1/?$", "", base_url.rstrip("/")) or base_url
    return base_url


def provider_kind(alias: str) -> ProviderKind:
    try:
        return PROVIDER_KINDS[alias]
    except KeyError:
        known = ", ".join(sorted(PROVIDER_KINDS))
        raise ValueError(f"unknown provider {alias!r} (known: {known})") from None


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
    ) -> None:
        """``setup_hints``: per entry, what an operator must set to make it usable (the
        unset ``${VAR}``s; ``load_catalogue`` fills it). Entries without a hint that
        lack a key name ``key_variable`` (the env-configured single model's key)."""
        if not entries:
            raise ValueError("the model catalogue has no models")
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            _validate_entry(entry)
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
                reason="UNKNOWN_MODEL",
                field="model",
                metadata={"model": name[:100]},
            )
        return entry

    def is_configured(self, name: str) -> bool:
        """False when turns on this model would fail for want of a key or URL."""
        return not self._missing_setup(self.get(name))

    def provider_for(self, name: str) -> ChatProvider:
        provider = self._providers.get(name)
        if provider is None:
            entry = self.get(name)
            missing = self._missing_setup(entry)
            if missing:
                raise _not_configured(entry, missing)
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


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _not_configured(entry: ModelEntry, missing: list[str]) -> FailedPrecondition:
    metadata = {"model": entry.name, "provider": entry.provider}
    variables = [m for m in missing if _ENV_NAME.match(m)]
    if variables:
        metadata["variable"] = variables[0]
    return FailedPrecondition(
        f"Model {entry.name!r} is not configured on this server: set {' and '.join(missing)}.",
        reason="PROVIDER_NOT_CONFIGURED",
        metadata=metadata,
    )


def _validate_entry(entry: ModelEntry) -> None:
    if not entry.name:
        raise ValueError("a model entry has an empty name")
    try:
        provider_kind(entry.provider)
    except ValueError as exc:
        raise ValueError(f"model {entry.name!r}: {exc}") from None
    if not entry.model_name:
        raise ValueError(f"model {entry.name!r}: model_name is empty")


# --- loading ---------------------------------------------------------------------------


def load_catalogue(
    path: str | Path,
    env: Mapping[str, str],
    *,
    timeout_seconds: float = 60.0,
    http_client: HttpClientKind = "aiohttp",
) -> ModelCatalogue:
    """Read and validate a catalogue file; ``env`` supplies ``${VAR}`` values."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the model catalogue {str(path)!r}: {exc.strerror}") from None
    return parse_catalogue(
        text, env, source=str(path), timeout_seconds=timeout_seconds, http_client=http_client
    )


def parse_catalogue(
    text: str,
    env: Mapping[str, str],
    *,
    source: str = "<catalogue>",
    timeout_seconds: float = 60.0,
    http_client: HttpClientKind = "aiohttp",
) -> ModelCatalogue:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML ({exc})") from None
    default_name: str | None = None
    if isinstance(document, dict):
        unknown = set(document) - {"models", "llms", "default"}
        if unknown:
            raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)}")
        raw_entries = document.get("models", document.get("llms"))
        default = document.get("default")
        if default is not None and not isinstance(default, str):
            raise ValueError(f"{source}: 'default' must be a model name")
        default_name = default
    else:
        raw_entries = document
    if not isinstance(raw_entries, list) or not raw_entries:
        raise ValueError(f"{source}: expected a non-empty list of models (under 'models:')")

    entries: list[ModelEntry] = []
    hints: dict[str, list[str]] = {}
    for index, raw in enumerate(raw_entries):
        entry, hint = _parse_entry(raw, env, source, index)
        entries.append(entry)
        if hint:
            hints[entry.name] = hint
    try:
        return ModelCatalogue(
            entries,
            default_name=default_name,
            timeout_seconds=timeout_seconds,
            http_client=http_client,
            setup_hints=hints,
        )
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _parse_entry(
    raw: Any, env: Mapping[str, str], source: str, index: int
) -> tuple[ModelEntry, list[str]]:
    """The entry, and what to set before it is usable (empty when it is)."""
    where = f"{source}: model #{index + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with name, provider and model_name")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: 'name' is required")
    where = f"{where} ({name!r})"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    provider = raw.get("provider")
    if not isinstance(provider, str):
        raise ValueError(f"{where}: 'provider' is required")
    provider = provider.strip().lower()
    try:
        kind = provider_kind(provider)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    model_name = raw.get("model_name")
    if not isinstance(model_name, str) or not model_name.strip():
        raise ValueError(f"{where}: 'model_name' is required")

    key_vars: list[str] = []
    api_key = _substitute(_optional_scalar(raw, "api_key", where), env, key_vars)
    url_vars: list[str] = []
    base_url_raw = _optional_scalar(raw, "base_url", where)
    base_url = _substitute(base_url_raw, env, url_vars)
    if kind.base_url_required and base_url_raw is None:
        raise ValueError(f"{where}: provider {provider!r} needs a base_url")

    fallbacks = raw.get("fallbacks") or []
    if isinstance(fallbacks, str):
        fallbacks = [fallbacks]
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"{where}: 'fallbacks' must be a list of model names")
    temperature = raw.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise ValueError(f"{where}: 'temperature' must be a number")

    entry = ModelEntry(
        name=name.strip(),
        provider=provider,
        model_name=model_name.strip(),
        base_url=base_url or None,
        api_key=api_key or None,
        fallbacks=list(fallbacks),
        temperature=float(temperature) if temperature is not None else None,
    )
    # An empty base_url falls back to the alias's default URL; only a key the provider
    # needs, or a URL it has no default for, leaves the entry unusable.
    hint: list[str] = []
    if kind.needs_key and not entry.api_key:
        hint += key_vars or [f"api_key for {entry.name!r} in {source}"]
    if kind.base_url_required and not entry.base_url:
        hint += url_vars
    return entry, hint


def _optional_scalar(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where}: {key!r} must be a string")
    return str(value)


def _substitute(value: str | None, env: Mapping[str, str], missing: list[str]) -> str | None:
    """Expand ``${VAR}`` / ``${VAR:-default}``; record variables that were unset/empty."""
    if value is None:
        return None

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name, "")
        if found:
            return found
        if default is None:
            missing.append(name)
            return ""
        return default

    return _ENV_REF.sub(expand, value)
