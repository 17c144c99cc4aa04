"""Composition root of a worker process: `celery -A workers.worker worker`.

Reads settings once and builds the worker's Celery app with every task body.
"""

from __future__ import annotations

from service.core.settings import Settings
from workers.app import create_worker_app

app = create_worker_app(Settings.from_env())
