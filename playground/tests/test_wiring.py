"""The course's wiring, checked in this process against the throwaway Redis."""

import json
from datetime import UTC, datetime

import pytest
from celery.schedules import crontab, maybe_schedule
from django.conf import settings
from django.urls import resolve

from conftest import queued_tasks
from playground import services, tasks, views
from storefront.celery import celery


def test_notify_customers_is_registered_under_the_course_name():
    assert "playground.tasks.notify_customers" in celery.tasks
    assert tasks.notify_customers.name == services.NOTIFY_CUSTOMERS  # what the page starts


@pytest.mark.parametrize("name", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_beat_schedule_entry_is_valid(name):
    entry = settings.CELERY_BEAT_SCHEDULE[name]
    assert entry["task"] in celery.tasks
    schedule = maybe_schedule(entry["schedule"], app=celery)
    is_due, next_check = schedule.is_due(datetime(2026, 1, 1, tzinfo=UTC))
    assert next_check > 0
    json.dumps([entry.get("args", []), entry.get("options", {})])  # the broker takes only JSON


def test_beat_schedule_has_the_course_entries():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["notify_customers"]["schedule"] == 5
    assert schedule["notify_customers"]["args"] == ["Hello World"]
    assert crontab(day_of_week=1, hour=7, minute=30) in [e["schedule"] for e in schedule.values()]
    assert crontab(minute="*/15") in [e["schedule"] for e in schedule.values()]


def test_hello_url_resolves_to_say_hello():
    assert resolve("/playground/hello/").func is views.say_hello


@pytest.mark.django_db(transaction=True)  # the message is published after the commit
def test_hello_says_hello_mosh_and_enqueues_one_notify_customers(client, broker):
    response = client.get("/playground/hello/")

    assert response.status_code == 200
    assert b"<h1>Hello Mosh</h1>" in response.content
    assert queued_tasks(broker) == [("playground.tasks.notify_customers", ["Hello"])]
