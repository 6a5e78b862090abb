"""Redis reached through Sentinel, wherever the project names a Redis.

Every Redis URL (CELERY_BROKER_URL, REDIS_CACHE_URL, CELERY_RESULT_BACKEND) may name the
Sentinels instead of a server, in Celery's form: `sentinel://host:26379/DB` for each
Sentinel, joined by `;` (a password as `sentinel://:password@host:26379/DB`). They name
the primary of the Redis set called REDIS_SENTINEL_MASTER; after a failover they name
the promoted replica, and every client reconnects to it. kombu (the broker) and
Celery (results) read such URLs themselves; the cache, Beat's lock and the health
check get their client here."""

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from redis.sentinel import Sentinel, SentinelConnectionPool

SCHEME = "sentinel"


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SCHEME


def sentinel_for(url: str, **options: Any) -> tuple[Sentinel, int, str | None]:
    """The Sentinels a sentinel:// URL list names, the database it names and its
    password (the primary's; the Sentinels' own need none)."""
    parts = [urlsplit(one) for one in url.split(";")]
    addresses = [(part.hostname or "localhost", part.port or 26379) for part in parts]
    first = parts[0]
    password = unquote(first.password) if first.password else None
    database = int(first.path.strip("/") or 0)
    sentinel_options = {
        name: value for name, value in options.items() if name.startswith("socket_")
    }
    return Sentinel(addresses, sentinel_kwargs=sentinel_options, **options), database, password


def client(url: str, **options: Any) -> redis.Redis:
    """A client on the Redis at `url`: a server's (redis://, rediss://) or, through
    its Sentinels (sentinel://), the current primary's."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    sentinel, database, password = sentinel_for(url, **options)
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, db=database, password=password)


class SentinelPool(SentinelConnectionPool):
    """The pool Django's Redis cache builds for each URL in LOCATION (its `pool_class`
    option), when that URL names Sentinels."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "SentinelPool":
        master_name = options.pop("master_name")
        sentinel, database, password = sentinel_for(url, **options)
        return cls(
            master_name, sentinel, db=database, password=password, **sentinel.connection_kwargs
        )


def primary(url: str, **options: Any) -> str:
    """host:port of the primary that the Sentinels of a sentinel:// URL name now."""
    sentinel, _, _ = sentinel_for(url, **options)
    host, port = sentinel.discover_master(settings.REDIS_SENTINEL_MASTER)
    return f"{host}:{port}"
