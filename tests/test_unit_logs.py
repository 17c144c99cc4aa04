"""The logging pipeline: one JSON object per line, ids from contextvars, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.core.logs import configure_logging, get_logger


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(service="worker", stream=stream)
    structlog.contextvars.clear_contextvars()
    yield stream
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestLogging:
    def test_structlog_event_fields(self, captured: io.StringIO) -> None:
        """An event carries ISO UTC timestamp, level, logger, service and bound ids."""
        structlog.contextvars.bind_contextvars(task_id="t-1", request_id="r-1")
        get_logger("findash.test").info("hello", n=1)
        (line,) = _lines(captured)
        assert line["event"] == "hello"
        assert line["level"] == "info"
        assert line["logger"] == "findash.test"
        assert line["service"] == "worker"
        assert str(line["timestamp"]).endswith("Z")
        assert (line["task_id"], line["request_id"], line["n"]) == ("t-1", "r-1", 1)

    def test_stdlib_loggers_share_the_pipeline(self, captured: io.StringIO) -> None:
        """A stdlib logger (as Celery uses) renders as JSON with the bound ids."""
        structlog.contextvars.bind_contextvars(task_id="t-2")
        logging.getLogger("celery.worker").warning("stdlib says %s", "hi")
        (line,) = _lines(captured)
        assert (line["event"], line["task_id"], line["level"]) == (
            "stdlib says hi",
            "t-2",
            "warning",
        )

    def test_secrets_are_masked(self, captured: io.StringIO) -> None:
        """Authorization values, API keys and URL passwords never reach the output."""
        get_logger("x").info(
            "connect",
            url="redis://:hunter2@h:1/0",
            authorization="Bearer sk_live",
            api_key="fd_abc",
        )
        logging.getLogger("kombu").info("Connected to postgresql://u:hunter3@h/db")
        get_logger("x").info("retrying with Bearer fdk_AbC-12_xyz", headers={"X-Key": "fdk_Q9"})
        text = captured.getvalue()
        for secret in ("hunter2", "sk_live", "fd_abc", "hunter3", "fdk_AbC-12_xyz", "fdk_Q9"):
            assert secret not in text

    def test_exception_messages_are_masked(self, captured: io.StringIO) -> None:
        """A URL password or an API key inside an exception's message is masked too."""
        try:
            raise ConnectionError("cannot reach redis://:hunter4@h:1/0 with fdk_secret9")
        except ConnectionError:
            get_logger("x").exception("failed")
        text = captured.getvalue()
        assert "hunter4" not in text
        assert "fdk_secret9" not in text
        assert "ConnectionError" in text

    def test_uvicorn_colour_duplicate_is_dropped(self, captured: io.StringIO) -> None:
        """uvicorn's `color_message` extra (ANSI codes) is dropped; other extras are kept."""
        logging.getLogger("uvicorn.error").info(
            "Started server process [%d]", 7, extra={"color_message": "\x1b[36m%d", "port": 1}
        )
        (line,) = _lines(captured)
        assert line["event"] == "Started server process [7]"
        assert "color_message" not in line
        assert line["port"] == 1

    def test_exceptions_are_structured(self, captured: io.StringIO) -> None:
        """An exception is a structured field, without local variables."""
        try:
            password = "in-a-local"  # noqa: F841
            raise ValueError("bad")
        except ValueError:
            get_logger("x").exception("failed")
        (line,) = _lines(captured)
        exception = line["exception"]
        assert isinstance(exception, list)
        assert exception[0]["exc_type"] == "ValueError"
        assert "in-a-local" not in captured.getvalue()
