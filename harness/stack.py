"""docker-compose.yml run for real, with Podman: the image built from the Dockerfile, the
stack brought up by podman-compose from an operator's .env, waited on through its own
health checks, and taken down with its volumes (`make test-compose`; docs/testing.md).

The stack runs from a folder of its own holding what the compose file mounts (the
compose file, deploy/), the .env and a TLS certificate made for the run: the clone's own
.env, if a developer has one, is never touched. The images the files start from are
local stand-ins (harness/images/build): no registry is reachable here."""

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from celery_guarantees.testing.servers import self_signed
from celery_guarantees.testing.waiting import wait_until

from harness.processes import BASE_DIR

PODMAN_COMPOSE = BASE_DIR / ".tools/bin/podman-compose"
IMAGE = "storefront"


def why_podman_cannot_run() -> str | None:
    """Why this machine cannot run the stack, in one line; None if it can."""
    if os.geteuid() != 0:
        return "the compose stack runs under Podman as root: sudo make test-compose"
    return None


def build_images() -> None:
    """The stand-ins, then the project's image, as `docker compose build` would."""
    subprocess.run([BASE_DIR / "harness/images/build"], check=True)
    # The host's network for the build's pip: the build's own sandbox network reaches
    # no further than the host does anyway.
    subprocess.run(
        ["podman", "build", "--quiet", "--network=host", "-t", IMAGE, str(BASE_DIR)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


class Stack:
    """One compose project: `up()`, the services' containers, `down()`."""

    def __init__(self, folder: Path, dot_env: dict[str, str], name: str = "storefront-test"):
        self.folder, self.name = folder, name
        shutil.copy(BASE_DIR / "docker-compose.yml", folder)
        shutil.copytree(BASE_DIR / "deploy", folder / "deploy", dirs_exist_ok=True)
        # The site's certificate, for the names in ALLOWED_HOSTS: clients verify it.
        self.certificate, key = self_signed(folder, dot_env["ALLOWED_HOSTS"].split(","))
        self.env = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "REDIS_PASSWORD": secrets.token_urlsafe(16),
            "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(16)}",
            "TLS_CERTIFICATE": str(self.certificate),
            "TLS_CERTIFICATE_KEY": str(key),
            **dot_env,
        }
        (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def compose(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PODMAN_COMPOSE, "-p", self.name, *args],
            cwd=self.folder, check=True, capture_output=True, text=True,
        )  # fmt: skip

    def up(self, timeout: float = 180) -> "Stack":
        """Start every service and wait until each container's own health check passes
        (Podman 4.3 runs none by itself without systemd: they are run from here). What
        a run stopped before its teardown left of a stack of this name goes first."""
        self.down()
        self.compose("up", "-d")
        containers = self.containers()
        wait_until(
            lambda: all(self.healthy(container) for container in containers),
            timeout,
            lambda: f"every container healthy ({self.states()})",
        )
        return self

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans")

    def containers(self) -> list[str]:
        return self.podman_names("ps", "-a")

    def podman_names(self, *listing: str) -> list[str]:
        """What `podman <listing>` shows of this project (containers, volumes, networks)."""
        return self.listed(*listing, shown="{{.Names}}" if listing[0] == "ps" else "{{.Name}}")

    def listed(self, *listing: str, shown: str) -> list[str]:
        label = f"label=io.podman.compose.project={self.name}"
        listed = subprocess.run(
            ["podman", *listing, "--filter", label, "--format", shown],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return listed.stdout.splitlines()

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    @staticmethod
    def healthy(container: str) -> bool:
        # Without a health check podman answers 125, never healthy: every service has
        # one (test_every_service_has_a_health_check_and_waits_for_healthy_dependencies).
        run = subprocess.run(["podman", "healthcheck", "run", container], capture_output=True)
        return run.returncode == 0

    def states(self) -> str:
        return "; ".join(self.listed("ps", "-a", shown="{{.Names}}: {{.Status}}"))

    def exec(self, service: str, *argv: str, env: dict[str, str] | None = None) -> str:
        """Run a command in the service's running container; its output."""
        options = [f"--env={name}={value}" for name, value in (env or {}).items()]
        done = subprocess.run(
            ["podman", "exec", *options, self.container(service), *argv],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout
