"""Relations between settings that a later change must not break silently, and
settings that are data: importing them changes no library's globals."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

from harness.processes import BASE_DIR, production


def test_redis_redelivers_only_after_the_longest_task_and_countdown_could_end():
    countdowns = (settings.NOTIFY_CUSTOMERS_RETRY_SECONDS, settings.NOTIFY_RETRY_BACKOFF_MAX)
    longest = settings.CELERY_TASK_TIME_LIMIT + max(countdowns)
    for options in (
        settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS,
    ):
        assert options["visibility_timeout"] > longest


def test_the_soft_time_limit_comes_before_the_hard_one():
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT


def test_every_periodic_run_expires_by_the_time_the_next_is_due():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        period = schedule if isinstance(schedule, float | int) else None
        expires = entry.get("options", {}).get("expires")
        assert expires, name
        if period is not None:
            assert expires <= period, name


def test_a_notification_is_called_stale_only_after_its_longest_silence_could_end():
    # A batch may run for the hard time limit and then wait out its longest backoff.
    longest = settings.CELERY_TASK_TIME_LIMIT + settings.NOTIFY_RETRY_BACKOFF_MAX
    assert longest < settings.NOTIFY_STALE_AFTER


# A fresh interpreter sets the app up (the storefront package: storefront/celery.py),
# notes kombu's transport names, the receivers of every Celery signal and whether a
# Sentry client is set up, imports the settings and prints whether any changed.
IMPORT_THE_SETTINGS = """
import json, sys
import sentry_sdk
import storefront
from celery import signals
from celery.utils.dispatch import Signal
from kombu.transport import TRANSPORT_ALIASES

def library_state():
    receivers = {
        name: len(signal.receivers)
        for name, signal in vars(signals).items()
        if isinstance(signal, Signal)
    }
    return dict(TRANSPORT_ALIASES), receivers, sentry_sdk.get_client().is_active()

before = library_state()
__import__(sys.argv[1])
print(json.dumps(library_state() == before))
"""


@pytest.mark.parametrize("module", ["storefront.settings.dev", "storefront.settings.prod"])
def test_importing_the_settings_changes_no_librarys_globals(module):
    env = production(os.environ) if module.endswith("prod") else dict(os.environ)
    env.update(
        DATABASE_URL="sqlite:///unused.sqlite3",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/1",
        REDIS_CACHE_URL="redis://127.0.0.1:6379/2",
        FLOWER_BASIC_AUTH="tester:long enough password 1",
        SENTRY_DSN="http://public@127.0.0.1:9/1",
    )
    argv = [sys.executable, "-c", IMPORT_THE_SETTINGS, module]
    done = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True)

    assert (done.returncode, done.stdout.strip()) == (0, "true"), done.stderr
