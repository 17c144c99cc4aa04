"""Subprocess helpers for tests: start, stop, signal and read the logs of real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Every log file a process of this test session wrote to; the session's secrets check
# (tests/conftest.py `logs_hold_no_secrets`) reads them all at the end.
LOG_PATHS: set[Path] = set()


class ManagedProcess:
    """A child process in its own process group, with stdout+stderr in a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        LOG_PATHS.add(log_path)

    @property
    def pid(self) -> int:
        """The child's pid."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the process, appending to its log."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )

    def raise_if_exited(self) -> None:
        """Fail loudly, with the log's tail, if the process died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.args[:4]} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's output."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def log_lines(self) -> list[str]:
        """Every line the process printed so far."""
        return self.log_path.read_text(errors="replace").splitlines()

    def json_lines(self) -> list[dict[str, Any]]:
        """Every printed line parsed as JSON (raises on a line that is not)."""
        return [json.loads(line) for line in self.log_lines() if line.strip()]

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole process group (the worker and its children)."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group, then SIGKILL whatever is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
                self.signal_group(signal.SIGTERM)
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=5)


def wait_until_http_ok(url: str, process: ManagedProcess, timeout: float = 30) -> None:
    """Poll `url` until it answers 200; fail early if `process` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.raise_if_exited()
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s:\n{process.log_tail()}")


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def serve_api(env: dict[str, str], *, log_path: Path) -> Iterator[tuple[str, ManagedProcess]]:
    """The API (`service.api.serve`) with `env` on a free port, until the block ends; yields its
    base URL and process."""
    from service.dev.embedded import free_port

    port = free_port()
    process = ManagedProcess(
        [sys.executable, "-m", "service.api"],
        env={**env, "API_PORT": str(port)},
        log_path=log_path,
    )
    process.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_http_ok(f"{url}/health", process)
        yield url, process
    finally:
        process.stop()
