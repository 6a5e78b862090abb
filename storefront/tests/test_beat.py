"""The one-Beat lock (storefront/beat.py), in process, on an in-memory Redis
(fakeredis); test_faults.py starts two real Beats against a real one."""

from datetime import timedelta

import fakeredis
import pytest
from celery.schedules import crontab

from storefront.beat import ANOTHER_BEAT, SingleBeatScheduler
from storefront.celery import celery


@pytest.fixture
def redis_of_the_broker(monkeypatch):
    server = fakeredis.FakeServer()
    monkeypatch.setattr(
        "redis.Redis.from_url", lambda url, **kwargs: fakeredis.FakeRedis(server=server)
    )
    return fakeredis.FakeRedis(server=server)


def beat(tmp_path, name):
    return SingleBeatScheduler(app=celery, schedule_filename=str(tmp_path / name))


def test_a_second_beat_refuses_to_start_while_the_first_holds_the_lock(
    redis_of_the_broker, tmp_path
):
    first = beat(tmp_path, "first")

    with pytest.raises(SystemExit, match=ANOTHER_BEAT):
        beat(tmp_path, "second")
    first.close()
    beat(tmp_path, "third").close()  # the lock is free again


def test_a_beat_whose_lock_was_taken_stops_at_its_next_tick(redis_of_the_broker, tmp_path):
    first = beat(tmp_path, "first")
    redis_of_the_broker.set(SingleBeatScheduler.lock_name, "another beat's token")

    with pytest.raises(SystemExit, match=ANOTHER_BEAT):
        first.tick()


@pytest.fixture
def a_mailing_every_minute():
    settings_schedule = celery.conf.beat_schedule
    every_minute = {"task": "playground.tasks.notify_customers", "schedule": crontab(minute="*")}
    celery.conf.beat_schedule = {"mailing": every_minute}
    yield
    celery.conf.beat_schedule = settings_schedule


def test_a_beat_that_starts_fires_no_crontab_run_it_missed(
    redis_of_the_broker, tmp_path, a_mailing_every_minute
):
    scheduler = beat(tmp_path, "beat")
    entry = scheduler.schedule["mailing"]

    is_due, _ = entry.is_due()
    # What a schedule file kept from a run two minutes ago would have made of it:
    missed_due, _ = entry.schedule.is_due(entry.last_run_at - timedelta(minutes=2))

    assert (is_due, missed_due) == (False, True)
    scheduler.close()
