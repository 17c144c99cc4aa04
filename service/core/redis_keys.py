"""Every Redis key findash writes, in one place: prefixes and the functions that build keys.

Each prefix names one family of keys and no prefix starts another, so a `SCAN` over one
family never matches keys of another. Celery's own keys (broker queues,
`celery-task-meta-*` results) are Celery's business and are not listed here.
"""

from __future__ import annotations

PREFIX = "findash:"
WORKER_HEARTBEAT = f"{PREFIX}worker-heartbeat:"
CANCEL = f"{PREFIX}cancel:"
PROVIDER_RATE_LIMIT = f"{PREFIX}ratelimit:"
FETCH_JOB = f"{PREFIX}fetchjob:"
SUBMIT_RATE_LIMIT = f"{PREFIX}rl:"
EVENT_STREAMS = f"{PREFIX}streams:"
# One sorted set: worker hostname -> last heartbeat (unix seconds), so liveness is one ZCOUNT.
WORKERS_ALIVE = f"{PREFIX}workers-alive"
# How long a heartbeat keeps a worker counted alive (and its own key's TTL).
WORKER_HEARTBEAT_TTL_SECONDS = 120

FAMILIES = (
    WORKER_HEARTBEAT,
    CANCEL,
    PROVIDER_RATE_LIMIT,
    FETCH_JOB,
    SUBMIT_RATE_LIMIT,
    EVENT_STREAMS,
    WORKERS_ALIVE,
)


def worker_heartbeat_key(hostname: str) -> str:
    """The key holding worker `hostname`'s last heartbeat (unix seconds)."""
    return f"{WORKER_HEARTBEAT}{hostname}"


def cancel_key(task_id: str) -> str:
    """The key whose presence asks task `task_id` to stop."""
    return f"{CANCEL}{task_id}"


def provider_rate_limit_key(name: str) -> str:
    """The key holding limiter `name`'s next free request slot (GCRA timestamp)."""
    return f"{PROVIDER_RATE_LIMIT}{name}"


def fetch_job_key(job_id: str, part: str) -> str:
    """The key of one part (`spec`, `chunks`, `pending`, …) of chunked fetch `job_id`."""
    return f"{FETCH_JOB}{job_id}:{part}"


def submit_window_key(namespace: str, key: str, window_start: int) -> str:
    """The counter of hits by `key` in the fixed window starting at `window_start`."""
    return f"{SUBMIT_RATE_LIMIT}{namespace}:{key}:{window_start}"


def event_streams_key(key: str) -> str:
    """The sorted set of API key `key`'s open event streams, scored by lease expiry."""
    return f"{EVENT_STREAMS}{key}"
