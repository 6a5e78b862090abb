"""A transport named by its class path (Celery's broker_transport) works as one named by
a URL's scheme: it is still the transport after a failover to the next URL, a rediss://
URL still gets TLS, and the URL still reads redis:// in logs and to Flower."""

import pytest
from celery_guarantees.connection import AMQP, Connection
from celery_guarantees.redis_transport import SentinelTransport, Transport
from celery_guarantees.testing.servers import free_port
from kombu import Connection as KombuConnection
from kombu.transport import redis as kombu_redis

NAMED = "celery_guarantees.redis_transport:Transport"


def test_kombu_drops_a_named_transport_at_a_failover_and_the_packages_connection_keeps_it(
    redis_server,
):
    # The first URL refuses (nothing listens), the second is a real Redis.
    urls = f"redis://127.0.0.1:{free_port()}/1;{redis_server.url(1)}"
    for connection_class, kept in ((KombuConnection, False), (Connection, True)):
        with connection_class(urls, transport=NAMED) as connection:
            connection.ensure_connection(max_retries=3, interval_start=0, interval_step=0)

            assert connection.as_uri() == redis_server.url(1).replace("redis://", "redis://:**@")
            assert (type(connection.transport) is Transport) is kept
            if not kept:  # kombu's own, by the second URL's scheme
                assert type(connection.transport) is kombu_redis.Transport
            assert connection.default_channel.client.ping()


def test_celery_makes_its_connections_with_the_packages_class():
    assert AMQP.Connection is Connection


@pytest.mark.parametrize(
    "url", ["rediss://127.0.0.1:6380/1", "rediss://127.0.0.1:6380/1?ssl_cert_reqs=required"]
)
def test_a_rediss_url_gets_the_tls_options_kombu_gives_it_by_name(url):
    assert Connection(url, transport=NAMED).ssl == KombuConnection(url).ssl
    assert Connection(url, transport=NAMED).ssl


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://:secret@127.0.0.1:6379/1", Transport),
        ("rediss://127.0.0.1:6380/1", Transport),
        ("sentinel://:secret@127.0.0.1:26379;sentinel://127.0.0.1:26380", SentinelTransport),
    ],
)
def test_the_url_reads_as_kombu_writes_it_when_the_scheme_names_the_transport(url, transport):
    named = Connection(url, transport=transport)
    by_scheme = KombuConnection(url)

    assert type(named.transport) is transport
    assert named.as_uri() == by_scheme.as_uri()
    assert named.as_uri(include_password=True) == by_scheme.as_uri(include_password=True)
