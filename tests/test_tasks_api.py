"""The task API through the real app, a real worker, real Redis and Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.core import task_registry
from service.core.migrations import migrate
from service.core.users import IssuedKey, create_user, issue_key, revoke_key, revoke_other_keys
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.api_client import Api
from tests.processes import ManagedProcess, serve_api, wait_for

NewUser = Callable[..., Awaitable[IssuedKey]]
pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
async def alice(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Api:
    return Api(http, api_url, (await new_user()).api_key)


@pytest.fixture
async def bob(api_url: str, http: aiohttp.ClientSession, new_user: NewUser) -> Api:
    return Api(http, api_url, (await new_user()).api_key)


@asynccontextmanager
async def own_db_pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on another database than the session's."""
    own = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        yield own
    finally:
        await own.close()


def unique_symbols(n: int) -> list[str]:
    """Symbols nobody else in the session asks for, so duplicate suppression stays out."""
    tag = uuid.uuid4().hex[:5].upper()
    return [f"T{tag}{i}" for i in range(n)]


class TestAuth:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/api/v1/tasks/market-data"),
            ("GET", "/api/v1/tasks/status/x"),
            ("DELETE", "/api/v1/tasks/cancel/x"),
            ("GET", "/api/v1/tasks/active"),
            ("GET", "/api/v1/tasks/workers"),
            ("GET", "/api/v1/tasks"),
            ("GET", "/api/v1/tasks/x/events"),
        ],
    )
    async def test_every_route_needs_a_key(
        self, api_url: str, http: aiohttp.ClientSession, method: str, path: str
    ) -> None:
        """Without a key every /api/v1 route answers 401 problem details with a challenge."""
        status, body, headers = await Api(http, api_url, None).request(method, path, body={})
        assert status == 401
        assert body["status"] == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")

    async def test_every_documented_api_route_needs_a_key(
        self, api_url: str, http: aiohttp.ClientSession
    ) -> None:
        """Every operation the OpenAPI document lists under /api/v1 (tasks, portfolios, reports,
        assets, and any route added later) answers 401 without a key, and says it needs one."""
        async with http.get(f"{api_url}/schema/openapi.json") as response:
            schema = await response.json()
        anonymous = Api(http, api_url, None)
        operations = [
            (method.upper(), re.sub(r"\{[^}]+\}", "1", path), operation)
            for path, item in schema["paths"].items()
            if path.startswith("/api/v1/")
            for method, operation in item.items()
            if method in {"get", "post", "put", "patch", "delete"}
        ]
        assert len(operations) >= 12
        for method, path, operation in operations:
            status, _, _ = await anonymous.request(method, path, body={})
            assert status == 401, (method, path)
            assert operation.get("security", schema.get("security")) == [{"BearerApiKey": []}]

    async def test_wrong_key_is_401(self, api_url: str, http: aiohttp.ClientSession) -> None:
        """An unknown key is refused."""
        status, _, _ = await Api(http, api_url, "fdk_nope").request("GET", "/api/v1/tasks/active")
        assert status == 401

    async def test_revoked_key_fails_next_request(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """A key the API has cached, revoked as `findash users revoke-key` does, fails on the
        very next request, every time (the API caches keys in memory)."""
        for _ in range(10):
            issued = await new_user()
            api = Api(http, api_url, issued.api_key)
            for _ in range(3):
                assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200
            async with pool.acquire() as db:
                assert await revoke_key(db, key_id=issued.key_id)
            assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 401

    async def test_other_invalidations_take_effect_next_request(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """A cached key stops working on the next request after its user loses the admin
        flag, gets a fresh key with the others revoked, or is deleted."""
        admin = await new_user(admin=True)
        api = Api(http, api_url, admin.api_key)
        assert (await api.request("GET", "/api/v1/tasks/workers"))[0] == 200
        await pool.execute("UPDATE users SET is_admin = false WHERE id = $1", admin.user_id)
        assert (await api.request("GET", "/api/v1/tasks/workers"))[0] == 403

        issued = await new_user()
        api = Api(http, api_url, issued.api_key)
        assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200
        async with pool.acquire() as db:
            fresh = await issue_key(db, user_id=issued.user_id)
            assert await revoke_other_keys(db, user_id=issued.user_id, keep_key_id=fresh.key_id)
        assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 401
        api = Api(http, api_url, fresh.api_key)
        assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 200
        await pool.execute("DELETE FROM users WHERE id = $1", issued.user_id)
        assert (await api.request("GET", "/api/v1/tasks/active"))[0] == 401

    async def test_cached_keys_never_cross_users(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """With both keys cached and requests interleaved, each key sees only its own
        user's portfolios and gets 404 for the other's."""
        callers = [Api(http, api_url, (await new_user()).api_key) for _ in range(2)]
        own: list[int] = []
        for caller in callers:
            status, created, _ = await caller.request(
                "POST", "/api/v1/portfolios", body={"name": "mine"}
            )
            assert status == 201
            own.append(created["id"])
        for _ in range(5):
            for me, caller in enumerate(callers):
                status, listed, _ = await caller.request("GET", "/api/v1/portfolios")
                assert status == 200
                assert [p["id"] for p in listed] == [own[me]]
                other = own[1 - me]
                assert (await caller.request("GET", f"/api/v1/portfolios/{other}"))[0] == 404

    async def test_workers_needs_admin(
        self, alice: Api, api_url: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """/tasks/workers is 403 for a plain key and lists the session worker for an admin."""
        assert (await alice.request("GET", "/api/v1/tasks/workers"))[0] == 403
        admin = Api(http, api_url, (await new_user(admin=True)).api_key)
        status, workers, _ = await admin.request("GET", "/api/v1/tasks/workers")
        assert status == 200
        session_worker = next(w for w in workers if w["hostname"].startswith("session@"))
        assert session_worker["concurrency"] == 2
        assert session_worker["queues"] == ["analytics", "market_data", "scheduled"]
        assert session_worker["pool"] == "prefork"
        assert session_worker["heartbeat_age_seconds"] is not None
        assert 0 <= session_worker["heartbeat_age_seconds"] < 30

    async def test_user_id_needs_admin(self, alice: Api) -> None:
        """A plain key may not ask for another user's performance."""
        status, body = await alice.submit("portfolio-performance", {"user_id": 999, "days": 30})
        assert status == 403
        assert body["status"] == 403
        assert [e["field"] for e in body["errors"]] == ["user_id"]


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"symbols": []}, "symbols"),
            ({"symbols": ["not a symbol"]}, "symbols[0]"),
            ({"symbols": ["AAPL"], "period": "7y"}, "period"),
            ({"symbols": ["AAPL"], "colour": "red"}, "colour"),
            ({"period": "1y"}, "symbols"),
            ({"symbols": ["AAPL"], "start": "yesterday"}, "start"),
            ({"symbols": "AAPL"}, "symbols"),
        ],
    )
    async def test_bad_market_data_bodies(
        self, alice: Api, body: dict[str, object], field: str
    ) -> None:
        """Bad input is a 400 problem naming the field, never a 500."""
        status, problem, headers = await alice.request(
            "POST", "/api/v1/tasks/market-data", body=body
        )
        assert status == 400, problem
        assert headers["Content-Type"].startswith("application/problem+json")
        assert {"type", "title", "status", "detail"} <= set(problem)
        assert field in [e["field"] for e in problem["errors"]], problem

    async def test_too_many_symbols(self, alice: Api) -> None:
        """More than 5,000 symbols is refused."""
        status, problem = await alice.submit("market-data", {"symbols": ["A"] * 5001})
        assert status == 400
        assert problem["errors"][0]["field"] == "symbols"

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            ("portfolio-performance", {"days": 0}, "days"),
            ("portfolio-performance", {"days": 3651}, "days"),
            ("portfolio-report", {"days": 30}, "portfolio_id"),
            ("portfolio-report", {"portfolio_id": 1, "format": "pdf"}, "format"),
            ("asset-info", {"symbol": "$$$"}, "symbol"),
        ],
    )
    async def test_other_bodies_are_validated(
        self, alice: Api, path: str, body: dict[str, object], field: str
    ) -> None:
        """Every submit route validates its body at the edge, naming the field."""
        status, problem = await alice.submit(path, body)
        assert status == 400, problem
        assert field in [e["field"] for e in problem["errors"]], problem

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            (
                "market-data",
                {"symbols": ["AAPL"], "start": "2024-02-01", "end": "2024-01-01"},
                "end",
            ),
            ("market-data", {"symbols": ["AAPL"], "period": "1y", "start": "2024-01-01"}, "period"),
            ("portfolio-snapshot", {"start": "2024-01-01"}, "start"),
            ("portfolio-prices", {"symbols": ["A"], "portfolio_ids": [1]}, "symbols"),
        ],
    )
    async def test_rules_across_fields_are_422(
        self, alice: Api, path: str, body: dict[str, object], field: str
    ) -> None:
        """A body that fits the schema but breaks a rule across fields (stated in prose only)
        is a 422 problem naming the field."""
        status, problem = await alice.submit(path, body)
        assert status == 422, problem
        assert field in [e["field"] for e in problem["errors"]], problem

    async def test_malformed_json(self, alice: Api) -> None:
        """A body that is not JSON is a 400 problem."""
        status, problem, _ = await alice.request("POST", "/api/v1/tasks/market-data", raw=b"{nope")
        assert status == 400
        assert problem["status"] == 400

    async def test_oversized_body(self, alice: Api) -> None:
        """A body over MAX_BODY_BYTES is 413."""
        status, problem, _ = await alice.request(
            "POST", "/api/v1/tasks/market-data", raw=b'{"symbols": ["' + b"A" * 1_100_000 + b'"]}'
        )
        assert status == 413
        assert problem["status"] == 413

    async def test_bad_history_query(self, alice: Api) -> None:
        """Unknown states, bad cursors and out-of-range limits are 400s naming the parameter."""
        for query, field in [
            ("state=DONE", "state"),
            ("cursor=zzz", "cursor"),
            ("limit=0", "limit"),
        ]:
            status, problem, _ = await alice.request("GET", f"/api/v1/tasks?{query}")
            assert status == 400, (query, problem)
            assert field in json.dumps(problem)


