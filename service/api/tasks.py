"""`/api/v1/tasks`: submit, follow, list and cancel background tasks.

Handlers orchestrate: validation lives in `task_schemas`, state in `task_registry`,
publishing in `publisher`. Every task belongs to the API key's user; someone else's
task id answers 404 exactly like one that does not exist. Tasks no user owns ("system"
tasks: sent by the scheduler, or fanned out by another task) and other users' tasks are
readable with an admin key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
import structlog
from litestar import Controller, MediaType, Request, Response, delete, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from service.api.auth import admin_only
from service.api.metrics import count_submit
from service.api.openapi_responses import raises
from service.api.polled_reads import PolledQuery, polled_response
from service.api.problems import ProblemException
from service.api.rate_limit import RateLimiter, StreamSlots
from service.api.submit_cost import symbols_requested
from service.api.task_schemas import CancelAccepted, Submitted, WorkerInfo
from service.core import idempotency, task_registry
from service.core.cancellation import request_cancel
from service.core.contracts import TaskContract
from service.core.publisher import BrokerUnavailable, TaskPublisher
from service.core.redis_keys import worker_heartbeat_key
from service.core.task_registry import ACTIVE_STATES, TERMINAL_STATES, TaskStatus
from service.core.users import User

EVENTS_POLL_SECONDS = 0.25
EVENTS_KEEPALIVE_SECONDS = 15.0
EVENTS_MAX_SECONDS = 3600.0
WORKERS_CACHE_SECONDS = 5.0
STATE_NAMES = frozenset((*ACTIVE_STATES, *TERMINAL_STATES))
SYSTEM_OWNER = "system"


class TaskPage(msgspec.Struct, frozen=True):
    """A page of the caller's tasks, newest first; pass `next_cursor` for the next page."""

    tasks: list[TaskStatus]
    next_cursor: str | None


# The list as a dashboard polls it (polled_reads.py): Postgres writes the page, each API
# process keeps it with its version, and `If-None-Match` gets 304 while no task on it changed.
TASK_PAGE = PolledQuery(
    kind="tasks",
    version_sql=task_registry.TASK_PAGE_VERSION,
    body_sql=task_registry.TASK_PAGE_BODY,
    exists="listed",
)
TASK_PAGE_RESPONSES = {
    200: ResponseSpec(
        TaskPage,
        description="One page, newest first. Carries `ETag` and "
        "`Cache-Control: private, no-cache`.",
    ),
    304: ResponseSpec(
        None, description="`If-None-Match` named the current ETag: no task on the page changed."
    ),
}

