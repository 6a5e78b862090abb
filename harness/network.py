"""Separate network hosts on one machine, for the tests that cut links: each host is a
Linux network namespace of its own with one address, all joined by a bridge, which
also gives this (the test) process an address on the same network.

A link between two hosts is cut by a blackhole route on each side: neither can send
to the other, established connections hang as on a real partition (nothing is
refused, nothing closed), and every other link stays up. Healing removes the routes.

Only addresses inside the network made here are ever targets. Making it needs root,
`ip` (Debian's iproute2) and a system that lets namespaces be made (a chroot does not:
there `ip netns exec` cannot remount /); elsewhere Network() raises NetworkUnavailable,
saying why (`why_unavailable`)."""

import fcntl
import functools
import ipaddress
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

SUBNET_LOCK = Path(tempfile.gettempdir()) / "storefront-network.lock"


class NetworkUnavailable(RuntimeError):
    pass


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    link: str  # its end of the veth pair, on the bridge

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run on this host (in its namespace; the files are the machine's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]


def on(host: Host | None, argv: list[str]) -> list[str]:
    """`argv` run on `host`, or on this machine if None."""
    return host.command(argv) if host else argv


@functools.cache
def why_unavailable() -> str | None:
    """Why no host can be made here, or None: tried once per process, with a namespace
    of its own that runs a command (in a chroot, adding one works and running in it not)."""
    if shutil.which("ip") is None:
        return "`ip` is not installed (Debian's iproute2)"
    if os.geteuid() != 0:
        return "making them needs root"
    probe = f"sfprobe{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
        ip("netns", "exec", probe, "true")
    except NetworkUnavailable as failure:
        return str(failure)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Network:
    def __init__(self) -> None:
        if why := why_unavailable():
            raise NetworkUnavailable(why)
        self.tag = uuid.uuid4().hex[:6]  # names of at most 15 characters, one per run
        self.bridge = f"sfb{self.tag}"
        self.hosts: list[Host] = []
        # Chosen and taken under a lock: the tests run in several processes at once.
        with open(SUBNET_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # A /24 of 10.213.0.0/16 that no interface here uses yet.
            used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
            self.subnet = next(
                net
                for net in ipaddress.ip_network("10.213.0.0/16").subnets(new_prefix=24)
                if f" {net.network_address + 1}/" not in used
            )
            self.address = str(self.subnet.network_address + 1)  # this process's
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def host(self, name: str) -> Host:
        """A new host on the network, with the next free address."""
        index = len(self.hosts) + 2
        address = str(self.subnet.network_address + index)
        outside, inside = f"sfv{self.tag}{index}", f"sfh{self.tag}{index}"
        host = Host(name, f"sf{self.tag}{name}", address, outside)
        ip("netns", "add", host.namespace)
        self.hosts.append(host)
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", host.namespace)
        ip("link", "set", outside, "master", self.bridge, "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", inside)
        ip("-n", host.namespace, "link", "set", inside, "up")
        ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def cut(self, one: Host, other: Host) -> None:
        """Nothing passes between the two hosts, either way, until healed."""
        ip("-n", one.namespace, "route", "add", "blackhole", f"{other.address}/32")
        ip("-n", other.namespace, "route", "add", "blackhole", f"{one.address}/32")

    def heal(self, one: Host, other: Host) -> None:
        ip("-n", one.namespace, "route", "del", "blackhole", f"{other.address}/32")
        ip("-n", other.namespace, "route", "del", "blackhole", f"{one.address}/32")

    def remove(self) -> None:
        """Delete the hosts, their links and the bridge."""
        for host in self.hosts:
            # Now: a deleted namespace takes its end of the pair with it only later.
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
