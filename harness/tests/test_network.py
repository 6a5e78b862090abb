"""The test network: hosts that reach each other by address, a link cut both ways while
every other stays up, and healed again."""

import subprocess
import sys

import pytest
from celery_guarantees.testing.servers import free_port

from harness.localredis import LocalRedis
from harness.network import Network


def reaches(host, address, port):
    """Whether a TCP connection from `host` to address:port opens within a second."""
    probe = f"import socket; socket.create_connection(({address!r}, {port}), timeout=1)"
    return subprocess.run(host.command([sys.executable, "-c", probe])).returncode == 0


@pytest.mark.slow
def test_hosts_reach_each_other_until_their_link_is_cut_and_again_once_healed(network, tmp_path):
    broker, worker, other = network.host("broker"), network.host("worker"), network.host("other")
    redis = LocalRedis(free_port(), tmp_path / "redis", host=broker).start()
    try:
        assert redis.url().startswith(f"redis://{broker.address}:")
        assert redis.answers()  # from this process, on the bridge
        assert reaches(worker, broker.address, redis.port)

        network.cut(worker, broker)
        assert not reaches(worker, broker.address, redis.port)
        assert reaches(other, broker.address, redis.port)
        assert redis.answers()

        network.heal(worker, broker)
        assert reaches(worker, broker.address, redis.port)
    finally:
        redis.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("namespaces_allowed")
def test_removing_the_network_leaves_no_namespace_or_interface_behind():
    network = Network()
    host = network.host("gone")
    network.remove()

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert host.namespace not in namespaces
    assert network.bridge not in links
    assert network.tag not in links
