"""A redis-server owned by this project: the one `make run` starts when no Redis
answers, and the throwaway ones the tests start, stop, kill and restart.

REDIS_FLAGS is the project's Redis policy in one place; docker-compose.yml passes
the same flags (a test keeps them in step)."""

import shutil
import signal
import subprocess
from contextlib import suppress
from pathlib import Path

import redis

from harness.network import on
from harness.waiting import NotYet, wait_until
from storefront.health import redis_answers

REDIS_FLAGS = (
    # Every write goes to the append-only file before Redis answers, so queued
    # messages survive kill -9 of Redis; fsync once a second bounds an OS crash.
    "--appendonly yes",
    "--appendfsync everysec",
    # A full Redis refuses new writes instead of silently dropping queued messages.
    "--maxmemory-policy noeviction",
)


class RedisUnavailable(RuntimeError):
    pass


class LocalRedis:
    def __init__(self, port, data_dir, host=None):
        """On this machine's loopback, or on a `host` of a harness.network.Network."""
        self.port = port
        self.data_dir = Path(data_dir)
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.process = None

    def url(self, db=0):
        return f"redis://{self.address}:{self.port}/{db}"

    def start(self, timeout=10):
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisUnavailable("redis-server is not installed (not on PATH)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [executable, "--port", str(self.port), "--bind", self.address]
        argv += ["--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log")]
        argv += [word for flag in REDIS_FLAGS for word in flag.split()]
        # Its own session: the Ctrl-C meant for the other processes must not stop
        # the broker under them.
        if self.host:  # reached from the test network's other hosts, without a password
            argv += ["--protected-mode", "no"]
        self.process = process = subprocess.Popen(on(self.host, argv), start_new_session=True)
        with suppress(NotYet):
            wait_until(lambda: self.answers() or process.poll() is not None, timeout)
        if not self.answers():
            self.stop()
            raise RedisUnavailable(f"redis-server did not start: see {self.data_dir}/redis.log")
        return self

    def client(self, db=0):
        return redis.Redis.from_url(self.url(db))

    def answers(self):
        return redis_answers(self.url())

    def stop(self):
        """Shut down as an operator would (SIGTERM): Redis flushes its AOF and exits."""
        self._end(signal.SIGTERM)

    def kill(self):
        """Die as in a crash (SIGKILL): nothing is flushed beyond what was written."""
        self._end(signal.SIGKILL)

    def _end(self, signum):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=30)