class TestSubmitAndFollow:
    async def test_submit_runs_and_reports(self, alice: Api, pool: asyncpg.Pool) -> None:
        """A market-data submit is 202, runs on the worker, and its status shows the result."""
        symbols = unique_symbols(5)
        status, answer = await alice.submit(
            "market-data", {"symbols": [s.lower() for s in symbols] + ["ZZBOGUS"]}
        )
        assert status == 202
        assert answer["status"] == "submitted"
        final = await alice.wait_finished(answer["task_id"])
        assert final["state"] == "SUCCESS"
        result = final["result"]
        assert result["requested"] == 6
        assert result["fetched"] == 5
        assert [f["symbol"] for f in result["failed"]] == ["ZZBOGUS"]
        stored = await pool.fetchval(
            "SELECT count(DISTINCT symbol) FROM daily_prices WHERE symbol = ANY($1)", symbols
        )
        assert stored == 5
        code, polled = await alice.status_of(answer["task_id"])
        assert code == 200
        assert polled["state"] == "SUCCESS"
        assert polled["progress"] == {
            "current": 6,
            "total": 6,
            "message": polled["progress"]["message"],
        }
        assert polled["started_at"] is not None
        assert polled["finished_at"] is not None

    async def test_request_id_reaches_the_task_logs(
        self, alice: Api, worker: ManagedProcess
    ) -> None:
        """The X-Request-ID of a submit travels in the Celery message to the worker, and every
        worker line of that task carries it."""
        request_id = f"req-{uuid.uuid4().hex}"
        status, answer = await alice.submit(
            "market-data", {"symbols": unique_symbols(2)}, headers={"X-Request-ID": request_id}
        )
        assert status == 202
        task_id = answer["task_id"]
        assert (await alice.wait_finished(task_id))["state"] == "SUCCESS"

        def task_lines() -> list[dict[str, object]]:
            return [line for line in worker.json_lines() if line.get("task_id") == task_id]

        assert wait_for(lambda: bool(task_lines()), timeout=10)
        assert {line.get("request_id") for line in task_lines()} == {request_id}

    async def test_events_stream_shows_progress(self, alice: Api) -> None:
        """The events stream sends PROGRESS updates and ends with the final state."""
        status, answer = await alice.submit("market-data", {"symbols": unique_symbols(40)})
        assert status == 202
        states: list[str] = []
        async with alice.session.get(
            f"{alice.base_url}/api/v1/tasks/{answer['task_id']}/events", headers=alice.headers()
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    states.append(json.loads(line[5:])["state"])
        assert states[-1] == "SUCCESS"
        assert states.count("SUCCESS") == 1

    async def test_asset_info_is_accepted(self, alice: Api) -> None:
        """fetch_asset_info, the last body to land (issue 4), is accepted like the others."""
        status, answer = await alice.submit("asset-info", {"symbol": "AAPL"})
        assert status == 202, answer
        assert answer["status"] == "submitted"


class TestIsolation:
    async def test_other_users_tasks_are_invisible(self, alice: Api, bob: Api) -> None:
        """Bob cannot see, poll, stream, cancel or list Alice's task: 404 like a missing one."""
        _, answer = await alice.submit("market-data", {"symbols": unique_symbols(2)})
        task_id = answer["task_id"]
        missing = str(uuid.uuid4())
        for probe in (task_id, missing):
            assert (await bob.request("GET", f"/api/v1/tasks/status/{probe}"))[0] == 404
            assert (await bob.request("GET", f"/api/v1/tasks/{probe}/events"))[0] == 404
            assert (await bob.request("DELETE", f"/api/v1/tasks/cancel/{probe}"))[0] == 404
        _, history, _ = await bob.request("GET", "/api/v1/tasks")
        assert task_id not in [t["task_id"] for t in history["tasks"]]
        _, active, _ = await bob.request("GET", "/api/v1/tasks/active")
        assert task_id not in [t["task_id"] for t in active]
        await alice.wait_finished(task_id)


class TestAdminListing:
    async def test_cross_user_history_needs_admin(
        self,
        alice: Api,
        bob: Api,
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """Listing another user's tasks is 403 for a plain key and works for an admin."""
        _, answer = await alice.submit("market-data", {"symbols": unique_symbols(1)})
        alice_id = await pool.fetchval(
            "SELECT owner_id FROM tasks WHERE id = $1", answer["task_id"]
        )
        status, problem, _ = await bob.request("GET", f"/api/v1/tasks?user_id={alice_id}")
        assert status == 403
        assert [e["field"] for e in problem["errors"]] == ["user_id"]
        admin = Api(http, api_url, (await new_user(admin=True)).api_key)
        status, page, _ = await admin.request("GET", f"/api/v1/tasks?user_id={alice_id}")
        assert status == 200
        assert answer["task_id"] in [t["task_id"] for t in page["tasks"]]
        await alice.wait_finished(answer["task_id"])

    async def test_admin_reads_any_task_by_id(
        self, alice: Api, api_url: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """An admin key reads another user's task by id and follows its stream; cancelling it
        stays its owner's (404 for the admin)."""
        _, answer = await alice.submit("market-data", {"symbols": unique_symbols(1)})
        task_id = answer["task_id"]
        admin = Api(http, api_url, (await new_user(admin=True)).api_key)
        status, task = await admin.status_of(task_id)
        assert (status, task["task_id"]) == (200, task_id)
        assert (await admin.wait_finished(task_id))["state"] == "SUCCESS"
        assert (await admin.request("DELETE", f"/api/v1/tasks/cancel/{task_id}"))[0] == 404


class TestIdempotency:
    async def test_same_key_same_body_replays(self, alice: Api) -> None:
        """A repeated Idempotency-Key with the same body returns the first answer."""
        body = {"symbols": unique_symbols(2)}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        first = await alice.submit("market-data", body, headers=key)
        await alice.wait_finished(first[1]["task_id"])
        second = await alice.submit("market-data", body, headers=key)
        assert first == second
        assert first[0] == 202

    async def test_same_key_other_body_is_422(self, alice: Api) -> None:
        """Reusing a key with a different body is a 422 problem."""
        key = {"Idempotency-Key": uuid.uuid4().hex}
        assert (await alice.submit("market-data", {"symbols": unique_symbols(1)}, headers=key))[
            0
        ] == 202
        status, problem = await alice.submit(
            "market-data", {"symbols": unique_symbols(1)}, headers=key
        )
        assert status == 422
        assert problem["status"] == 422

    async def test_keys_are_scoped_per_api_key(self, alice: Api, bob: Api) -> None:
        """The same Idempotency-Key from two API keys makes two tasks."""
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body = {"symbols": unique_symbols(1)}
        _, a = await alice.submit("market-data", body, headers=key)
        _, b = await bob.submit("market-data", body, headers=key)
        assert a["task_id"] != b["task_id"]


class TestDuplicatesAndCancel:
    async def test_identical_unfinished_submit_joins(
        self, alice: Api, api_url: str, exchange: str, http: aiohttp.ClientSession
    ) -> None:
        """An identical submit while the first is unfinished answers 200 with the same id."""
        await http.put(f"{exchange}/_sim/config", json={"latency_ms": 300})
        try:
            body = {"symbols": unique_symbols(30)}
            first = await alice.submit("market-data", body)
            second = await alice.submit("market-data", body)
        finally:
            await http.put(f"{exchange}/_sim/config", json={"latency_ms": 0})
        assert first[0] == 202
        assert second == (200, {"task_id": first[1]["task_id"], "status": "existing"})
        await alice.wait_finished(first[1]["task_id"])
        third = await alice.submit("market-data", body)
        assert third[0] == 202

    async def test_cancel_running_task(
        self, alice: Api, exchange: str, http: aiohttp.ClientSession, pool: asyncpg.Pool
    ) -> None:
        """A running task stops within 2 s of cancel and ends REVOKED."""
        await http.put(f"{exchange}/_sim/config", json={"latency_ms": 500})
        try:
            symbols = unique_symbols(200)
            _, answer = await alice.submit("market-data", {"symbols": symbols})
            task_id = answer["task_id"]
            deadline = time.monotonic() + 20
            while (await alice.status_of(task_id))[1]["state"] != "PROGRESS":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            started = time.monotonic()
            status, body, _ = await alice.request("DELETE", f"/api/v1/tasks/cancel/{task_id}")
            assert status == 202
            assert body["task_id"] == task_id
            final = await alice.wait_finished(task_id, within=10)
            assert final["state"] == "REVOKED"
            assert time.monotonic() - started < 2.5
        finally:
            await http.put(f"{exchange}/_sim/config", json={"latency_ms": 0})
        stored = await pool.fetchval(
            "SELECT count(DISTINCT symbol) FROM daily_prices WHERE symbol = ANY($1)", symbols
        )
        assert stored < len(symbols)
        status, _, _ = await alice.request("DELETE", f"/api/v1/tasks/cancel/{task_id}")
        assert status == 409

    async def test_cancel_queued_task_never_runs(
        self, alice: Api, exchange: str, http: aiohttp.ClientSession, pool: asyncpg.Pool
    ) -> None:
        """A task cancelled while queued ends REVOKED without ever starting."""
        await http.put(f"{exchange}/_sim/config", json={"latency_ms": 400})
        try:
            blockers = [
                (await alice.submit("market-data", {"symbols": unique_symbols(40)}))[1]["task_id"]
                for _ in range(2)
            ]
            _, queued = await alice.submit("market-data", {"symbols": unique_symbols(3)})
            status, body, _ = await alice.request(
                "DELETE", f"/api/v1/tasks/cancel/{queued['task_id']}"
            )
            assert (status, body["state"]) == (202, "REVOKED")
            for blocker in blockers:
                await alice.request("DELETE", f"/api/v1/tasks/cancel/{blocker}")
        finally:
            await http.put(f"{exchange}/_sim/config", json={"latency_ms": 0})
        await asyncio.sleep(1.0)
        row = await pool.fetchrow(
            "SELECT state, started_at, attempts FROM tasks WHERE id = $1", queued["task_id"]
        )
        assert row["state"] == "REVOKED"
        assert row["started_at"] is None
        assert row["attempts"] == 0


class TestHistory:
    async def test_pagination_newest_first(self, alice: Api) -> None:
        """History pages walk every task once, newest first, and filter by state and name."""
        ids = []
        for _ in range(5):
            _, answer = await alice.submit("market-data", {"symbols": unique_symbols(1)})
            ids.append(answer["task_id"])
        for task_id in ids:
            await alice.wait_finished(task_id)
        seen: list[str] = []
        cursor = None
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            status, page, _ = await alice.request("GET", f"/api/v1/tasks?{query}")
            assert status == 200
            seen += [t["task_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen[:5] == list(reversed(ids))
        assert len(seen) == len(set(seen))
        _, filtered, _ = await alice.request(
            "GET", "/api/v1/tasks?state=SUCCESS&name=fetch_market_data&limit=200"
        )
        assert {t["state"] for t in filtered["tasks"]} == {"SUCCESS"}
        _, none, _ = await alice.request("GET", "/api/v1/tasks?name=generate_portfolio_report")
        assert none["tasks"] == []


class TestResilience:
    async def test_broker_down_is_fast_503(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: NewUser,
        http: aiohttp.ClientSession,
    ) -> None:
        """With Redis (broker and limiter) down, a submit is a 503 problem within 2 s, the task
        is recorded as FAILURE (BrokerUnavailable), and a retry with the same
        Idempotency-Key once Redis is back queues it."""
        own_redis = EmbeddedRedis(scratch_dir / "broker-down-redis")
        own_redis.start()
        try:
            with serve_api(
                {**base_env, "REDIS_URL": own_redis.url},
                log_path=scratch_dir / "broker-down-api.log",
            ) as (url, _):
                client = Api(http, url, (await new_user()).api_key)
                own_redis.stop()
                started = time.monotonic()
                key = {"Idempotency-Key": uuid.uuid4().hex}
                body = {"symbols": ["AAPL"]}
                status, problem = await client.submit("market-data", body, headers=key)
                elapsed = time.monotonic() - started
                assert status == 503, problem
                assert problem["status"] == 503
                assert elapsed < 2.5
                _, history, _ = await client.request("GET", "/api/v1/tasks")
                (failed,) = history["tasks"]
                assert failed["state"] == "FAILURE"
                assert failed["error"]["type"] == "BrokerUnavailable"
                own_redis.start()
                status, answer = await client.submit("market-data", body, headers=key)
                assert status == 202, answer
                assert answer["task_id"] != failed["task_id"]
        finally:
            own_redis.stop()

    async def test_redis_down_cancel_is_503(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: NewUser,
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
    ) -> None:
        """With Redis down, cancelling (which sets the task's cancel flag) is a 503 problem
        with Retry-After, not a 500, and the task is left as it was."""
        own_redis = EmbeddedRedis(scratch_dir / "cancel-down-redis")
        own_redis.start()
        try:
            with serve_api(
                {**base_env, "REDIS_URL": own_redis.url},
                log_path=scratch_dir / "cancel-down-api.log",
            ) as (url, _):
                issued = await new_user()
                async with pool.acquire() as connection:
                    task_id, _ = await task_registry.record_submission(
                        connection,
                        task_id=str(uuid.uuid4()),
                        owner_id=issued.user_id,
                        name="fetch_market_data",
                        params={"symbols": unique_symbols(1)},
                        request_id=None,
                    )
                own_redis.stop()
                client = Api(http, url, issued.api_key)
                status, problem, headers = await client.request(
                    "DELETE", f"/api/v1/tasks/cancel/{task_id}"
                )
                assert status == 503, problem
                assert headers["Content-Type"].startswith("application/problem+json")
                assert headers["Retry-After"]
                assert (await client.status_of(task_id))[1]["state"] == "PENDING"
        finally:
            own_redis.stop()

    async def test_no_workers_is_an_empty_list(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: NewUser,
        http: aiohttp.ClientSession,
    ) -> None:
        """With no worker on its broker, /tasks/workers answers 200 with an empty list."""
        own_redis = EmbeddedRedis(scratch_dir / "no-workers-redis")
        own_redis.start()
        try:
            with serve_api(
                {**base_env, "REDIS_URL": own_redis.url},
                log_path=scratch_dir / "no-workers-api.log",
            ) as (url, _):
                admin = Api(http, url, (await new_user(admin=True)).api_key)
                status, workers, _ = await admin.request("GET", "/api/v1/tasks/workers")
                assert (status, workers) == (200, [])
        finally:
            own_redis.stop()

    async def test_postgres_down_is_503(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
    ) -> None:
        """With Postgres down, an authenticated route (the key check needs the database) is a
        503 problem, not a 500; /ready names postgres."""
        own_postgres = EmbeddedPostgres(scratch_dir / "down-postgres", durable=False)
        own_postgres.start()
        try:
            await migrate(own_postgres.url)
            with serve_api(
                {**base_env, "DATABASE_URL": own_postgres.url},
                log_path=scratch_dir / "postgres-down-api.log",
            ) as (url, _):
                async with own_db_pool(own_postgres.url) as own_pool, own_pool.acquire() as db:
                    issued = await create_user(db, email="down@test.findash", is_admin=False)
                client = Api(http, url, issued.api_key)
                assert (await client.request("GET", "/api/v1/tasks/active"))[0] == 200
                own_postgres.stop()
                for method, path in (
                    ("GET", "/api/v1/tasks/active"),
                    ("POST", "/api/v1/tasks/market-data"),
                ):
                    status, problem, headers = await client.request(
                        method, path, body={"symbols": ["AAPL"]}
                    )
                    assert status == 503, (path, problem)
                    assert headers["Content-Type"].startswith("application/problem+json")
                async with http.get(f"{url}/ready") as response:
                    assert response.status == 503
                    assert (await response.json())["down"] == ["postgres"]
        finally:
            own_postgres.stop()

    async def test_rate_limit_per_key(
        self,
        base_env: dict[str, str],
        scratch_dir: Path,
        new_user: NewUser,
        http: aiohttp.ClientSession,
    ) -> None:
        """Past SUBMIT_RATE_LIMIT a key gets 429 with Retry-After; another key is unaffected."""
        # A day-long window, so no window boundary falls between the submits.
        with serve_api(
            {**base_env, "SUBMIT_RATE_LIMIT": "3/day"}, log_path=scratch_dir / "rate-limit-api.log"
        ) as (url, _):
            first = Api(http, url, (await new_user()).api_key)
            second = Api(http, url, (await new_user()).api_key)
            codes = [
                (await first.submit("market-data", {"symbols": unique_symbols(1)}))[0]
                for _ in range(4)
            ]
            assert codes[:3] == [202, 202, 202]
            assert codes[3] == 429
            status, _, headers = await first.request(
                "POST", "/api/v1/tasks/market-data", body={"symbols": ["A"]}
            )
            assert status == 429
            assert int(headers["Retry-After"]) >= 1
            assert (await second.submit("market-data", {"symbols": unique_symbols(1)}))[0] == 202
