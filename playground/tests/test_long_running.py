"""A worker that runs for weeks: its pool processes are replaced as they age, and what
a notification leaves in Redis expires."""

from conftest import call, pool_processes, unacknowledged, wait_until, wait_until_done


def test_pool_processes_are_replaced_after_their_task_quota_and_the_worker_goes_on(
    project_env, seed_customers, smtp_server, start_worker, database
):
    project_env.update(CELERY_WORKER_MAX_TASKS_PER_CHILD="1", NOTIFY_BATCH_SIZE="5")
    seed_customers(10)
    worker = start_worker("worker", "--concurrency=1")
    first = pool_processes(worker)

    call(project_env, "Recycled")
    wait_until_done(database)
    wait_until(lambda: pool_processes(worker) and not set(pool_processes(worker)) & set(first),
               what="a new pool process")  # fmt: skip
    call(project_env, "Still served")
    wait_until_done(database, count=2)
    assert len(smtp_server.messages) == 20


def test_what_a_notification_leaves_in_redis_expires(
    project_env, seed_customers, smtp_server, start_worker, broker, database
):
    project_env["NOTIFY_BATCH_SIZE"] = "5"
    seed_customers(20)
    start_worker("worker", "--concurrency=2")

    call(project_env, "Leaves nothing for good")
    wait_until_done(database)
    wait_until(lambda: unacknowledged(broker) == 0, what="all acked")

    # kombu's bookkeeping of the queues stays (one small key each), and the names of
    # the live workers (celery_guarantees' liveness); everything a notification left
    # expires within a day.
    keys = list(broker.scan_iter())
    lasting = [key for key in keys if broker.ttl(key) == -1 and not key.startswith(b"_kombu.")]
    assert lasting == [b"unacked_consumers"]
    assert max(broker.ttl(key) for key in keys) <= 24 * 3600
