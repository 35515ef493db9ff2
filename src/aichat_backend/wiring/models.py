"""Settings → the model catalogue the engine and the operator API share."""

from __future__ import annotations

from aichat_backend.config import ConfigError, Settings, process_environment
from aichat_backend.providers.base import ModelEntry
from aichat_backend.providers.catalogue import ModelCatalogue, load_catalogue


def model_catalogue(settings: Settings) -> ModelCatalogue:
    """The catalogue file if one is set, else the single model the AICHAT_LLM_* describe;
    a title model it does not hold is a configuration error (said at start, not later)."""
    catalogue = _catalogue(settings)
    if settings.title_model and not catalogue.has(settings.title_model):
        known = ", ".join(e.name for e in catalogue.entries())
        raise ConfigError(
            f"AICHAT_TITLE_MODEL names {settings.title_model!r}, which is not in the model "
            f"catalogue ({known})"
        )
    return catalogue


def _catalogue(settings: Settings) -> ModelCatalogue:
    if settings.models_file is not None:
        catalogue = load_catalogue(
            settings.models_file,
            process_environment(),
            timeout_seconds=settings.provider_timeout_seconds,
            http_client=settings.llm_http_client,
            prompt_caching=settings.anthropic_prompt_caching,
        )
        return catalogue
    entry = ModelEntry(
        name=settings.llm_model,
        provider=settings.llm_provider,
        model_name=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.api_key,
        temperature=settings.llm_temperature,
        context_window=settings.llm_context_window,
        max_output_tokens=settings.llm_max_output_tokens,
        reasoning_effort=settings.llm_reasoning_effort,
        thinking_budget_tokens=settings.llm_thinking_budget_tokens,
    )
    return ModelCatalogue(
        [entry],
        timeout_seconds=settings.provider_timeout_seconds,
        http_client=settings.llm_http_client,
        key_variable="AICHAT_API_KEY",
        prompt_caching=settings.anthropic_prompt_caching,
    )
