"""Composition root of a worker process: `celery -A workers.worker worker`.

Reads settings once and builds the worker's Celery app with every task body. A worker
started with `WORKER_METRICS_PORT` first empties its metrics directory and points
prometheus-client at it, before any module imports the library (docs/PROMETHEUS.md);
other commands that load this app (`celery -A workers.worker inspect …`) leave it alone.
"""

from __future__ import annotations

import sys

from service.core.metrics_exposition import prepare_multiprocess_dir, worker_metrics_dir
from service.core.settings import Settings

settings = Settings.from_env()
serves_metrics = settings.worker_metrics_port > 0 and "worker" in sys.argv[1:]
if serves_metrics:
    prepare_multiprocess_dir(worker_metrics_dir(settings))

from workers.app import create_worker_app  # noqa: E402 - after the metrics directory is set

app = create_worker_app(settings, serve_metrics=serves_metrics)