# A cursor is the last task's submit instant (microseconds since the epoch) and its id in
# hex-encoded UTF-8: any string the pattern admits decodes, so the schema states the rule.
CURSOR_PATTERN = r"^[0-9]{1,16}-([0-9a-f]{2}){1,200}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(*, submitted_at: datetime, task_id: str) -> str:
    """A keyset cursor pointing after the task submitted at `submitted_at` with `task_id`
    (as `task_registry.TASK_PAGE_BODY` writes it)."""
    micros = (submitted_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{task_id.encode().hex()}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of `encode_cursor`, for a cursor matching `CURSOR_PATTERN`."""
    micros, _, task_hex = cursor.partition("-")
    task_id = bytes.fromhex(task_hex).decode(errors="replace").replace("\x00", "\ufffd")
    return _EPOCH + timedelta(microseconds=int(micros)), task_id


# Every task id is a UUID in its canonical lower-case form (the API's and the scheduler's).
TaskId = Annotated[
    str,
    Parameter(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="The `task_id` a submit answered with",
    ),
]
_STATE_CHOICE = "|".join(sorted(STATE_NAMES))
STATE_FILTER_PATTERN = f"^({_STATE_CHOICE})(,({_STATE_CHOICE}))*$"


def _bad_field(field: str, message: str, *, status: int = 400) -> ProblemException:
    exc = ProblemException(status=status, detail=f"invalid {field}")
    exc.extra = [{"message": message, "key": field, "source": "query"}]
    return exc


def _admin_field(field: str) -> ProblemException:
    """403 naming the query parameter that only an admin key may pass."""
    exc = ProblemException(status=403, detail=f"{field} needs an admin API key")
    exc.extra = [{"message": "needs an admin API key", "key": field, "source": "query"}]
    return exc


def readable_by(user: User) -> int | None:
    """Whose tasks `user` may read one by one: their own, or (an admin) anyone's and the
    system's (None)."""
    return None if user.is_admin else user.id


class TaskController(Controller):
    """Background tasks of the calling user."""

    path = "/tasks"
    tags = ["tasks"]

    @get("/status/{task_id:str}", summary="A task's state, progress and result")
    async def status(self, request: Request[User, int, State], task_id: TaskId) -> TaskStatus:
        """The task's status; 404 if it is not the caller's (an admin reads any task,
        scheduler-sent ones included)."""
        async with request.app.state.pool.acquire() as connection:
            found = await task_registry.get_status(
                connection, task_id=task_id, owner_id=readable_by(request.user)
            )
        if found is None:
            raise ProblemException(status=404, detail=f"no task {task_id}")
        return found

    @delete(
        "/cancel/{task_id:str}",
        status_code=202,
        summary="Cancel a queued or running task",
        opt=raises(409),
    )
    async def cancel(self, request: Request[User, int, State], task_id: TaskId) -> CancelAccepted:
        """A queued task never runs; a running one stops within 2 s; a finished one is 409."""
        state = request.app.state
        async with state.pool.acquire() as connection:
            found = await task_registry.get_status(
                connection, task_id=task_id, owner_id=request.user.id
            )
            if found is None:
                raise ProblemException(status=404, detail=f"no task {task_id}")
            if found.state in TERMINAL_STATES:
                raise ProblemException(
                    status=409, detail=f"task {task_id} already finished ({found.state})"
                )
            await request_cancel(state.redis, task_id)
            if await task_registry.mark_revoked_if_pending(connection, task_id=task_id):
                await state.publisher.revoke(task_id)
                return CancelAccepted(task_id=task_id, state="REVOKED")
            await task_registry.note_cancel_requested(connection, task_id=task_id)
            current = await task_registry.get_status(
                connection, task_id=task_id, owner_id=request.user.id
            )
        return CancelAccepted(task_id=task_id, state=current.state if current else found.state)

    @get(
        "/active",
        summary="The caller's unfinished tasks",
        responses={200: ResponseSpec(list[TaskStatus], description="Newest first.")},
    )
    async def active(self, request: Request[User, int, State]) -> Response[bytes]:
        """PENDING, STARTED, PROGRESS and RETRY tasks, newest first."""
        async with request.app.state.pool.acquire() as connection:
            tasks = await task_registry.active_statuses(
                connection, owner_id=request.user.id, limit=500
            )
        return Response(content=tasks.encode(), media_type=MediaType.JSON)

    @get(
        "/",
        summary="The caller's task history, newest first",
        responses=TASK_PAGE_RESPONSES,
        opt=raises(403, 422),
    )
    async def history(
        self,
        request: Request[User, int, State],
        state_filter: Annotated[
            str | None,
            Parameter(
                query="state",
                pattern=STATE_FILTER_PATTERN,
                max_length=200,
                description="A state, or comma-separated states, e.g. `PENDING,STARTED`",
            ),
        ] = None,
        name: Annotated[
            str | None, Parameter(query="name", max_length=100, pattern="^[a-z0-9_]+$")
        ] = None,
        limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None,
            Parameter(
                query="cursor",
                pattern=CURSOR_PATTERN,
                description="`next_cursor` of the previous page",
            ),
        ] = None,
        user_id: Annotated[
            int | None,
            Parameter(
                query="user_id", ge=1, le=2**53 - 1, description="Another user's (admin only)"
            ),
        ] = None,
        owner: Annotated[
            Literal["system"] | None,
            Parameter(
                query="owner",
                description="`system`: the tasks no user owns, sent by the scheduler or"
                " fanned out by another task (admin only; excludes `user_id`)",
            ),
        ] = None,
    ) -> Response[bytes]:
        """One page of tasks; `next_cursor` is null on the last page."""
        owner_id: int | None = request.user.id
        if owner == SYSTEM_OWNER:
            if not request.user.is_admin:
                raise _admin_field("owner")
            if user_id is not None:
                # A rule across two parameters, which the schema cannot state: 422.
                raise _bad_field("owner", "owner and user_id exclude each other", status=422)
            owner_id = None
        elif user_id is not None and user_id != owner_id:
            if not request.user.is_admin:
                raise _admin_field("user_id")
            owner_id = user_id
        states = state_filter.split(",") if state_filter else None
        async with request.app.state.pool.acquire() as connection:
            response = await polled_response(
                connection,
                query=TASK_PAGE,
                args=task_registry.list_args(
                    owner_id=owner_id,
                    ownerless=owner == SYSTEM_OWNER,
                    states=states,
                    name=name,
                    limit=limit,
                    before=decode_cursor(cursor) if cursor else None,
                ),
                if_none_match=request.headers.get("if-none-match"),
                cache=request.app.state.bodies,
            )
        assert response is not None  # a list always exists
        return response

    @get(
        "/{task_id:str}/events",
        summary="Server-sent events until the task ends",
        opt=raises(429),
    )
    async def events(self, request: Request[User, int, State], task_id: TaskId) -> ServerSentEvent:
        """`status` events on every state or progress change; the stream ends with the task.
        Readable like `status`. A key holds at most SSE_STREAMS_PER_KEY open streams; the
        next one is a 429."""
        state = request.app.state
        pool: asyncpg.Pool = state.pool
        owner_id = readable_by(request.user)
        async with pool.acquire() as connection:
            first = await task_registry.get_status(connection, task_id=task_id, owner_id=owner_id)
        if first is None:
            raise ProblemException(status=404, detail=f"no task {task_id}")
        slots: StreamSlots = state.stream_slots
        key = str(request.user.key_id)
        slot = await slots.acquire(key)
        if slot is None:
            raise ProblemException(
                status=429,
                detail=f"this API key already has {state.settings.sse_streams_per_key} open "
                "event streams; close one first",
                headers={"Retry-After": "5"},
            )
        stream = _status_stream(pool, first, owner_id=owner_id)
        return ServerSentEvent(_holding_slot(stream, slots=slots, key=key, slot=slot))

    @get("/workers", guards=[admin_only], summary="Celery workers (admin)")
    async def workers(self, request: Request[User, int, State]) -> list[WorkerInfo]:
        """Each worker's pool, concurrency, active and processed counts, queues, heartbeat age."""
        state = request.app.state
        cached = getattr(state, "workers_cache", None)
        if cached is not None and time.monotonic() - cached[0] < WORKERS_CACHE_SECONDS:
            return list(cached[1])
        try:
            raw = await state.publisher.inspect_workers()
        except (TimeoutError, OSError) as exc:
            raise ProblemException(status=503, detail=f"workers did not answer: {exc}") from None
        hosts = sorted(raw)
        stamps = (
            await state.redis.mget([worker_heartbeat_key(host) for host in hosts]) if hosts else []
        )
        now = time.time()
        infos = [
            worker_info(host, raw[host], heartbeat_age_seconds=heartbeat_age(stamp, now=now))
            for host, stamp in zip(hosts, stamps, strict=True)
        ]
        state.workers_cache = (time.monotonic(), infos)
        return infos


