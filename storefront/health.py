"""GET /healthz: 200 when the database, the cache and the broker (Redis or RabbitMQ)
answer, 503 naming what is down; with the broker node that answered (a cluster's
URL list names several). Served by a middleware ahead of the others, so that
probes, which come with whatever Host header the orchestrator uses, need neither
ALLOWED_HOSTS nor HTTPS; every check has a short timeout, so the answer never hangs."""

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


def broker_node(timeout=TIMEOUT):
    """The broker node (host:port) that took a connection within `timeout` seconds,
    whatever the broker, each node of a cluster's URL list tried once; None if none did."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
    connection = Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=timeout,
        # Redis reads these (and Sentinel's master_name); RabbitMQ's client takes only
        # what it knows.
        transport_options={}
        if settings.BROKER_IS_RABBITMQ
        else settings.CELERY_BROKER_TRANSPORT_OPTIONS | options,
    )
    try:
        # Without waiting between tries: kombu's default would wait seconds.
        tries = max(len(connection.alt), 2)
        connection.ensure_connection(max_retries=tries - 1, interval_start=0, interval_step=0)
        if sentinel.is_sentinel(settings.CELERY_BROKER_URL):  # not the Sentinel that answered
            return sentinel.primary(settings.CELERY_BROKER_URL, socket_timeout=timeout)
        return connection.host
    except Exception:  # any transport's error means the same: not answering
        return None
    finally:
        connection.release()


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


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return health()
        return self.get_response(request)
