"""The package's tests run on a redis-server of their own, plain and over TLS (none of
the machine's), whether run from the package's folder (`python -m pytest`) or within a
project's suite (which starts its own beside it)."""

from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from celery_guarantees.testing.servers import RedisServer, RedisUnavailable, free_port

DB = 1  # the database the tests' consumers and clients use


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), tls_port=free_port())
    try:
        server.start()
    except RedisUnavailable as why:
        pytest.fail(f"The package's tests need a real Redis and {why}: install redis-server.")
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the tests' database, emptied before the test."""
    client = redis_server.client(DB)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def new_message(redis_server: RedisServer, broker: redis.Redis) -> Callable[[], bytes]:
    """A maker of the bytes of a real task message as Redis holds them, taken off the
    queue again: for a test to spoil, or to push at a moment of its choosing."""
    app = Celery(broker=redis_server.url(DB), set_as_current=False)

    def made() -> bytes:
        app.send_task("a_task", [])
        raw: bytes = broker.rpop("celery")
        return raw

    return made


@pytest.fixture
def a_message(new_message: Callable[[], bytes], broker: redis.Redis) -> bytes:
    """The bytes of a task message waiting on the `celery` list."""
    raw = new_message()
    broker.lpush("celery", raw)
    return raw
