"""notify_customers for real: customers in the database, a real SMTP server, real
workers, and the hello page following the progress."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import call_command

from conftest import call, deliveries, pool_processes, queued_tasks, wait_until, wait_until_done
from playground.models import Delivery, Notification
from playground.tasks import send_batch


@pytest.mark.both_stacks
@pytest.mark.parametrize("fault", ["none", "pool process killed halfway", "batch refused once"])
def test_a_thousand_customers_get_one_email_each(
    fault, project_env, seed_customers, smtp_server, start_worker, database
):
    project_env["NOTIFY_BATCH_SIZE"] = "100"
    seed_customers(1000)
    smtp_server.hold_at = 500 if fault == "pool process killed halfway" else None
    smtp_server.refusals = 1 if fault == "batch refused once" else 0
    worker = start_worker("worker", "--concurrency=2")

    call(project_env, "Spring sale")
    if smtp_server.hold_at:
        smtp_server.wait_until_holding(connections=2)
        os.kill(pool_processes(worker)[0], signal.SIGKILL)
        smtp_server.release()
    wait_until_done(database, timeout=90)

    received = smtp_server.messages
    assert sorted(m["To"] for m in received) == sorted(
        f"customer{n}@example.com" for n in range(1000)
    )
    assert {m["Subject"] for m in received} == {"Spring sale"}
    assert {m.get_payload().strip() for m in received} == {"Spring sale"}
    assert len({m["Message-ID"] for m in received}) == 1000
    assert deliveries(database) == {"sent": 1000}
    assert "Sending 1000 emails..." in worker.log()
    if fault == "batch refused once":
        assert "SMTP failed" in worker.log()
        assert "retrying the batch" in worker.log()


@pytest.mark.both_stacks
def test_customers_the_smtp_server_keeps_refusing_are_recorded_as_failed(
    project_env, seed_customers, smtp_server, start_worker, database
):
    project_env.update(NOTIFY_BATCH_SIZE="10", NOTIFY_MAX_RETRIES="1")
    seed_customers(20)
    smtp_server.refused = {"customer0@example.com"}  # the first in the first batch
    worker = start_worker("worker", "--concurrency=1")

    call(project_env, "Refused")
    wait_until_done(database)

    assert deliveries(database) == {"sent": 10, "failed": 10}
    worker.wait_for("Emails were sent to 10 of 20 customers; 10 failed; 0 unknown")
    errors = Delivery.objects.using(database).exclude(error="").values_list("error", flat=True)
    assert "451" in errors.distinct()[0]


def test_a_customer_the_smtp_server_refuses_for_good_is_failed_and_the_others_get_it(
    project_env, seed_customers, smtp_server, start_worker, database
):
    project_env["NOTIFY_BATCH_SIZE"] = "10"
    seed_customers(20)
    smtp_server.rejected = {"customer3@example.com"}
    worker = start_worker("worker", "--concurrency=1")

    call(project_env, "Mostly delivered")
    wait_until_done(database)

    assert deliveries(database) == {"sent": 19, "failed": 1}
    worker.wait_for("Emails were sent to 19 of 20 customers; 1 failed; 0 unknown")
    assert "SMTP failed" not in worker.log()  # no retry: a 5xx is final
    assert "customer3@example.com" not in {m["To"] for m in smtp_server.messages}


@pytest.mark.both_stacks
def test_the_status_endpoint_counts_up_to_the_total_and_says_done(
    project_env, seed_customers, smtp_server, web, start_worker
):
    project_env["NOTIFY_BATCH_SIZE"] = "20"
    seed_customers(200)
    smtp_server.delay = 0.01
    start_worker("worker", "--concurrency=2")

    page = requests.get(web.url("/playground/hello/"), timeout=5).text
    status_url = web.url(page.split('data-status-url="')[1].split('"')[0])
    seen = []

    def poll():
        seen.append(requests.get(status_url, timeout=5).json())
        return seen[-1]["done"]

    wait_until(poll, timeout=60, what="done", interval=0.1)

    sent = [progress["sent"] for progress in seen]
    assert sent == sorted(sent)
    assert seen[-1] | {"id": None} == {
        "id": None,
        "message": "Hello",
        "status": "done",
        "total": 200,
        "sent": 200,
        "failed": 0,
        "unknown": 0,
        "done": True,
        "reason": "",
    }
    assert any(0 < n < 200 for n in sent)  # it was followed while running


@pytest.mark.both_stacks
def test_a_rush_of_first_visits_starts_a_single_notification(web, task_queue, database):
    def visit(_):
        page = requests.get(web.url("/playground/hello/"), timeout=10).text
        return page.split("/playground/notifications/")[1].split("/")[0]

    with ThreadPoolExecutor(16) as pool:
        shown = set(pool.map(visit, range(48)))

    assert len(shown) == 1
    assert task_queue.take() == [("playground.tasks.notify_customers", ["Hello"])]
    assert Notification.objects.using(database).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("notification_id", ["6f1c8a52-0000-4000-8000-000000000009", "nope"])
def test_an_unknown_or_malformed_notification_gets_a_json_404(client, notification_id):
    response = client.get(f"/playground/notifications/{notification_id}/")

    assert response.status_code == 404
    assert response.json() == {"error": "No such notification."}


@pytest.mark.django_db
def test_a_reload_shows_the_running_notification_instead_of_starting_another(client, broker):
    running = Notification.objects.create(
        id="6f1c8a52-0000-4000-8000-000000000010", message="Hello", status="running", total=5
    )

    response = client.get("/playground/hello/")

    assert f"/playground/notifications/{running.id}/" in response.content.decode()
    assert queued_tasks(broker) == []


@pytest.mark.django_db
def test_seed_customers_creates_active_customers_with_an_email(django_user_model):
    call_command("seed_customers", "25")

    customers = django_user_model.objects.filter(is_active=True).exclude(email="")
    assert customers.count() == 25
    assert not customers.first().has_usable_password()


@pytest.mark.django_db
def test_a_batch_of_a_notification_that_no_longer_exists_is_dropped_with_a_warning(caplog):
    send_batch.run("6f1c8a52-0000-4000-8000-000000000011", [1, 2, 3])

    assert "no longer exists: batch dropped" in caplog.text


@pytest.mark.django_db
def test_seed_customers_numbers_after_the_highest_even_after_deletions(django_user_model):
    call_command("seed_customers", "3")
    django_user_model.objects.get(username="customer0").delete()

    call_command("seed_customers", "2")

    usernames = set(django_user_model.objects.values_list("username", flat=True))
    assert usernames == {"customer1", "customer2", "customer3", "customer4"}
