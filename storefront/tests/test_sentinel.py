"""Reading sentinel:// URLs (storefront/sentinel.py), in process; the failover itself is
proven on real Sentinels in playground/tests/test_broker_cluster.py."""

import json
import os
import subprocess
import sys

from django.core.cache.backends.redis import RedisCache

from storefront.sentinel import SentinelPool, sentinel_for

URL = "sentinel://:s3cret@10.0.0.5:26379/2;sentinel://10.0.0.6:26380/2;sentinel://10.0.0.7/2"


def test_a_sentinel_url_list_names_every_sentinel_the_database_and_the_password():
    sentinel, database, password = sentinel_for(URL, socket_timeout=0.5)

    addresses = [
        (
            client.connection_pool.connection_kwargs["host"],
            client.connection_pool.connection_kwargs["port"],
        )
        for client in sentinel.sentinels
    ]
    assert addresses == [("10.0.0.5", 26379), ("10.0.0.6", 26380), ("10.0.0.7", 26379)]
    assert (database, password) == (2, "s3cret")
    # The Sentinels are asked with the same timeouts as the primary.
    assert sentinel.sentinel_kwargs == {"socket_timeout": 0.5}


def test_the_cache_keeps_a_sentinel_url_list_as_one_redis_set_with_its_primary_named():
    cache = RedisCache(
        [URL],
        {"OPTIONS": {"pool_class": "storefront.sentinel.SentinelPool", "master_name": "shop"}},
    )

    pool = cache._cache._get_connection_pool(write=True)

    assert isinstance(pool, SentinelPool)
    assert pool.service_name == "shop"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "s3cret")
    assert len(pool.sentinel_manager.sentinels) == 3


def test_sentinel_urls_give_the_broker_the_results_and_the_cache_the_sets_name():
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "storefront.settings.dev",
        "CELERY_BROKER_URL": URL.replace("/2", "/1"),
        "REDIS_CACHE_URL": URL,
        "REDIS_SENTINEL_MASTER": "shop",
    }
    program = (
        "import django, json; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.CACHES['default'], s.CELERY_BROKER_TRANSPORT_OPTIONS,"
        " s.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS, s.CELERY_RESULT_BACKEND]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True
    )

    cache, broker, results, backend = json.loads(done.stdout)
    assert cache["LOCATION"] == [URL]
    assert cache["OPTIONS"]["master_name"] == "shop"
    assert broker["master_name"] == results["master_name"] == "shop"
    assert backend == URL
