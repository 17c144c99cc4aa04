"""Property-based fuzzing of the whole documented API: no input gives a server error, and
every answer is one the OpenAPI document describes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis, free_port
from tests.processes import ManagedProcess, wait_until_http_ok

CONFIG = Path(__file__).with_name("schemathesis.toml")
# CI keeps the run to a few minutes; `just fuzz` raises both for a deeper run.
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "15")
MAX_SECONDS = int(os.environ.get("FUZZ_MAX_SECONDS", "150"))

pytestmark = pytest.mark.timeout(MAX_SECONDS + 120)


class TestSchemathesis:
    async def test_every_check_every_phase(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: Callable[..., Awaitable[IssuedKey]],
    ) -> None:
        """schemathesis with a valid key, every check and every phase (examples, coverage,
        fuzzing, stateful links) finds no 5xx and no answer the schema does not describe."""
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
                    "--config-file",
                    str(CONFIG),
                    "run",
                    f"{url}/schema/openapi.json",
                    "-H",
                    f"Authorization: Bearer {key}",
                    "--checks",
                    "all",
                    # Litestar 2.25 answers OPTIONS on a path served by several handlers with
                    # one handler's methods in `Allow`; OPTIONS is not part of our API.
                    "--exclude-checks",
                    "allow_header_conformance",
                    "--phases",
                    "examples,coverage,fuzzing,stateful",
                    "--max-examples",
                    MAX_EXAMPLES,
                    "--max-time",
                    str(MAX_SECONDS),
                    "--request-timeout",
                    "10",
                    "--seed",
                    "11",
                    "--no-color",
                    "--workers",
                    "2",
                ],
                capture_output=True,
                text=True,
                timeout=MAX_SECONDS + 90,
                check=False,
            )
            output = Path(os.environ.get("FUZZ_OUTPUT", scratch_dir / "schemathesis.out"))
            await asyncio.to_thread(output.write_text, done.stdout + done.stderr)
            assert done.returncode == 0, done.stdout[-8000:]
            assert "Stateful" in done.stdout, done.stdout[-3000:]
            api.raise_if_exited()
        finally:
            api.stop()
            broker.stop()
