"""Relations between settings that a later change must not break silently."""

from django.conf import settings


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
