"""The probes, each for where it is used:

- GET /livez: 200 while the process answers, whatever else is down. A liveness probe
  restarts what fails it, and a web restarted because the broker is away would only
  drop the requests that the outbox keeps (docs/operations.md, *Probes*).
- GET /readyz (and /healthz, its older name): 200 when the database, the cache and the
  broker (Redis or RabbitMQ) answer, 503 naming what is down; with the broker node that
  answered (a cluster's URL list names several). For a readiness probe and a person.

Served by a middleware ahead of the others, so that probes, which come with whatever
Host header the orchestrator uses, need neither ALLOWED_HOSTS nor HTTPS; every check has
a short timeout, so the answer never hangs, and reuses its process's connections: a
probe every few seconds must not open a connection each time."""

import threading
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from kombu import Connection

from storefront import sentinel

TIMEOUT = 0.5


def redis_answers(url, timeout=TIMEOUT):
    """Whether a Redis at `url` answers PING within `timeout` seconds."""
    client = sentinel.client(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return client.ping()
    except redis.RedisError:
        return False
    finally:
        client.close()


def broker_node():
    """The broker node (host:port) that answered within TIMEOUT seconds, whatever the
    broker, each node of a cluster's URL list tried once; None if none did. The
    process's connection is reused while it answers; one that does not (its node lost,
    the broker restarted) is dropped and a new one tried at once."""
    for _ in range(2):
        connection = broker_connection()
        try:
            # Without waiting between tries: kombu's default would wait seconds.
            tries = max(len(connection.alt), 2)
            connection.ensure_connection(max_retries=tries - 1, interval_start=0, interval_step=0)
            round_trip(connection)
        except Exception:  # any transport's error means the same: not answering
            forget_broker_connection()
            continue
        if sentinel.is_sentinel(settings.CELERY_BROKER_URL):  # not the Sentinel that answered
            return sentinel.primary(settings.CELERY_BROKER_URL, socket_timeout=TIMEOUT)
        return connection.host
    return None


# One per thread (runserver serves each request in a thread of its own; gunicorn's sync
# workers, one at a time).
connections = threading.local()


def broker_connection() -> Connection:
    """This thread's connection to the broker, made if it has none (or it was dropped)."""
    if getattr(connections, "broker", None) is None:
        options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT, "max_retries": 0}
        connections.broker = Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=TIMEOUT,
            # Redis reads these (and Sentinel's master_name); RabbitMQ's client takes
            # only what it knows.
            transport_options={}
            if settings.BROKER_IS_RABBITMQ
            else settings.CELERY_BROKER_TRANSPORT_OPTIONS | options,
        )
    return connections.broker


def forget_broker_connection() -> None:
    connection = getattr(connections, "broker", None)
    connections.broker = None
    if connection is not None:
        connection.release()


def round_trip(connection: Connection) -> None:
    """Ask the broker something over the connection: a connection kept open says only
    that it answered once."""
    channel: Any = connection.default_channel  # the transport's own, not kombu's base type
    if settings.BROKER_IS_RABBITMQ:
        # A passive declare of an exchange every broker has: a question, no change.
        channel.exchange_declare(exchange="amq.direct", type="direct", passive=True)
    else:
        channel.client.ping()


def database_answers():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # any driver's error means the same: not answering
        return False


def cache_answers():
    try:
        cache.set("healthz", "ok", timeout=5)
        return cache.get("healthz") == "ok"
    except Exception:  # the backend's own error type depends on the backend
        return False


def health():
    node = broker_node()
    checks = {
        "database": database_answers(),
        "cache": cache_answers(),
        "broker": node is not None,
    }
    down = [name for name, ok in checks.items() if not ok]
    # Which node serves, for an operator checking a cluster (docs/operations.md, *Scaling out*).
    body = {"status": "down" if down else "ok", "down": down, "broker_node": node}
    return JsonResponse(body, status=503 if down else 200)


def alive():
    return JsonResponse({"status": "ok"})


PROBES = {"/livez": alive, "/readyz": health, "/healthz": health}


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path)
        return probe() if probe else self.get_response(request)
