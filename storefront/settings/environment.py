"""Reading the environment: one reader for every setting that comes from outside.

common.py reads every variable through `env`. A variable may have a default that
holds everywhere (given to `env`), or one that only an environment gives (dev.py fills
DEFAULTS before common.py runs). Without either, the process stops at start with one
sentence naming the variable: production, which gives no defaults, needs no list of
its own."""

import ipaddress
import os
import sys
from urllib.parse import urlsplit

# What the chosen environment (dev.py) supplies for variables left unset.
DEFAULTS: dict[str, str] = {}

# The course's Redis layout, wherever a Redis URL is written (dev.py's defaults, the
# harness's throwaway servers; docker-compose.yml spells the same numbers): the broker
# on database 1, the cache (and task results, which follow it) on database 2.
BROKER_DB, CACHE_DB = 1, 2


def env(name: str, default: object = None) -> str:
    value = os.environ.get(name) or DEFAULTS.get(name)
    if value is None and default is not None:
        value = str(default)
    if value is None:
        sys.exit(f"storefront: the environment variable {name} is not set; production needs it.")
    return value


def env_bool(name: str, default: bool) -> bool:
    return env(name, default).strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: object = None) -> list[str]:
    """A comma-separated variable as a list."""
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_count(name: str) -> int | None:
    """A whole number above zero, None when unset; anything else stops the process at
    start."""
    value = env(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) == 0:
        sys.exit(f"storefront: {name} must be a whole number above zero, or unset: not {value!r}.")
    return int(value)


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of addresses or networks (10.0.0.2, 172.16.0.0/12), empty
    by default; anything else stops the process at start."""
    try:
        return [ipaddress.ip_network(item, strict=False) for item in env_list(name, "")]
    except ValueError as error:
        sys.exit(
            f"storefront: {name} must list IP addresses or networks, comma-separated: {error}."
        )


def env_redis_url(name: str, default: object = None) -> str:
    """A variable that must name a Redis (a server, or its Sentinels): anything else
    stops the process at start, instead of failing later on a page or in a task."""
    value = env(name, default)
    scheme = urlsplit(value).scheme
    if scheme not in ("redis", "rediss", "sentinel"):
        # The scheme only: the rest of a URL may hold a password.
        sys.exit(
            f"storefront: {name} must be a Redis URL (redis://, rediss:// or sentinel://),"
            f" not {scheme}://…: results, the cache and Beat's lock live in Redis, whatever"
            " the broker."
        )
    return value


# The transports of the package in guarantees/ (celery_guarantees), by the broker URL's
# scheme; kombu's own carries every other scheme (amqp:// for RabbitMQ, memory://).
GUARANTEED_TRANSPORTS = {
    "redis": "celery_guarantees.redis_transport:Transport",
    "rediss": "celery_guarantees.redis_transport:Transport",
    "sentinel": "celery_guarantees.redis_transport:SentinelTransport",
}


def broker_transport(name: str, broker_url: str) -> str | None:
    """The transport (Celery's broker_transport) that the variable `name` chooses for
    `broker_url`: `guarantees` (the package's, on Redis) or `kombu` (stock kombu's, by the
    URL's scheme, as without the setting); anything else stops the process at start."""
    choice = env(name, "guarantees")
    if choice not in ("guarantees", "kombu"):
        sys.exit(f"storefront: {name} must be guarantees or kombu, not {choice!r}.")
    if choice == "kombu":
        return None
    return GUARANTEED_TRANSPORTS.get(urlsplit(broker_url).scheme)
