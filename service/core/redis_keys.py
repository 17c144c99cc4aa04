"""Every Redis key findash writes, in one place: prefixes and the functions that build keys.

Celery's own keys (broker queues, `celery-task-meta-*` results) are Celery's business and
are not listed here.
"""

from __future__ import annotations

PREFIX = "findash:"
WORKER_HEARTBEAT = f"{PREFIX}worker-heartbeat:"


def worker_heartbeat_key(hostname: str) -> str:
    """The key holding worker `hostname`'s last heartbeat (unix seconds)."""
    return f"{WORKER_HEARTBEAT}{hostname}"
