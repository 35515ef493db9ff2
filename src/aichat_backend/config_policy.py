"""Settings of limits, the operator API, tools and resumable turns.

Fields only: ``config.Settings`` combines them and reads them. Each ``description`` is what
docs/configuration.md says about the variable (``make gen`` writes it from here).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

MIB = 1024 * 1024


class PolicyFields(BaseSettings):
    # --- limits -----------------------------------------------------------------------
    rate_rps: float = Field(
        5.0, ge=0, description="Requests per second per user (token bucket; 0 = off)."
    )
    rate_burst: int = Field(20, ge=1, description="The token bucket's size.")
    max_concurrent_turns_per_user: int = Field(
        2,
        ge=0,
        description=(
            "Chat turns and direct tool calls (CallTool) running at once per user (0 = unlimited)."
        ),
    )
    daily_token_budget: int = Field(
        0,
        ge=0,
        description=(
            "Input + output tokens per user per UTC day (0 = unlimited; usage is recorded anyway)."
        ),
    )
    daily_cost_budget: Decimal = Field(
        Decimal(0),
        ge=0,
        max_digits=18,
        decimal_places=9,
        description=(
            "What a user's model calls may cost per UTC day, in the models file's currency, "
            "an exact decimal such as 2.50 (0 = unlimited; models without prices cost nothing "
            "here). Refused with COST_BUDGET_EXHAUSTED until UTC midnight."
        ),
    )
    storage_quota_bytes: int = Field(
        1024 * MIB,
        ge=0,
        description=(
            "Bytes of messages and attachments each user may store (their text, reasoning, "
            "files and the text read from them; 0 = unlimited). A message past it is refused "
            "with STORAGE_QUOTA_EXCEEDED until the user deletes sessions or clears messages; "
            "GetMyUsage shows users theirs, AdminService.ListUserStorage everyone's."
        ),
    )
    limits_exempt_users: str = Field(
        "", description="Identities exempt from every limit (internal services), comma separated."
    )
    redis_url: str | None = Field(
        None,
        description=(
            "Shares the limits between replicas; if Redis is down: per-process limits and "
            "aichat.limits.shared NOT_SERVING."
        ),
    )

    # --- operator API -------------------------------------------------------------------
    admin_users: str = Field(
        "", description="User ids that are admins whatever their token says, comma separated."
    )
    admin_role_header: str = Field(
        "x-aichat-role",
        description="The trusted header carrying the caller's roles (change envoy.yaml with it).",
    )
    admin_role: str = Field("admin", description="The role that opens the operator API.")
    api_key_header: str = Field(
        "x-api-key-id",
        description="The trusted header naming the caller's API key (for API-key bypasses).",
    )
    bypass_refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How soon a bypass change made on another replica applies here.",
    )
    model_check: bool = Field(
        True,
        description=(
            "A tiny request to each model at start-up (off for deployments that pay per call)."
        ),
    )
    model_check_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Timeout of each model check."
    )

    # --- tools ------------------------------------------------------------------------
    mcp_servers_file: Path | None = Field(
        None, description="MCP servers (JSON; see docs/tools.md)."
    )
    mcp_stdio_user: str = Field(
        "",
        description=(
            "Who stdio tool servers run as: empty (a root backend starts each as a user of its "
            "own; otherwise as the backend's user), a user name or uid, or same (the backend's "
            "own user, even as root)."
        ),
    )
    tool_timeout_seconds: float = Field(
        30.0, gt=0, description="Per tool call, never past the RPC's deadline."
    )
    max_tool_rounds: int = Field(
        8,
        ge=1,
        le=100,
        description="Model and tools rounds per message, then the model must answer.",
    )
    approval_ttl_seconds: float = Field(
        24 * 3600.0, gt=0, description="Pending approvals expire after this."
    )
    turn_lease_seconds: float = Field(
        10.0,
        ge=3,
        description=(
            "A running turn's claim on its session lasts this long unless renewed (every "
            "third of it, one UPDATE): a crashed replica's sessions take new messages this soon."
        ),
    )
    turn_sweep_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description=(
            "Every replica ends crashed turns (their lease ran out) this often: a crashed "
            "turn's readers get its last event within turn_lease_seconds plus this."
        ),
    )

    # --- resumable turns (turns/) ---------------------------------------------------------
    turn_detached_default: bool = Field(
        False,
        description=(
            "Whether a turn whose caller hangs up runs on (resumable) when the request does not "
            "say."
        ),
    )
    turn_detached_max_seconds: float = Field(
        600.0, gt=0, description="A detached turn's own deadline."
    )
    turn_events_flush_seconds: float = Field(
        0.1,
        gt=0,
        le=5,
        description=(
            "Turn events are stored this long after they are made (at most; a crash loses no more)."
        ),
    )
    turn_events_retention_seconds: float = Field(
        3600.0, gt=0, description="Turn event logs are kept this long after their turn ended."
    )
    turn_events_max_bytes: int = Field(
        8 * MIB,
        ge=64 * 1024,
        description=(
            "Most event bytes stored per turn (past it a resume that needs the rest is "
            "TURN_LOG_TRUNCATED)."
        ),
    )
