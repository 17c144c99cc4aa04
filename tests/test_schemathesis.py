"""Property-based fuzzing of the whole documented API: no input gives a server error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis, free_port
from tests.processes import ManagedProcess, wait_until_http_ok


class TestSchemathesis:
    async def test_no_server_errors(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: Callable[..., Awaitable[IssuedKey]],
    ) -> None:
        """schemathesis, with a valid key, finds no 5xx on any route in /schema."""
        # Its own Redis with no worker behind it: fuzzed submits queue up and never run.
        broker = EmbeddedRedis(scratch_dir / "fuzz-redis")
        broker.start()
        port = free_port()
        api = ManagedProcess(
            [sys.executable, "-m", "service.api"],
            env={**base_env, "REDIS_URL": broker.url, "API_PORT": str(port)},
            log_path=scratch_dir / "fuzz-api.log",
        )
        api.start()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_http_ok(f"{url}/health", api)
            key = (await new_user(admin=True)).api_key
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "run",
                    f"{url}/schema/openapi.json",
                    "-H",
                    f"Authorization: Bearer {key}",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    "25",
                    "--request-timeout",
                    "10",
                    "--generation-deterministic",
                    "--exclude-path-regex",
                    "/events$",
                ],
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert done.returncode == 0, done.stdout[-6000:]
            assert "generated" in done.stdout, done.stdout[-2000:]
        finally:
            api.stop()
            broker.stop()
