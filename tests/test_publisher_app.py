"""The API's publisher Celery app: same messages as stock Celery, fewer broker round trips."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from service.core.celery_config import create_celery_app, create_publisher_app
from service.core.settings import Settings


@pytest.fixture
def sync_redis(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.celery_broker_url)
    yield client
    client.close()


def _publish(app: Celery, queue: str) -> str:
    task_id = str(uuid.uuid4())
    app.send_task("probe", kwargs={"n": 1}, task_id=task_id, queue=queue)
    return task_id


class TestPublisherApp:
    def test_messages_match_stock_celery(self, settings: Settings, sync_redis: redis.Redis) -> None:
        """A publish through the reused-client transport lands in the queue shaped exactly
        like one from the stock app (same envelope, headers and body)."""
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        stock, ours = create_celery_app(settings), create_publisher_app(settings)
        try:
            _publish(stock, queue)
            _publish(ours, queue)
            _publish(ours, queue)
        finally:
            stock.close()
            ours.close()
        raw = sync_redis.lrange(queue, 0, -1)
        sync_redis.delete(queue)
        messages = [json.loads(item) for item in reversed(raw)]
        assert len(messages) == 3
        first = messages[0]
        for other in messages[1:]:
            assert other.keys() == first.keys()
            assert other["headers"].keys() == first["headers"].keys()
            assert other["properties"].keys() == first["properties"].keys()
            assert other["body"]
            assert other["content-type"] == first["content-type"]

    def test_one_redis_client_per_channel(self, settings: Settings) -> None:
        """Publishes on one producer reuse a single Redis client bound to the channel's pool."""
        app = create_publisher_app(settings)
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        try:
            with app.producer_or_acquire() as producer:
                channel = producer.channel
                app.send_task("probe", queue=queue, producer=producer)
                first = channel._create_client()
                app.send_task("probe", queue=queue, producer=producer)
                assert channel._create_client() is first
                assert first.connection_pool is channel.pool
            app.control.purge()
        finally:
            app.close()

    def test_publish_does_not_subscribe_to_results(
        self, settings: Settings, sync_redis: redis.Redis
    ) -> None:
        """The publisher never waits for results, so a publish leaves no subscription on the
        task's result channel (the stock app subscribes while its AsyncResult lives)."""
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        stock, ours = create_celery_app(settings), create_publisher_app(settings)
        try:
            stock_result = stock.send_task("probe", queue=queue)
            our_result = ours.send_task("probe", queue=queue)
            our_id = our_result.id
            counts = dict(
                sync_redis.pubsub_numsub(
                    f"celery-task-meta-{stock_result.id}", f"celery-task-meta-{our_id}"
                )
            )
            assert counts[f"celery-task-meta-{stock_result.id}".encode()] == 1
            assert counts[f"celery-task-meta-{our_id}".encode()] == 0
        finally:
            sync_redis.delete(queue)
            stock.close()
            ours.close()
