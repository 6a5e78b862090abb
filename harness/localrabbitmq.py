"""A throwaway RabbitMQ node of the tests' own (its name, ports and data in a temporary
folder), never the machine's node on 5672; the management plugin on a free port for
the tests to make vhosts and read queues. Each test gets a vhost of its own.

A node of its own rather than a vhost on the machine's node: the fault tests stop,
kill and freeze the broker, and the statistics interval is the node's, none of which
a vhost on a shared node can give without touching the others'.

Measured here (2 cores, Debian's RabbitMQ 3.10.8 on Erlang 25): a start takes 7 to
10 s, a vhost 0.05 s, a stop 6 s (5 of them a fixed wait of the management plugin's,
rabbitmq-server#11070, gone in 3.13), a kill and a rabbitmqctl call under a second."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from celery_guarantees.testing.servers import free_port, free_ports
from celery_guarantees.testing.waiting import NotYet, wait_until

from harness.localpostgres import alive, as_user, children
from harness.network import Host, Network, on

# Debian's /usr/sbin/rabbitmq-server is a wrapper that runs the node as the machine's
# (`su rabbitmq`, its HOME, its cookie); this is the script it wraps.
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
USER = "rabbitmq"
CREDENTIALS = ("guest", "guest")


class RabbitMQUnavailable(RuntimeError):
    pass


class LocalRabbitMQ:
    def __init__(
        self,
        port: int,
        data_dir: Path | None = None,
        host: Host | None = None,
        cookie: str | None = None,
        peers: tuple[str, ...] = (),
    ):
        """On this machine's loopback, or on a `host` of a harness.network.Network. On
        a host, its node is named by the host's address (Erlang's long names), as the
        other nodes of a cluster reach it: `peers` names the node of the cluster it
        joins as it first starts (the cluster's first node names itself), sharing
        their `cookie`."""
        self.port = port
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        # Chosen once: a restarted node serves on the same ports.
        self.management_port, self.dist_port = free_ports(2, besides=(port,))
        self.node = f"storefront-test-{port}@{host.address if host else 'localhost'}"
        self.cookie = cookie or secrets.token_hex(20)
        self.peers = peers
        # Under /tmp, not pytest's tmp_path: that is 0700 root's, which the node's
        # user cannot traverse.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="storefront-rabbitmq-"))
        self.log_path = self.data_dir / "console.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, vhost: str) -> str:
        user, password = CREDENTIALS
        return f"amqp://{user}:{password}@{self.address}:{self.port}/{quote(vhost, safe='')}"

    def _configure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "rabbitmq.conf").write_text(
            f"management.tcp.ip = {self.address}\n"
            f"management.tcp.port = {self.management_port}\n"
            # The management API's queue counts lag by the queues' statistics interval
            # (ms) plus the collector's, its shortest sample interval (whole seconds):
            # 5 s each by default, which a test waiting on a count would wait.
            "collect_statistics_interval = 100\n"
            "management.sample_retention_policies.global.minute = 1\n"
            "management.sample_retention_policies.basic.minute = 1\n"
            "management.sample_retention_policies.detailed.10 = 1\n"
            "management.rates_mode = none\n"
            # A test machine's /tmp may be small: an alarm would block every publisher.
            "disk_free_limit.absolute = 50MB\n"
            # On a test network's host, the tests' guest user connects from the other
            # hosts' addresses, not from loopback.
            + ("loopback_users = none\n" if self.host else "")
            + self._cluster_formation()
        )
        (self.data_dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # Read instead of /etc/rabbitmq/rabbitmq-env.conf, which names the machine's node.
        (self.data_dir / "rabbitmq-env.conf").write_text("")
        # A cookie of its own (Erlang reads $HOME/.erlang.cookie), for rabbitmqctl.
        cookie = self.data_dir / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            if os.geteuid() == 0:
                shutil.chown(path, USER, USER)

    def _cluster_formation(self) -> str:
        if not self.peers:
            return ""
        nodes = "".join(
            f"cluster_formation.classic_config.nodes.{index} = {node}\n"
            for index, node in enumerate(self.peers, start=1)
        )
        # A node cut off from the others' majority stops serving until it is back,
        # instead of taking writes the majority never sees (RabbitMQ's advice for three
        # nodes or more).
        return (
            "cluster_formation.peer_discovery_backend = classic_config\n"
            + nodes
            + "cluster_partition_handling = pause_minority\n"
        )

    def environment(self) -> dict[str, str]:
        """The node's environment, for rabbitmq-server and rabbitmqctl alike; nothing
        inherited, so no RABBITMQ_* of the caller's reaches it."""
        base = self.data_dir
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "HOME": str(base),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.address,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            # The schedulers sleep when idle instead of spinning: the tests' processes
            # share two cores with it.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-kernel inet_dist_use_interface {{{self.address.replace('.', ',')}}}"
                " +sbwt none +sbwtdcpu none +sbwtdio none"
            ),
            "RABBITMQ_USE_LONGNAME": "true" if self.host else "false",
        }

    def start(self, timeout: float = 60) -> "LocalRabbitMQ":
        if not SERVER.exists():
            raise RabbitMQUnavailable(f"rabbitmq-server is not installed (no {SERVER})")
        self._configure()
        with open(self.log_path, "ab") as log:
            # Its own session (and process group, the script's and its Erlang VM's):
            # the Ctrl-C meant for the other processes must not stop the broker
            # under them.
            self.process = process = subprocess.Popen(
                on(self.host, [*as_user(USER), str(SERVER)]),
                env=self.environment(), cwd=self.data_dir, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        with suppress(NotYet):
            wait_until(lambda: self.serves() or process.poll() is not None, timeout, interval=0.1)
        if not self.serves():
            self.kill()
            raise RabbitMQUnavailable(f"rabbitmq-server did not start: {self.log()}")
        alarms = requests.get(self._api_url("health/checks/alarms"), auth=CREDENTIALS, timeout=5)
        if not alarms.ok:  # a memory or disk alarm blocks every publisher
            self.kill()
            raise RabbitMQUnavailable(f"the node started in alarm: {alarms.text}")
        return self

    def serves(self) -> bool:
        """Whether it accepts AMQP connections and answers its management API."""
        try:
            socket.create_connection((self.address, self.port), timeout=1).close()
            return requests.get(self._api_url("overview"), auth=CREDENTIALS, timeout=2).ok
        except (OSError, requests.RequestException):
            return False

    def log(self) -> str:
        logs = [self.log_path, *sorted((self.data_dir / "log").glob("*.log"))]
        return "\n".join(path.read_text(errors="replace")[-6000:] for path in logs)

    def ctl(self, *args: str) -> str:
        """rabbitmqctl on this node (about a second of its own VM's start)."""
        # On its host: the node's Erlang distribution listens on that host's loopback.
        argv = on(self.host, [*as_user(USER), str(CTL), "-n", self.node, *args])
        # From its own folder: Erlang reads modules in the working directory first, and
        # RabbitMQ 4's prints an error report there when the node's user cannot read it.
        done = subprocess.run(
            argv, env=self.environment(), cwd=self.data_dir, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def _api_url(self, path: str) -> str:
        return f"http://{self.address}:{self.management_port}/api/{path.lstrip('/')}"

    def api(self, path: str, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
        """A management HTTP API call (path under /api/, names in it quoted); its JSON."""
        response = requests.request(
            method, self._api_url(path), auth=CREDENTIALS, json=body, timeout=timeout
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def create_vhost(self, name: str) -> str:
        vhost = quote(name, safe="")
        # In a cluster, the call waits for the vhost to start on every node (seconds on
        # a busy machine, once over 10) and, past a bound of its own, answers 500 with
        # the vhost made but not started everywhere (CI saw it): then it is waited for.
        try:
            self.api(f"vhosts/{vhost}", "PUT", {}, timeout=60)
        except requests.HTTPError as error:
            if error.response is None or error.response.status_code != 500:
                raise
        wait_until(lambda: self._runs_everywhere(vhost), 60, what=f"vhost {name} on every node")
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        self.api(f"permissions/{vhost}/{CREDENTIALS[0]}", "PUT", permissions)
        return self.url(name)

    def _runs_everywhere(self, vhost: str) -> bool:
        """Whether the vhost runs on every node; where it stopped (its start timed
        out), it is started again."""
        # Empty until a node reports it: {} from RabbitMQ 3, [] from RabbitMQ 4.
        states: dict[str, str] = self.api(f"vhosts/{vhost}")["cluster_state"]
        if not states:
            return False
        for node, state in states.items():
            if state == "stopped":
                self.api(f"vhosts/{vhost}/start/{quote(node, safe='')}", "POST")
        return all(state == "running" for state in states.values())

    def delete_vhost(self, name: str) -> None:
        """Delete `name` and its queues; a vhost already gone is fine."""
        try:
            self.api(f"vhosts/{quote(name, safe='')}", "DELETE")
        except requests.HTTPError as error:
            if error.response is None or error.response.status_code != 404:
                raise

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        """The management API's queue (messages_ready, messages_unacknowledged,
        consumers...): its counts up to about a second old."""
        path = f"queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
        queue: dict[str, Any] = {}

        def counted() -> bool:
            queue.update(self.api(path))
            return "messages_ready" in queue

        # A queue just declared has no counts until its first statistics: wait for
        # them, a while (a queue that has lost its leader may never get them).
        with suppress(NotYet):
            wait_until(counted, 2, interval=0.05)
        return queue

    def stop(self) -> None:
        """Stop as an operator would: on SIGTERM the node closes its connections and
        listeners and stops its applications before the VM exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Die as in a crash: the Erlang VM killed, nothing closed."""
        self._end(signal.SIGKILL)

    def _end(self, signum: int) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        if signum == signal.SIGKILL:
            self._kill_group(process)
            return
        # The script passes SIGTERM on to the VM and exits once the VM has.
        process.send_signal(signum)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._kill_group(process)

    @staticmethod
    def _kill_group(process: "subprocess.Popen[bytes]") -> None:
        # The script runs the VM as its child, in its process group: all at once.
        vm = children(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Orphaned, the VM is init's to reap; dead is enough (a VM still dying would
        # keep its node name registered, refusing a restart).
        wait_until(lambda: not any(alive(pid) for pid in vm), 10, what=f"the end of {vm}")

    def remove(self) -> None:
        """Killed, not stopped: its data goes with it, and a stop costs seconds (see
        above) that a throwaway node's end does not need."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class RabbitMQCluster:
    """Three (or `size`) throwaway nodes clustered, each on a host of its own of a
    harness.network.Network, serving AMQP on the same port of each host's address."""

    def __init__(self, network: Network, size: int = 3):
        self.port = free_port()
        hosts = [network.host(f"rabbit{index}") for index in range(1, size + 1)]
        first = f"storefront-test-{self.port}@{hosts[0].address}"
        cookie = secrets.token_hex(20)
        # Every node names the first alone: it forms the cluster, the others join it.
        # A node that names nodes not yet up waits for them: RabbitMQ 4's peer discovery
        # tries 30 times, 20 s a try on a test network, before it gives up.
        self.nodes = [
            LocalRabbitMQ(self.port, host=host, cookie=cookie, peers=(first,)) for host in hosts
        ]

    def start(self) -> "RabbitMQCluster":
        # The first alone, then the others at once: each joins it as it starts (nodes
        # that all start together may each wait for another to be first).
        first, *others = self.nodes
        first.start()
        with ThreadPoolExecutor(len(others) or 1) as pool:
            list(pool.map(LocalRabbitMQ.start, others))
        # Each node serves on its own before the cluster counts it as running.
        wait_until(lambda: len(self.running()) == len(self.nodes), 60, what="the cluster formed")
        return self

    def running(self) -> list[str]:
        """The names of the nodes that the cluster, as one of its live nodes sees it,
        counts as running."""
        return [node["name"] for node in self._live().api("nodes") if node["running"]]

    def create_vhost(self, name: str) -> str:
        """A vhost of the cluster's (made on one node, it is every node's); the URL list
        that names every node, as CELERY_BROKER_URL takes it."""
        self.nodes[0].create_vhost(name)
        return ";".join(node.url(name) for node in self.nodes)

    def leader(self, vhost: str, queue: str) -> LocalRabbitMQ:
        """The node that leads a quorum queue (its replicas follow)."""
        name = self._live().queue(vhost, queue)["leader"]
        return next(node for node in self.nodes if node.node == name)

    def queue_members(self, vhost: str, queue: str) -> list[str]:
        """The nodes that keep a replica of a quorum queue, and are up."""
        return list(self._live().queue(vhost, queue)["online"])

    def _live(self) -> LocalRabbitMQ:
        return next(node for node in self.nodes if node.serves())

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
