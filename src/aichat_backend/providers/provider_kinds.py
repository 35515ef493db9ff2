"""The provider aliases a catalogue entry may name, and what each needs before use.

An alias picks the SDK family, the default URL, whether a key is required, and how the
entry is reported when something is missing (FAILED_PRECONDITION naming what to set).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from aichat_backend.errors import FailedPrecondition
from aichat_backend.providers.base import MaxTokensParam, ModelEntry
from aichat_backend.reasons import Reason

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


def provider_kind(alias: str) -> ProviderKind:
    try:
        return PROVIDER_KINDS[alias]
    except KeyError:
        known = ", ".join(sorted(PROVIDER_KINDS))
        raise ValueError(f"unknown provider {alias!r} (known: {known})") from None


def effective_base_url(entry: ModelEntry) -> str | None:
    """The URL the SDK client gets (None: an openai-compatible entry without one)."""
    kind = provider_kind(entry.provider)
    base_url = entry.base_url or kind.default_base_url
    if base_url and kind.family == "anthropic":
        # The SDK appends /v1/messages itself; llms.yml files say "https://…/v1".
        base_url = re.sub(r"/v1/?$", "", base_url.rstrip("/")) or base_url
    return base_url


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def not_configured(entry: ModelEntry, missing: list[str]) -> FailedPrecondition:
    """The error for a turn on ``entry`` while ``missing`` (variables or keys) is unset."""
    metadata = {"model": entry.name, "provider": entry.provider}
    variables = [m for m in missing if _ENV_NAME.match(m)]
    if variables:
        metadata["variable"] = variables[0]
    return FailedPrecondition(
        f"Model {entry.name!r} is not configured on this server: set {' and '.join(missing)}.",
        reason=Reason.PROVIDER_NOT_CONFIGURED,
        metadata=metadata,
    )
