"""Throwaway servers for tests: free ports, a self-signed certificate, and a
redis-server of the test's own (never a shared one), plain and over TLS."""

import shutil
import signal
import socket
import subprocess
from contextlib import ExitStack, suppress
from pathlib import Path

import redis

from .waiting import NotYet, wait_until


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int, besides: tuple[int, ...] = ()) -> list[int]:
    """`count` different free ports, none of `besides`, for one server that listens on
    several: held open together while the kernel picks them, so that it cannot hand
    out one twice (it did once here: a RabbitMQ node refused its own port, eaddrinuse)."""
    with ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            if (port := sock.getsockname()[1]) not in besides:
                ports.append(port)
        return ports


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """A certificate for `names` (addresses or DNS names) and its key, in `folder`, made
    by openssl: a client that trusts the certificate itself verifies the server."""
    certificate, key = folder / "certificate.pem", folder / "key.pem"
    alternatives = ",".join(f"IP:{name}" if name[0].isdigit() else f"DNS:{name}" for name in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={alternatives}",
         "-keyout", key, "-out", certificate],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


class RedisUnavailable(RuntimeError):
    pass


class RedisServer:
    """A redis-server listening on `address` (loopback unless told), its files in
    `data_dir`; with `tls_port`, served over TLS there too, with a certificate of its own
    (`certificate`) that a client verifies. A subclass adds its `arguments()` and may
    `launch` the server elsewhere (another network namespace)."""

    def __init__(
        self, port: int, data_dir: Path, address: str = "127.0.0.1", tls_port: int | None = None
    ) -> None:
        self.port, self.data_dir, self.address, self.tls_port = (
            port,
            Path(data_dir),
            address,
            tls_port,
        )
        self.certificate: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.address}:{self.port}/{db}"

    def tls_url(self, db: int = 0) -> str:
        return f"rediss://{self.address}:{self.tls_port}/{db}"

    def verifying_tls_url(self, db: int = 0) -> str:
        """The rediss:// URL with what its client needs to verify the server (the
        certificate as its authority), in the query kombu and redis-py both read."""
        return f"{self.tls_url(db)}?ssl_cert_reqs=required&ssl_ca_certs={self.certificate}"

    def arguments(self) -> list[str]:
        """redis-server's arguments beyond where it listens and keeps its files."""
        return []

    def launch(self, argv: list[str]) -> "subprocess.Popen[bytes]":
        # Its own session: the Ctrl-C meant for the test run must not stop the server
        # under the processes that still use it.
        return subprocess.Popen(argv, start_new_session=True)

    def start(self, timeout: float = 10) -> "RedisServer":
        executable = shutil.which("redis-server")
        if executable is None:
            raise RedisUnavailable("redis-server is not installed (not on PATH)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [executable, "--port", str(self.port), "--bind", self.address]
        argv += ["--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log")]
        if self.tls_port:  # clients verify the server; the server asks no certificate
            self.certificate, key = self_signed(self.data_dir, [self.address])
            argv += ["--tls-port", str(self.tls_port), "--tls-cert-file", str(self.certificate),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(self.certificate),
                     "--tls-auth-clients", "no"]  # fmt: skip
        self.process = process = self.launch(argv + self.arguments())
        with suppress(NotYet):
            wait_until(lambda: self.answers() or process.poll() is not None, timeout)
        if not self.answers():
            self.stop()
            raise RedisUnavailable(f"redis-server did not start: see {self.data_dir}/redis.log")
        return self

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def answers(self) -> bool:
        """Whether it answers PING within a second."""
        client = redis.Redis.from_url(self.url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Shut down as an operator would (SIGTERM): Redis flushes its files and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Die as in a crash (SIGKILL): nothing is flushed beyond what was written."""
        self._end(signal.SIGKILL)

    def _end(self, signum: int) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=30)
