"""Serving Prometheus metrics: bounded label values, a scrape endpoint for a process, and the
worker's multiprocess directory (docs/PROMETHEUS.md).

Every metric family is named `findash_*`; its label values come from small closed sets
(task names from the contracts, queue names, provider names), never from user input.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry

from service.core.contracts import CONTRACTS
from service.core.settings import Settings

OTHER = "other"
TASK_NAMES = frozenset(contract.name for contract in CONTRACTS)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def task_label(name: str | None) -> str:
    """`name` if it is a known task, else "other": a label value never comes from a message."""
    return name if name in TASK_NAMES else OTHER


def worker_metrics_dir(settings: Settings) -> Path:
    """This worker instance's multiprocess directory: one per metrics port, since two
    instances on a host cannot share a port (and must not share a directory)."""
    base = settings.worker_metrics_dir or str(Path(tempfile.gettempdir()) / "findash-metrics")
    return Path(base) / f"worker-{settings.worker_metrics_port}"


def api_metrics_dir(settings: Settings) -> Path:
    """The API's multiprocess directory when API_WORKERS > 1 (one per API port)."""
    base = settings.worker_metrics_dir or str(Path(tempfile.gettempdir()) / "findash-metrics")
    return Path(base) / f"api-{settings.api_port}"


def multiprocess_registry() -> CollectorRegistry | None:
    """A registry summing every process's files when this process is in multiprocess mode
    (the API under API_WORKERS > 1, a worker), else None: read the default registry."""
    if not os.environ.get(MULTIPROC_ENV):
        return None
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty `directory` and point prometheus-client at it.

    Call it in the worker's main process before any metric is created (the library picks
    its value class at import; see below) and before the pool forks: the children inherit
    the variable and write one file per pid there; files of an earlier run would otherwise be
    summed in, even under a reused pid.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Already imported in single-process mode: the `celery` command loads its plugins
        # first, and Flower's imports prometheus_client. Metrics created from now on must
        # write to the directory.
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


def serve_multiprocess(*, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve `/metrics` for every process writing to this process's multiprocess directory;
    each scrape reads the files afresh (children recycled, dead ones still summed)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return start_http_server(port, addr=host, registry=registry)


def serve_default(*, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve this single process's metrics (the default registry) on `port`."""
    from prometheus_client import REGISTRY, start_http_server

    return start_http_server(port, addr=host, registry=REGISTRY)