async def submit(request: Request[User, int, State], task: TaskContract) -> Response[Any]:
    """Record `task` for the caller (or find its unfinished twin) and publish it if new.

    The database connection is released before the publish (up to PUBLISH_TIMEOUT_SECONDS),
    so a slow broker cannot drain the pool; the row is committed before any worker can see
    the message.
    """
    state = request.app.state
    user = request.user
    await _charge(request, task)
    idem_key = request.headers.get("idempotency-key")
    if idem_key is not None and not 1 <= len(idem_key) <= idempotency.MAX_KEY_LENGTH:
        raise _bad_field("Idempotency-Key", "must be 1 to 200 characters")
    request_id = structlog.contextvars.get_contextvars().get("request_id", "")
    fingerprint = (
        idempotency.request_fingerprint(
            method=request.method, path=request.url.path, body=await request.body()
        )
        if idem_key is not None
        else ""
    )
    async with state.pool.acquire() as connection:
        # With a key, recording runs in one transaction holding a lock on the key, and the
        # answer is stored before the publish: a concurrent repeat gets the same task id.
        scope = connection.transaction() if idem_key is not None else contextlib.nullcontext()
        async with scope:
            if idem_key is not None:
                await idempotency.lock_key(connection, api_key_id=user.key_id, key=idem_key)
                stored = await idempotency.find(connection, api_key_id=user.key_id, key=idem_key)
                if stored is not None:
                    if stored.request_hash != fingerprint:
                        raise ProblemException(
                            status=422,
                            detail="this Idempotency-Key was used with a different request",
                        )
                    count_submit(task.name, "duplicate")
                    return Response(stored.body, status_code=stored.status_code)
            task_id, created = await task_registry.record_submission(
                connection,
                task_id=str(uuid.uuid4()),
                owner_id=user.id,
                name=task.name,
                params=task.kwargs(),
                request_id=request_id,
            )
            body = Submitted(task_id=task_id, status="submitted" if created else "existing")
            status_code = 202 if created else 200
            if idem_key is not None:
                await idempotency.store(
                    connection,
                    api_key_id=user.key_id,
                    key=idem_key,
                    request_hash=fingerprint,
                    status_code=status_code,
                    body=msgspec.to_builtins(body),
                )
    if created:
        await _publish_or_fail(
            state,
            task,
            task_id=task_id,
            request_id=request_id,
            forget_key=(user.key_id, idem_key) if idem_key else None,
        )
    count_submit(task.name, "accepted" if created else "duplicate")
    return Response(body, status_code=status_code)


