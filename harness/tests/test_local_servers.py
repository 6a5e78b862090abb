"""The throwaway PostgreSQL and RabbitMQ servers start, serve a database / vhost of
a test's own for real, and leave their port closed once stopped."""

import socket

import psycopg
import pytest
from celery_guarantees.testing.servers import free_port
from celery_guarantees.testing.waiting import wait_until
from kombu import Connection

from harness.localpostgres import LocalPostgres
from harness.localrabbitmq import LocalRabbitMQ


def closed(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_a_local_postgres_serves_a_database_copied_from_a_template():
    server = LocalPostgres(free_port())
    try:
        server.start()
        with psycopg.connect(server.create_database("template"), autocommit=True) as connection:
            connection.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")

        url = server.create_database("copy", template="template")
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
            assert connection.execute("SELECT x FROM t").fetchall() == [(1,)]
        server.drop_database("copy")

        server.stop()
        assert closed(server.port)
    finally:
        server.remove()
    assert not server.data_dir.exists()


@pytest.mark.slow
def test_a_local_rabbitmq_serves_a_vhost_and_counts_its_queue():
    server = LocalRabbitMQ(free_port())
    try:
        server.start()
        url = server.create_vhost("test/vhost")  # a "/" in the name: quoted in the URL
        with Connection(url) as connection:
            connection.ensure_connection(max_retries=1)
            queue = connection.SimpleQueue("hello")
            queue.put({"hello": "world"})
            wait_until(
                lambda: server.queue("test/vhost", "hello")["messages_ready"] == 1,
                timeout=2,
                what="the management API counting the message",
            )
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"hello": "world"}
            queue.close()
        assert "test/vhost" in server.ctl("list_vhosts")  # the node's own Erlang cookie
        server.delete_vhost("test/vhost")
        assert "test/vhost" not in [vhost["name"] for vhost in server.api("vhosts")]

        server.stop()
        assert closed(server.port)
        assert closed(server.management_port)
    finally:
        server.remove()
    assert not server.data_dir.exists()
