"""Settings → each part's own config: the one place a setting's name meets its use."""

from __future__ import annotations

from aichat_backend.config import Settings
from aichat_backend.engine.chat import ChatConfig
from aichat_backend.engine.compaction import CompactionConfig
from aichat_backend.engine.context_budget import ContextConfig
from aichat_backend.engine.pdf_extractor import PdfExtractor, PdfLimits, default_workers
from aichat_backend.engine.sessions import SessionLimits
from aichat_backend.limits.base import LimitSettings
from aichat_backend.money import to_nanos
from aichat_backend.providers.retry import RetryPolicy


def idempotency_ttl_seconds(settings: Settings) -> float:
    return settings.idempotency_ttl_hours * 3600


def session_limits(settings: Settings) -> SessionLimits:
    return SessionLimits(
        memory_max=settings.memory_max,
        idempotency_ttl_seconds=idempotency_ttl_seconds(settings),
        page_max_bytes=min(settings.list_page_max_bytes, settings.max_message_bytes // 2),
    )


def limit_settings(settings: Settings, currency: str) -> LimitSettings:
    """The limits; a cost budget is in ``currency``, the catalogue's (its prices')."""
    return LimitSettings(
        rate_rps=settings.rate_rps,
        rate_burst=settings.rate_burst,
        max_concurrent_turns=settings.max_concurrent_turns_per_user,
        daily_token_budget=settings.daily_token_budget,
        daily_cost_budget_nanos=to_nanos(settings.daily_cost_budget),
        currency=currency,
        exempt_users=settings.exempt_users(),
        storage_quota_bytes=settings.storage_quota_bytes,
    )


def chat_config(settings: Settings) -> ChatConfig:
    return ChatConfig(
        memory_default=settings.memory_default,
        memory_max=settings.memory_max,
        default_system_prompt=settings.default_system_prompt,
        max_attachment_bytes=settings.max_attachment_bytes,
        max_attachments=settings.max_attachments_per_message,
        heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.turn_lease_seconds,
        replica_id=settings.replica_id,
        idempotency_ttl_seconds=idempotency_ttl_seconds(settings),
        retry=RetryPolicy(attempts=settings.provider_max_retries + 1),
        tool_timeout_seconds=settings.tool_timeout_seconds,
        max_tool_rounds=settings.max_tool_rounds,
        approval_ttl_seconds=settings.approval_ttl_seconds,
        context=ContextConfig(
            margin_ratio=settings.context_margin_ratio,
            compaction=settings.compaction_enabled,
            keep_ratio=settings.compaction_keep_ratio,
            summary_max_tokens=settings.compaction_summary_max_tokens,
        ),
        compaction=CompactionConfig(
            model=settings.compaction_model,
            summary_max_tokens=settings.compaction_summary_max_tokens,
            timeout_seconds=max(settings.provider_timeout_seconds, 30.0),
        ),
        title_model=settings.title_model,
        title_timeout_seconds=settings.title_timeout_seconds,
        title_max_concurrent=settings.title_max_concurrent,
    )


def pdf_extractor(settings: Settings) -> PdfExtractor:
    return PdfExtractor(
        PdfLimits(
            max_pages=settings.pdf_max_pages,
            max_chars=settings.pdf_max_chars,
            cpu_seconds=settings.pdf_cpu_seconds,
            timeout_seconds=settings.pdf_timeout_seconds,
            max_memory_bytes=settings.pdf_max_memory_mib * 1024 * 1024,
            workers=settings.pdf_workers or default_workers(),
            cooldown_seconds=settings.pdf_cooldown_seconds,
        )
    )
