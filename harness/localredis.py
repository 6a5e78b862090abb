"""A redis-server owned by this project: the one `make run` starts when no Redis
answers, and the throwaway ones the tests start, stop, kill and restart.

REDIS_FLAGS is the project's Redis policy in one place; docker-compose.yml passes
the same flags (a test keeps them in step)."""

import shutil
import subprocess
from pathlib import Path

import redis
from celery_guarantees.testing.servers import RedisServer, free_port
from celery_guarantees.testing.waiting import wait_until
from redis.sentinel import MasterNotFoundError, Sentinel

from harness.network import on
from storefront.health import redis_answers

REDIS_FLAGS = (
    # Every write goes to the append-only file before Redis answers, so queued
    # messages survive kill -9 of Redis; fsync once a second bounds an OS crash.
    "--appendonly yes",
    "--appendfsync everysec",
    # A full Redis refuses new writes instead of silently dropping queued messages.
    "--maxmemory-policy noeviction",
)


class LocalRedis(RedisServer):
    """With the project's REDIS_FLAGS; on this machine's loopback, or on a `host` of a
    harness.network.Network; a replica of another LocalRedis if `replica_of`."""

    def __init__(self, port, data_dir, host=None, replica_of=None, tls_port=None):
        super().__init__(port, data_dir, host.address if host else "127.0.0.1", tls_port)
        self.host = host
        self.replica_of = replica_of

    def arguments(self):
        argv = [word for flag in REDIS_FLAGS for word in flag.split()]
        if self.host:  # reached from the test network's other hosts, without a password
            argv += ["--protected-mode", "no"]
        if self.replica_of:
            argv += ["--replicaof", self.replica_of.address, str(self.replica_of.port)]
        return argv

    def launch(self, argv):
        return subprocess.Popen(on(self.host, argv), start_new_session=True)

    def in_sync(self):
        """Whether this replica has its primary's data and follows it."""
        try:
            return self.client().info("replication").get("master_link_status") == "up"
        except redis.ConnectionError:  # a server made a replica drops its clients
            return False


class LocalSentinel:
    """A Redis Sentinel on a host of a harness.network.Network, watching `primary`
    under the name `master`; it promotes a replica when the primary stops answering."""

    def __init__(self, host, primary, master, data_dir):
        self.host, self.address, self.port = host, host.address, free_port()
        self.data_dir = Path(data_dir)
        self.primary, self.master = primary, master
        self.process = None

    def start(self, timeout=10):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"  # Sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\nbind {self.address}\nprotected-mode no\n"
            f"dir {self.data_dir}\nlogfile {self.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {self.master} {self.primary.address} {self.primary.port} 2\n"
            # A primary silent for a second is down; a majority of the three agree.
            f"sentinel down-after-milliseconds {self.master} 1000\n"
            f"sentinel failover-timeout {self.master} 5000\n"
        )
        argv = [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"]
        self.process = subprocess.Popen(on(self.host, argv), start_new_session=True)
        # A Sentinel answers PING as a server does.
        plain = f"redis://{self.address}:{self.port}/0"
        wait_until(lambda: redis_answers(plain), timeout, what="Sentinel answering")
        return self

    def url(self, db=0):
        return f"sentinel://{self.address}:{self.port}/{db}"

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class RedisWithSentinels:
    """A Redis primary and its replica, each on a host of its own, watched by three
    Sentinels on three more: the set a production Redis runs as (docs/operations.md,
    *Scaling out*), for the tests that kill the primary."""

    master = "storefront"

    def __init__(self, network, data_dir):
        data_dir = Path(data_dir)
        self.primary = LocalRedis(free_port(), data_dir / "primary", host=network.host("redis1"))
        self.replica = LocalRedis(
            free_port(), data_dir / "replica", host=network.host("redis2"),
            replica_of=self.primary,
        )  # fmt: skip
        self.sentinels = [
            LocalSentinel(
                network.host(f"sentinel{n}"), self.primary, self.master, data_dir / f"s{n}"
            )
            for n in (1, 2, 3)
        ]

    def start(self):
        self.primary.start()
        self.replica.start()
        wait_until(self.replica.in_sync, 30, what="the replica in sync")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(lambda: self.replicas_known() == 1, 30, what="the Sentinels seeing the replica")
        return self

    def url(self, db):
        """The URL list that names every Sentinel, for `db`."""
        return ";".join(sentinel.url(db) for sentinel in self.sentinels)

    def watch(self):
        """A client of the Sentinels, as the project's processes ask them."""
        return Sentinel([(sentinel.address, sentinel.port) for sentinel in self.sentinels])

    def primary_address(self):
        """host:port of the primary, as the Sentinels name it now; None while they
        find it down and have promoted no replica yet."""
        try:
            host, port = self.watch().discover_master(self.master)
        except MasterNotFoundError:
            return None
        return f"{host}:{port}"

    def whole(self):
        """Whether the Sentinels name a primary and the other server replicates it, in
        sync: whichever is which after failovers (a loaded machine may see one more)."""
        primary = self.current_primary()
        if primary is None:
            return False
        return (self.replica if primary is self.primary else self.primary).in_sync()

    def current_primary(self):
        """The server the Sentinels name as primary now (after a failover, the replica);
        None while they name none."""
        address = self.primary_address()
        servers = (self.primary, self.replica)
        return next((s for s in servers if f"{s.address}:{s.port}" == address), None)

    def replicas_known(self):
        return len(self.watch().discover_slaves(self.master))

    def stop(self):
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.primary.stop()
