"""Celery reads a plain copy of Django's CELERY_* settings (celery_guarantees/django_settings.py):
every one of them, without going through Django's lazy settings object on each lookup."""

import pytest
from celery import Celery
from celery.app.defaults import DEFAULTS
from celery_guarantees.django_settings import read_a_copy_of_django_settings
from django.conf import LazySettings, settings

CELERY_SETTINGS = sorted(name for name in dir(settings) if name.startswith("CELERY_"))


def app_as_the_course_makes_it(copy: bool) -> Celery:
    app = Celery("storefront-copy" if copy else "storefront-lazy", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    if copy:
        read_a_copy_of_django_settings(app, namespace="CELERY")
    app.conf.task_serializer  # noqa: B018  (loads the configuration)
    return app


@pytest.fixture
def lazy_settings_reads(monkeypatch):
    """How many times Django's lazy settings were asked for a name they had not cached
    (every name Celery tries and Django lacks is one)."""
    calls = []
    original = LazySettings.__getattr__

    def counted(self, name):
        calls.append(name)
        return original(self, name)

    monkeypatch.setattr(LazySettings, "__getattr__", counted)
    return calls


def test_celery_sees_every_celery_setting_of_django_under_its_own_name():
    app = app_as_the_course_makes_it(copy=True)
    assert CELERY_SETTINGS  # the comparison below compares something
    for name in CELERY_SETTINGS:
        assert app.conf[name.removeprefix("CELERY_").lower()] == getattr(settings, name), name


def test_the_worker_finds_no_setting_to_warn_about():
    """Celery warns at the worker's start about every setting it takes for a Celery 3
    name (CELERY_TASK_SERIALIZER was one, and is again in Django's spelling)."""
    app = app_as_the_course_makes_it(copy=True)
    assert not app.conf.maybe_warn_deprecated_settings()


def test_celery_looks_its_settings_up_without_django_lazy_settings(lazy_settings_reads):
    app = app_as_the_course_makes_it(copy=True)
    lazy_settings_reads.clear()
    for name in DEFAULTS:  # every setting Celery has
        app.conf[name]
    assert lazy_settings_reads == []


def test_celery_still_reads_django_settings_through_the_lazy_object(lazy_settings_reads):
    """When this fails, Celery reads Django's settings cheaply on its own, and
    celery_guarantees/django_settings.py can go
    (guarantees/docs/celery-reads-django-settings-lazily.md)."""
    app = app_as_the_course_makes_it(copy=False)
    lazy_settings_reads.clear()
    for name in DEFAULTS:
        app.conf[name]
    assert len(lazy_settings_reads) > 100


def test_every_celery_setting_of_django_is_one_celery_knows():
    # The project's own settings carry its names: Celery's configuration holds Celery's.
    unknown = [
        name for name in CELERY_SETTINGS if name.removeprefix("CELERY_").lower() not in DEFAULTS
    ]
    assert unknown == []