async def _charge(request: Request[User, int, State], task: TaskContract) -> None:
    """Count the submit against the key's request and symbol budgets; 429 when over."""
    state = request.app.state
    key = str(request.user.key_id)
    limiter: RateLimiter = state.submit_limiter
    retry_after = await limiter.hit(key)
    if retry_after is not None:
        raise ProblemException(
            status=429,
            detail=f"too many submits for this API key; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    symbols = await symbols_requested(state.pool, task)
    symbol_limiter: RateLimiter = state.symbol_limiter
    retry_after = await symbol_limiter.spend(key, symbols)
    if retry_after is not None:
        raise ProblemException(
            status=429,
            detail=f"this API key asked for too many symbols ({symbols} more would exceed "
            f"{state.settings.submit_symbol_limit}); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


async def _publish_or_fail(
    state: State,
    task: TaskContract,
    *,
    task_id: str,
    request_id: str,
    forget_key: tuple[int, str] | None,
) -> None:
    """Publish a newly recorded task.

    A publish that fails or times out finishes the row as FAILURE (BrokerUnavailable),
    forgets the stored Idempotency-Key answer (a retry with the key may succeed once the
    broker is back) and answers 503: the caller learns the truth from the 503 and from the
    task's status, a retry is not mistaken for a duplicate, and a message that reaches the
    broker after the deadline is dropped by the worker, since the task already finished.
    """
    publisher: TaskPublisher = state.publisher
    try:
        await publisher.publish(task, task_id=task_id, headers={"request_id": request_id})
    except BrokerUnavailable as exc:
        count_submit(task.name, "broker_down")
        async with state.pool.acquire() as connection, connection.transaction():
            await task_registry.record_outcome(
                connection,
                task_id=task_id,
                state="FAILURE",
                error=task_registry.TaskError(type="BrokerUnavailable", message=str(exc)),
            )
            if forget_key is not None:
                await idempotency.forget(connection, api_key_id=forget_key[0], key=forget_key[1])
        raise ProblemException(
            status=503,
            detail=f"the task queue is unavailable: {exc}",
            headers={"Retry-After": "5"},
        ) from None


def heartbeat_age(stamp: bytes | str | None, *, now: float) -> float | None:
    """Seconds since a stored worker heartbeat, or None if there is none."""
    if stamp is None:
        return None
    return max(0.0, round(now - float(stamp), 3))


def worker_info(
    host: str, data: dict[str, Any], *, heartbeat_age_seconds: float | None
) -> WorkerInfo:
    """Shape `celery inspect` output for one worker."""
    stats = data.get("stats") or {}
    pool = stats.get("pool") or {}
    totals = stats.get("total") or {}
    return WorkerInfo(
        hostname=host,
        # "celery.concurrency.prefork:TaskPool" → "prefork"
        pool=str(pool.get("implementation", "")).split(":")[0].rsplit(".", 1)[-1] or None,
        concurrency=pool.get("max-concurrency"),
        active=len(data.get("active") or []),
        processed=int(sum(totals.values())) if isinstance(totals, dict) else 0,
        queues=sorted(q.get("name", "") for q in data.get("queues") or []),
        heartbeat_age_seconds=heartbeat_age_seconds,
    )


async def _holding_slot(
    stream: AsyncIterator[ServerSentEventMessage], *, slots: StreamSlots, key: str, slot: str
) -> AsyncIterator[ServerSentEventMessage]:
    """`stream`, renewing its slot's lease while open and freeing the slot however it ends
    (finished task, server limit, or a client gone: Litestar cancels the stream)."""
    renewed = time.monotonic()
    try:
        async for message in stream:
            if time.monotonic() - renewed > slots.lease_seconds / 3:
                renewed = time.monotonic()
                await slots.renew(key, slot)
            yield message
    finally:
        # Shielded: on a client disconnect this runs inside a cancelled scope.
        await asyncio.shield(slots.release(key, slot))


class KeepAlive(ServerSentEventMessage):
    """An SSE comment line alone. Litestar adds an empty `data:` line to a comment, which an
    EventSource delivers as an empty message; a keep-alive must deliver nothing."""

    def __init__(self) -> None:
        super().__init__(comment="keep-alive")

    def encode(self) -> bytes:
        """`: keep-alive` and the blank line that ends an event."""
        return b": keep-alive\r\n\r\n"


async def _status_stream(
    pool: asyncpg.Pool, first: TaskStatus, *, owner_id: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    last: tuple[str, Any] | None = None
    current: TaskStatus | None = first
    started = time.monotonic()
    last_sent = started
    while current is not None and time.monotonic() - started < EVENTS_MAX_SECONDS:
        key = (current.state, current.progress)
        if key != last:
            last = key
            last_sent = time.monotonic()
            yield ServerSentEventMessage(event="status", data=msgspec.json.encode(current).decode())
            if current.state in TERMINAL_STATES:
                return
        elif time.monotonic() - last_sent > EVENTS_KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield KeepAlive()
        await asyncio.sleep(EVENTS_POLL_SECONDS)
        async with pool.acquire() as connection:
            current = await task_registry.get_status(
                connection, task_id=first.task_id, owner_id=owner_id
            )
