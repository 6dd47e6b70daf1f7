"""Scoring throughput: 100,000 varied account snapshots through signals.scoring.score, under
the default configuration, with segment overrides, and with ten custom indicators (one of
them in a custom signal) and key features."""

from __future__ import annotations

import math
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from signals.config import HealthConfig
from signals.model import AccountFacts, Band
from signals.scoring import score

ACCOUNTS = 100_000
RUNS = 3
TARGET_PER_SECOND = 100_000


# Ten custom indicators over the four signals and a custom one, as an admin might define them.
CUSTOM = HealthConfig.model_validate(
    {
        "product": {"key_features": ["Report Exported", "Dashboard Shared"]},
        "custom_signals": [{"name": "adoption", "label": "Adoption", "weight": 0.2}],
        "custom_indicators": [
            {
                "name": f"custom_{n}",
                "label": f"Custom indicator {n}",
                "signal": ("active_use", "collaboration", "mutual_value", "momentum",
                           "adoption")[n % 5],
                "source": {"kind": "product_events", "features": [f"feature {n}"],
                           "aggregation": ("events", "users_per_seat")[n % 2], "days": 30},
                "at_risk": 1.0 if n % 3 else 10.0,
                "healthy": 10.0 if n % 3 else 1.0,
            }
            for n in range(10)
        ],
    }
)  # fmt: skip
CUSTOM_KEYS = tuple(source.key for source in CUSTOM.fact_reads.sources)


def snapshots(count: int, seed: int = 11) -> list[AccountFacts]:
    """Realistic spread, with about one snapshot in five missing some inputs."""
    rng = random.Random(seed)
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def maybe(value: float) -> float | None:
        return None if rng.random() < 0.2 else value

    facts = []
    for index in range(count):
        seats = rng.randint(5, 500)
        monthly = rng.randint(0, seats)
        facts.append(
            AccountFacts(
                account_id=str(index),
                as_of=now,
                attributes={"tier": rng.choice(("smb", "mid", "enterprise"))},
                seats=seats,
                active_users_30d=monthly,
                active_users_prev_30d=rng.randint(0, seats),
                mean_daily_active_users_30d=monthly * rng.uniform(0.02, 0.5),
                last_usage_at=now - timedelta(days=rng.uniform(0, 40)),
                customer_interactions_90d=rng.randint(0, 10),
                total_interactions_90d=rng.randint(10, 30),
                collaboration_events_180d=rng.randint(0, 4),
                contacts_engaged_90d=int(maybe(rng.randint(0, 8)) or 0),
                executives_engaged_90d=rng.randint(0, 2),
                tickets_90d=rng.randint(0, seats),
                escalations_90d=rng.randint(0, 5),
                arr=maybe(rng.uniform(10_000, 500_000)),
                arr_12m_ago=rng.uniform(10_000, 500_000),
                usage_events_30d=monthly * rng.uniform(0, 40),
                usage_events_prev_30d=maybe(rng.randint(0, seats) * rng.uniform(0, 40)),
                key_feature_users_30d=rng.randint(0, monthly),
                custom={key: maybe(rng.uniform(0, 12)) for key in CUSTOM_KEYS},
            )
        )
    return facts


def run() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    accounts = snapshots(ACCOUNTS)
    for label, config in (
        ("default config", HealthConfig()),
        (
            "with 2 segment overrides",
            HealthConfig.model_validate(
                {
                    "segments": [
                        {"name": "enterprise", "match": {"tier": "enterprise"},
                         "changes": {"signals": {"momentum": {"weight": 0.2}}}},
                        {"name": "smb", "match": {"tier": "smb"},
                         "changes": {"bands": {"healthy_min": 75}}},
                    ]
                }
            ),
        ),
        ("with 10 custom indicators", CUSTOM),
    ):  # fmt: skip
        score(accounts[0], config)  # compile the plan outside the timing
        elapsed = math.inf
        for _ in range(RUNS):  # best of RUNS: the machine's noise only ever adds time
            started = time.perf_counter()
            bands = [score(facts, config, previous_band=Band.NEUTRAL).band for facts in accounts]
            elapsed = min(elapsed, time.perf_counter() - started)
        rate = ACCOUNTS / elapsed
        verdict = "meets" if rate >= TARGET_PER_SECOND else "MISSES"
        rows.append(
            (
                f"score() x {ACCOUNTS:,}, {label} (best of {RUNS})",
                f"{rate:,.0f} accounts/s ({elapsed * 1e6 / ACCOUNTS:.1f} us each; "
                f"{verdict} {TARGET_PER_SECOND:,}/s)",
            )
        )
        rows.append(("  at_risk / neutral / healthy", "/".join(
            str(bands.count(band)) for band in (Band.AT_RISK, Band.NEUTRAL, Band.HEALTHY)
        )))  # fmt: skip
    config = HealthConfig()
    tracemalloc.start()
    for facts in accounts[:10_000]:
        score(facts, config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows.append(("peak traced memory, 10,000 scores", f"{peak / 1024:.0f} KiB"))
    return rows


if __name__ == "__main__":
    for name, value in run():
        print(f"{name:55} | {value}")
