"""What a benchmark run measures, at which sizes, and the targets it reports against."""

from __future__ import annotations

from dataclasses import dataclass

PACE_MS = 20.0  # paced streams: 50 tokens/s each
STALL_S = 10 * PACE_MS / 1000  # a gap over 10x the pace is a stall
PACE_KEPT = 0.9  # a level is held only if at least this share of the tokens made arrive
LOAD_CORE_LIMIT = 0.85  # the load core's busy fraction past which a phase is rejected
NOISE_LIMIT = 0.25  # cores' worth of CPU that was not ours: a noisy phase
UNARY_P99_S = 0.050
PEER_LOW_LEVELS = (5, 10, 20, 30, 40)  # held-stream levels tried first for peers only
PEER_SETTLE_S = 120.0  # how long a peer may stay busy after its held streams are cut
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
HEADLINE = "B-sqlite"
BENCH_LIMITS = {
    "AICHAT_RATE_RPS": "1000000",
    "AICHAT_RATE_BURST": "1000000",
    "AICHAT_MAX_CONCURRENT_TURNS_PER_USER": "100000",
}

TARGETS: dict[str, tuple[str, float]] = {
    # key: (comparison, bound)
    "added_ttft_ms_p50": ("<=", 2.5),
    "added_ttft_ms_p99": ("<=", 5.0),
    "added_ttft_vs_floor_ms_p50": ("<=", 1.0),
    "ttft_ratio_p50": ("<=", 1.01),
    "ttft_ratio_p50_half_knee": ("<=", 1.01),
    "added_gap_ms_p99": ("<=", 1.0),
    "streams_held": (">=", 100),
    "cpu_us_per_token": ("<=", 100),
    "cpu_us_per_token_coalesced": ("<=", 15),
    "rss_kib_per_stream": ("<=", 64),
    "idle_rss_mib": ("<=", 120),
    "unary_rps": (">=", 1000),
    "db_writes_before_first_token_outside_begin": ("<=", 0),
}


@dataclass(frozen=True)
class Profile:
    name: str
    warmup: int  # untimed turns per arm first
    idle_samples: int  # per arm, one in flight, instant upstream
    idle_tokens: int
    realistic: tuple[float, float, int]  # upstream ttft ms, inter-token ms, tokens
    low_rate: float  # arrivals/s in the low-load phase
    window_s: float  # arrival window per arm per round
    rounds: int
    db_turns: int
    rss_streams: int
    rss_arms: tuple[str, ...]
    hold_levels: tuple[int, ...]
    hold_s: float  # how long every stream of a level overlaps the others
    held_arms: tuple[str, ...]
    unary_window_s: float
    unary_factors: tuple[float, ...]  # of the CPU-estimated capacity
    # Steps of a fifth more past unary_factors, while they keep passing. The toy run
    # takes one: it proves the climb goes on, and eight cost its test 15 s.
    unary_extra_steps: int
    max_half_knee_rate: float


PROFILES = {
    "toy": Profile(
        name="toy",
        warmup=2,
        idle_samples=8,
        idle_tokens=16,
        realistic=(40.0, 4.0, 8),
        low_rate=8.0,
        window_s=0.6,
        rounds=1,
        db_turns=4,
        rss_streams=20,
        rss_arms=("B-sqlite",),
        hold_levels=(10,),
        hold_s=0.5,
        held_arms=("B-sqlite",),
        unary_window_s=0.6,
        unary_factors=(0.3,),
        unary_extra_steps=1,
        max_half_knee_rate=20.0,
    ),
    "quick": Profile(
        name="quick",
        warmup=10,
        idle_samples=100,
        idle_tokens=16,
        realistic=(300.0, 20.0, 64),
        low_rate=4.0,
        window_s=2.5,
        rounds=1,
        db_turns=30,
        rss_streams=500,
        rss_arms=("B-sqlite",),
        hold_levels=(50, 100, 200, 300),
        hold_s=1.5,
        held_arms=("B-sqlite", "F"),
        unary_window_s=2.0,
        unary_factors=(0.4, 0.6, 0.8, 1.0),
        unary_extra_steps=8,
        max_half_knee_rate=200.0,
    ),
    "full": Profile(
        name="full",
        warmup=50,
        idle_samples=1000,
        idle_tokens=16,
        realistic=(300.0, 20.0, 64),
        low_rate=4.0,
        window_s=8.0,
        rounds=3,
        db_turns=200,
        rss_streams=500,
        rss_arms=("B-sqlite", "B-postgres", "F"),
        hold_levels=(50, 100, 150, 200, 250, 300, 350, 400, 500, 600),
        hold_s=5.0,
        held_arms=("B-sqlite", "B-postgres", "F", "A"),
        unary_window_s=5.0,
        unary_factors=(0.4, 0.55, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25),
        unary_extra_steps=8,
        max_half_knee_rate=200.0,
    ),
}
