"""A tiny aiohttp client for tests of the real API."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy


class Api:
    """Calls the API at `base_url` as the holder of `api_key`."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str | None) -> None:
        self.session = session
        self.base_url = base_url
        self.api_key = api_key

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Authorization plus `extra`."""
        base = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {**base, **(extra or {})}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        """Send a request; return (status, JSON body or None, headers)."""
        data: Any = (
            io.BytesIO(raw)
            if raw is not None
            else (json.dumps(body).encode() if body is not None else None)
        )
        merged = self.headers({"Content-Type": "application/json", **(headers or {})})
        async with self.session.request(
            method, f"{self.base_url}{path}", data=data, headers=merged
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None, response.headers

    async def submit(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        """POST /api/v1/tasks/<path>."""
        status, answer, _ = await self.request("POST", f"/api/v1/tasks/{path}", body=body, **kwargs)
        return status, answer

    async def status_of(self, task_id: str) -> tuple[int, Any]:
        """GET /api/v1/tasks/status/<id>."""
        status, answer, _ = await self.request("GET", f"/api/v1/tasks/status/{task_id}")
        return status, answer

    async def wait_finished(self, task_id: str, *, within: float = 60) -> dict[str, Any]:
        """Follow the events stream until the task ends; return its last status."""
        last: dict[str, Any] = {}
        async with self.session.get(
            f"{self.base_url}/api/v1/tasks/{task_id}/events",
            headers=self.headers(),
            timeout=aiohttp.ClientTimeout(total=within),
        ) as response:
            assert response.status == 200, await response.text()
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    last = json.loads(line[5:])
        return last


async def ready_and_runs_a_task(api: Api, *, worker_log: Callable[[], str]) -> None:
    """Assert the API is ready with nothing down and a submitted performance run ends
    SUCCESS on the worker (whose `worker_log` tail explains a failure)."""
    status, readiness, _ = await api.request("GET", "/ready")
    assert (status, readiness["down"]) == (200, []), readiness
    status, answer = await api.submit("portfolio-performance", {"days": 30})
    assert status == 202, answer
    final = await api.wait_finished(answer["task_id"], within=60)
    assert final["state"] == "SUCCESS", (final, worker_log())
