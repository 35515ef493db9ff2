"""Settings of a chat turn: the model, its context, attachments, PDFs.

Fields only: ``config.Settings`` combines them and reads them. Each ``description`` is what
docs/configuration.md says about the variable (``make gen`` writes it from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1024 * 1024


class ChatFields(BaseSettings):
    # --- chat -------------------------------------------------------------------------
    llm_provider: str = Field(
        "openai",
        description="openai, anthropic, ollama, vllm, openrouter, gemini or openai-compatible.",
    )
    llm_model: str = Field(
        "gpt-4o-mini", description="Model id (and catalogue name) when no models file is set."
    )
    api_key: str | None = Field(
        None,
        description=(
            "The provider's key; empty counts as none (chat then answers FAILED_PRECONDITION, "
            "PROVIDER_NOT_CONFIGURED)."
        ),
    )
    llm_base_url: str | None = Field(
        None,
        description=(
            "The provider's endpoint, e.g. http://localhost:11434/v1 for Ollama (default: the "
            "provider's own)."
        ),
    )
    llm_temperature: float | None = Field(
        None, ge=0, le=2, description="0 to 2 (default: the provider's)."
    )
    provider_timeout_seconds: float = Field(30.0, gt=0, description="Per upstream request.")
    llm_http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description=(
            "The HTTP client under the provider SDKs: aiohttp (~40% less CPU per streamed chunk, "
            "measured) or httpx (their default)."
        ),
    )
    provider_max_retries: int = Field(
        2, ge=0, le=10, description="Retries before the first token (then fallbacks)."
    )
    models_file: Path | None = Field(
        None,
        description=(
            "Model catalogue (seed 003's llms.yml: name, provider, base_url, api_key: ${ENV}, "
            "model_name, fallbacks)."
        ),
    )
    # The env-configured model's limits and reasoning (a models file says them per model).
    llm_context_window: int | None = Field(
        None,
        gt=0,
        description=(
            "Context window (tokens) of the env-configured model; unset: the table of known "
            "models (providers/model_limits.py), else 8192."
        ),
    )
    llm_max_output_tokens: int | None = Field(
        None,
        gt=0,
        description=(
            "Largest answer (tokens) of the env-configured model; unset: the known-model "
            "table, else at most half the window."
        ),
    )
    llm_reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = (
        Field(
            None,
            description="OpenAI-family reasoning_effort for the env-configured model (unset: "
            "the provider's default).",
        )
    )
    llm_thinking_budget_tokens: int = Field(
        0,
        ge=0,
        description=(
            "Anthropic extended thinking budget for the env-configured model (0: off; at least "
            "1024 when on)."
        ),
    )
    anthropic_prompt_caching: bool = Field(
        True,
        description=(
            "Cache points on the system prompt and the conversation so far, for Anthropic "
            "models whose catalogue entry does not say prompt_caching."
        ),
    )
    default_system_prompt: str = Field("", description="Used when a session has none.")
    title_model: str = Field(
        "",
        description=(
            "The catalogue model that titles a session after its first answer: a few words in "
            "the conversation's language, written in the background once the turn has ended "
            "(TurnEnded.title_pending says one is coming). Empty (the default): no model is "
            "asked, and a session is titled by its first message (its first 60 characters), "
            "as it is meanwhile and whenever the title model fails. A cheap, fast model "
            "suits it; a "
            "session named by its user (CreateSession or UpdateSession display_name) is never "
            "retitled."
        ),
    )
    title_timeout_seconds: float = Field(
        20.0, gt=0, le=120, description="How long the title model may take before it is given up."
    )
    title_max_concurrent: int = Field(
        4,
        ge=1,
        description=(
            "Titles written at once per process; past it a new session keeps its first-line title."
        ),
    )
    memory_default: int = Field(
        20,
        ge=1,
        description=(
            "Most messages of history read per turn when a session does not say; of those, "
            "the newest that fit the model's context window are sent. Reading 100 costs "
            "about 1 ms more per turn than 20 (measured), hence the default."
        ),
    )
    memory_max: int = Field(
        500, ge=1, description="Most messages of history a session may ask for."
    )
    context_margin_ratio: float = Field(
        0.05,
        ge=0,
        lt=0.5,
        description=(
            "Part of a model's context window never filled, for the error of the offline "
            "token count (bytes/3, corrected by the provider's counts)."
        ),
    )
    compaction_enabled: bool = Field(
        True,
        description=(
            "Fold older messages into a stored summary when a conversation outgrows the "
            "model's window (false: leave them out)."
        ),
    )
    compaction_model: str = Field(
        "",
        description="Catalogue name of the model that writes summaries (empty: the turn's).",
    )
    compaction_keep_ratio: float = Field(
        0.5,
        gt=0,
        le=0.9,
        description=(
            "Part of the room a compaction keeps verbatim (the newest messages), so the "
            "next turns fit without another."
        ),
    )
    compaction_summary_max_tokens: int = Field(
        1024, ge=64, description="Longest summary a compaction writes (tokens)."
    )
    max_attachment_bytes: int = Field(10 * MIB, ge=1, description="Largest attachment.")
    max_attachments_per_message: int = Field(
        10, ge=0, description="Most attachments on one message."
    )
    heartbeat_seconds: float = Field(
        5.0, gt=0, le=60, description="Heartbeat events while nothing else happens on a stream."
    )
    app_name: str = Field(
        "Galaxy Chat",
        min_length=1,
        max_length=100,
        description="The web chat's name (seed 003's APP_NAME).",
    )
    pdf_max_pages: int = Field(
        100, ge=1, description="A PDF with more pages is refused (PDF_TOO_MANY_PAGES)."
    )
    pdf_max_chars: int = Field(
        200_000, ge=1, description="A PDF with more extracted text is refused (PDF_TEXT_TOO_LONG)."
    )
    pdf_cpu_seconds: float = Field(
        5.0,
        gt=0,
        description="CPU budget of one PDF's reading (RLIMIT_CPU in the worker; PDF_TOO_COSTLY).",
    )
    pdf_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "Wall clock for one PDF, waiting for a worker included (past it the worker is "
            "replaced)."
        ),
    )
    pdf_max_memory_mib: int = Field(1024, ge=128, description="Memory cap of a PDF worker.")
    pdf_workers: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "PDFs read at once (worker processes, started at the first PDF); 0: one per core, "
            "at least two. A user has at most one PDF read at a time."
        ),
    )
    pdf_cooldown_seconds: float = Field(
        30.0,
        ge=0,
        description=(
            "A user whose PDF was refused as too costly waits this long before the next "
            "(RESOURCE_EXHAUSTED, PDF_COOLING_DOWN)."
        ),
    )
