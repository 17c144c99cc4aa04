"""One structured-logging pipeline for the API, the workers and the scheduler.

structlog renders every event, our own and the standard library's (Celery,
kombu, uvicorn, asyncpg, aiohttp, apscheduler), as one JSON object per line
on stdout. Ids in scope (request_id, task_id, task_name) come from
contextvars; secrets are masked before anything is rendered.
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
import structlog.tracebacks
from structlog.typing import EventDict, Processor, WrappedLogger

from service.core.settings import redact_secrets

Service = Literal["api", "worker", "scheduler", "cli", "exchange", "dev", "tests"]

_SECRET_KEYS = frozenset(
    {"authorization", "api_key", "apikey", "password", "token", "secret", "cookie", "x-api-key"}
)
# Our API keys (`service.core.users.KEY_PREFIX` + token) are masked wherever they appear in text.
_API_KEY_PREFIX = "fdk_"
_API_KEY = re.compile(r"fdk_[A-Za-z0-9_\-]+")
_NOISY_LOGGERS = {"asyncio": "WARNING", "aiohttp.access": "WARNING", "uvicorn.access": "WARNING"}


def redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask values under secret-looking keys and passwords inside URLs, at any depth."""
    _redact_mapping(event_dict)
    return event_dict


def _redact_mapping(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in mapping.items():
        if key.lower() in _SECRET_KEYS and value:
            mapping[key] = "***"
        else:
            mapping[key] = _redact_value(value)
    return mapping


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        if "://" in value:
            value = redact_secrets(value)
        if _API_KEY_PREFIX in value:
            value = _API_KEY.sub(_API_KEY_PREFIX + "***", value)
        return value
    if isinstance(value, dict):
        return _redact_mapping(dict(value))
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _add_service(service: str) -> Processor:
    def add_service(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours under this key.
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(
    *,
    service: Service,
    level: str = "INFO",
    fmt: Literal["json", "console"] = "json",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and every stdlib logger through one renderer on `stream` (stdout)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service(service),
    ]
    # Stdlib records only: their `extra` fields, then without uvicorn's coloured duplicate.
    foreign: list[Processor] = [*shared, structlog.stdlib.ExtraAdder(), _drop_color_message]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final += [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            # After the exception is rendered, so its messages are masked too.
            redact_processor,
            structlog.processors.JSONRenderer(default=str),
        ]
    else:
        final += [redact_processor, structlog.dev.ConsoleRenderer(colors=False)]

    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=foreign, processors=final)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name, noisy_level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(noisy_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "granian"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
    # billiard (Celery's prefork pool) logs to "multiprocessing" with propagation off, which
    # would fall through to logging's plain-text last-resort handler.
    pool_logger = logging.getLogger("multiprocessing")
    pool_logger.handlers = [handler]
    pool_logger.propagate = False
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            # Drop events below the level before any processor runs (the per-request line
            # otherwise costs its timestamp and context merge even when filtered out).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named `name` that renders through the shared pipeline."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
