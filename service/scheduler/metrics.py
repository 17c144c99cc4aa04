"""A scheduler replica's Prometheus metrics, served on `SCHEDULER_METRICS_PORT`
(docs/PROMETHEUS.md). Job ids come from the fixed schedule, so labels stay bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LEADER = Gauge("findash_scheduler_leader", "1 while this replica holds the leader lease, else 0.")
FIRES = Counter(
    "findash_scheduler_fires",
    "Scheduled fires by job and outcome: sent, missed (not sent within its grace), failed.",
    ["job", "outcome"],
)
CATCHUP_LAG = Gauge(
    "findash_scheduler_catchup_lag_seconds",
    "How late the newest fire was sent, against its scheduled instant (replica clock).",
)
FIRE_LAG = Histogram(
    "findash_scheduler_fire_lag_seconds",
    "How late each fire was sent, against its scheduled instant, by job.",
    ["job"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
