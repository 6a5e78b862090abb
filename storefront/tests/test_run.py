"""`make run`'s supervisor (harness/run.py) when no Redis can be had."""

import subprocess
import sys
from pathlib import Path

from celery_guarantees.testing.servers import free_port

from conftest import BASE_DIR


def test_run_without_any_redis_stops_with_one_sentence_saying_how_to_get_one(project_env):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/2"  # the cache's Redis, which every broker needs
    env = {
        **project_env,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/1",
        "REDIS_CACHE_URL": url,
    }
    env["PATH"] = str(Path(sys.executable).parent)

    run = subprocess.run(
        [sys.executable, "-m", "harness.run"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )

    assert run.returncode == 1
    assert run.stderr.count("\n") == 1
    assert f"No Redis answers at {url} and redis-server is not installed" in run.stderr
    assert "apt install redis-server" in run.stderr
    assert "docker run -d -p 6379:6379 redis" in run.stderr
