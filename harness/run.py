"""Start the whole system in one terminal: the Procfile's processes under honcho,
with a project-local Redis when none answers at the broker URL.

Run it as `make run` (`python -m harness.run`), which installs everything first."""

import os
import sys
from pathlib import Path
from subprocess import Popen
from urllib.parse import urlparse

from django.conf import settings

from harness.localredis import LocalRedis, RedisUnavailable
from harness.processes import BASE_DIR
from storefront.health import redis_answers

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
HOW_TO_GET_REDIS = (
    "install it with your package manager (apt install redis-server, brew install redis) "
    "or run it with Docker as the course does: docker run -d -p 6379:6379 redis"
)


def local_redis_for(broker_url):
    """A project-local redis-server for a broker URL on this machine where nothing answers."""
    if redis_answers(broker_url):
        return None
    url = urlparse(broker_url)
    if url.scheme != "redis" or url.hostname not in LOCAL_HOSTS:
        sys.exit(f"No Redis answers at {broker_url}: start it there, or {HOW_TO_GET_REDIS}.")
    try:
        redis = LocalRedis(url.port or 6379, BASE_DIR / ".run" / "redis").start()
    except RedisUnavailable as why:
        sys.exit(f"No Redis answers at {broker_url} and {why}: {HOW_TO_GET_REDIS}.")
    print(f"run: started a local redis-server at {redis.url()} (data in .run/redis)")
    return redis


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")
    (BASE_DIR / ".run").mkdir(exist_ok=True)  # the local Redis's data and the dev mailbox
    redis = local_redis_for(settings.CELERY_BROKER_URL)
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", "")}
    honcho = Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile"], cwd=BASE_DIR, env=env
    )
    try:
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                continue  # honcho got the same Ctrl-C and is stopping its processes
    finally:
        if redis:
            redis.stop()
            print("run: stopped the local redis-server")


if __name__ == "__main__":
    sys.exit(main())
