"""The mail queue: the emails' batches go to `mail`, everything else to `celery`
(settings: CELERY_TASK_ROUTES), so that a mailing keeping its workers busy holds up
nothing else when each queue has a worker of its own, as the Procfile and compose run
them. Real workers, Beat and SMTP server; the mailing is held at the SMTP server."""

import pytest
from celery_guarantees.testing.waiting import wait_until

from conftest import call, deliveries, wait_until_done
from playground.models import OutboxMessage
from playground.tasks import purge_old_notifications

WORKER_AND_MAILER = "worker -Q celery + mailer -Q mail"
ONE_WORKER_OF_BOTH = "one worker of both queues"


@pytest.mark.parametrize("workers", [WORKER_AND_MAILER, ONE_WORKER_OF_BOTH])
def test_beats_relay_runs_on_time_while_the_mail_worker_is_saturated(
    workers, project_env, thirty_customers, start_worker, start_beat, task_queue, database
):
    project_env["OUTBOX_RELAY_EVERY"] = "1"
    if workers == WORKER_AND_MAILER:  # as the Procfile runs them
        start_worker("worker", "--queues=celery", "--concurrency=1")
        start_worker("mailer", "--queues=mail", "--concurrency=1")
    else:  # a test's worker consumes both unless told
        start_worker("worker", "--concurrency=1")
    call(project_env, "Spring sale")
    thirty_customers.wait_until_holding()  # the mail worker's one process is busy
    # What the web kept while the broker was away, for Beat's relay_outbox to hand over.
    kept = OutboxMessage.objects.using(database).create(
        task_id="6f1c8a52-0000-4000-8000-000000000021", task=purge_old_notifications.name
    )
    start_beat()

    if workers == WORKER_AND_MAILER:
        relayed = lambda: not OutboxMessage.objects.using(database).exists()  # noqa: E731
        # The SMTP server holds the batch until release(), below: relayed beside it.
        wait_until(relayed, timeout=30, what="the outbox relayed while the mailing is held")
    else:  # the relay waits in the queue behind the held batch
        wait_until(lambda: task_queue.waiting() >= 1, what="relay_outbox queued")
        assert OutboxMessage.objects.using(database).filter(id=kept.id).exists()

    thirty_customers.release()
    wait_until_done(database)
    assert deliveries(database) == {"sent": 30}
    assert not OutboxMessage.objects.using(database).exists()
