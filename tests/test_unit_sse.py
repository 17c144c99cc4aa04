"""The task event stream's messages on the wire (service/api/tasks.py)."""

from __future__ import annotations

from litestar.response import ServerSentEventMessage

from service.api.tasks import KeepAlive


def _fields(wire: bytes) -> list[str]:
    """The field names of one encoded SSE event, comments as ":"."""
    lines = wire.decode().split("\r\n")
    assert lines[-2:] == ["", ""], "an event ends with a blank line"
    return [":" if line.startswith(":") else line.split(":", 1)[0] for line in lines[:-2]]


class TestKeepAlive:
    def test_is_a_comment_with_no_data(self) -> None:
        """A keep-alive is one comment line and no `data:` field, so an EventSource delivers
        no message for it (Litestar's own comment message carries an empty `data:`)."""
        assert _fields(KeepAlive().encode()) == [":"]
        assert "data" in _fields(ServerSentEventMessage(comment="keep-alive").encode())

    def test_status_events_keep_their_data(self) -> None:
        """A status event still carries its event name and JSON data."""
        assert _fields(ServerSentEventMessage(event="status", data="{}").encode()) == [
            "event",
            "data",
        ]
