"""Liveness and readiness of the real API process, with its dependencies up and down."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from service.dev.embedded import EmbeddedRedis
from tests.processes import serve_api


class TestHealth:
    async def test_health_is_open(self, api_url: str, http: aiohttp.ClientSession) -> None:
        """/health answers 200 without credentials."""
        async with http.get(f"{api_url}/health") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}

    async def test_schema_is_served(self, api_url: str, http: aiohttp.ClientSession) -> None:
        """The OpenAPI document is served at /schema/openapi.json."""
        async with http.get(f"{api_url}/schema/openapi.json") as response:
            assert response.status == 200
            assert "/ready" in (await response.json())["paths"]

    async def test_request_id_is_echoed(self, api_url: str, http: aiohttp.ClientSession) -> None:
        """A caller's X-Request-ID comes back on the response; otherwise one is made."""
        async with http.get(f"{api_url}/health", headers={"X-Request-ID": "abc-123"}) as response:
            assert response.headers["X-Request-ID"] == "abc-123"
        async with http.get(f"{api_url}/health") as response:
            assert len(response.headers["X-Request-ID"]) == 32

    async def test_refused_and_unrouted_requests_carry_the_request_id(
        self, api_url: str, http: aiohttp.ClientSession
    ) -> None:
        """A 401 from the key check and a 404 with no route echo X-Request-ID too."""
        for path, status in (("/api/v1/tasks", 401), ("/nope", 404)):
            headers = {"X-Request-ID": f"edge-{status}", "Authorization": "Bearer fdk_wrong"}
            async with http.get(f"{api_url}{path}", headers=headers) as response:
                assert response.status == status
                assert response.headers["X-Request-ID"] == f"edge-{status}"

    async def test_unknown_route_is_a_problem(
        self, api_url: str, http: aiohttp.ClientSession
    ) -> None:
        """A 404 is RFC 9457 problem details."""
        async with http.get(f"{api_url}/nope") as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"
            body = await response.json()
            assert body["status"] == 404
            assert {"type", "title", "detail"} <= set(body)


class TestReadiness:
    async def test_ready_reflects_redis(
        self, base_env: dict[str, str], scratch_dir: Path, http: aiohttp.ClientSession
    ) -> None:
        """/ready is 200 with both services up and 503 naming redis once Redis stops; every
        line the API prints meanwhile, shutdown included, is JSON."""
        own_redis = EmbeddedRedis(scratch_dir / "ready-redis")
        own_redis.start()
        try:
            with serve_api(
                {**base_env, "REDIS_URL": own_redis.url}, log_path=scratch_dir / "ready-api.log"
            ) as (url, api):
                async with http.get(f"{url}/ready") as response:
                    assert response.status == 200
                    assert (await response.json())["checks"] == {"postgres": "ok", "redis": "ok"}
                own_redis.stop()
                started = time.monotonic()
                async with http.get(f"{url}/ready") as response:
                    body = await response.json()
                    assert response.status == 503
                assert body["down"] == ["redis"]
                assert body["checks"]["postgres"] == "ok"
                assert time.monotonic() - started < 5
                api.stop()
                lines = api.json_lines()  # raises on any line that is not JSON
                assert lines
                assert all(line["service"] == "api" for line in lines)
        finally:
            own_redis.stop()


class TestCors:
    async def test_allowed_origin_only(
        self, base_env: dict[str, str], scratch_dir: Path, http: aiohttp.ClientSession
    ) -> None:
        """With CORS_ORIGINS set, a preflight from that origin is allowed (Authorization
        included) and one from another origin gets no allow header."""
        with serve_api(
            {**base_env, "CORS_ORIGINS": "https://dash.example"},
            log_path=scratch_dir / "cors-api.log",
        ) as (url, _):
            cases = (("https://dash.example", True), ("https://evil.example", False))
            for origin, allowed in cases:
                async with http.options(
                    f"{url}/api/v1/tasks/active",
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "authorization",
                    },
                ) as response:
                    allow = response.headers.get("Access-Control-Allow-Origin")
                    if allowed:
                        assert response.status in (200, 204)
                        assert allow == origin
                        assert (
                            "authorization"
                            in response.headers.get("Access-Control-Allow-Headers", "").lower()
                        )
                    else:
                        assert allow is None
