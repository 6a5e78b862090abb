"""The course's "cluster of message brokers", each server on a host of its own
(harness/network.py), beside the web and two workers on hosts of their own:

- RabbitMQ: three nodes, the task queue a quorum queue replicated on all three, every
  publish confirmed by a majority; every process is given the URL of every node
  (CELERY_BROKER_URL, `;`-separated) and fails over to the next on its own.
- Redis: a primary and its replica watched by three Sentinels; every process is given
  the Sentinels (sentinel:// URLs) and follows them to the replica they promote."""

import pytest
import requests
from celery import Celery

from conftest import deliveries, emails_per_customer, wait_until, wait_until_done
from harness.processes import POSTGRES_RABBITMQ
from playground.models import OutboxMessage

CUSTOMERS = 10_000


def a_fifth_sent(seed_customers, start_web_on, start_worker_on, database):
    """The web and two workers on hosts of their own, and a notification to 10,000
    customers started on the web, a fifth of them emailed; the web."""
    seed_customers(CUSTOMERS)
    web = start_web_on("web")
    start_worker_on("worker1")
    start_worker_on("worker2")
    assert requests.get(web.url("/playground/hello/"), timeout=10).ok
    wait_until(lambda: deliveries(database).get("sent", 0) >= CUSTOMERS // 5, timeout=120)
    return web


def connected_nodes(broker_url):
    """The broker node (host:port) each worker that answers is connected to, as its
    stats say (Flower's worker page shows the same)."""
    app = Celery(broker=broker_url, set_as_current=False)
    try:
        stats = app.control.inspect(timeout=1).stats() or {}
    finally:
        app.close()
    return {
        worker: f"{each['broker']['hostname']}:{each['broker']['port']}"
        for worker, each in stats.items()
    }


@pytest.mark.timeout(600)  # two notifications of 10,000 emails, a node restarted
@pytest.mark.parametrize("stack", [POSTGRES_RABBITMQ], indirect=True)
def test_the_node_leading_the_task_queue_lost_mid_notification_costs_no_email_and_rejoins(
    network, rabbitmq_cluster, network_redis, database_host, project_env, seed_customers,
    smtp_server, start_worker_on, start_web_on, database,
):  # fmt: skip
    web = a_fifth_sent(seed_customers, start_web_on, start_worker_on, database)
    leader = rabbitmq_cluster.leader("cluster", "celery")
    lost = f"{leader.address}:{leader.port}"
    leader.kill()

    # The web keeps answering, served by a node that is left.
    health = requests.get(web.url("/healthz"), timeout=10).json()
    assert health["status"] == "ok"
    assert health["broker_node"] != lost
    # The workers moved to the nodes left (as Flower shows each worker's broker), and
    # finish the notification.
    moved = lambda nodes: len(nodes) == 2 and lost not in nodes.values()  # noqa: E731
    survivors = ";".join(node.url("cluster") for node in rabbitmq_cluster.nodes if node != leader)
    wait_until(lambda: moved(connected_nodes(survivors)), timeout=60)
    wait_until_done(database, timeout=300)
    assert deliveries(database) == {"sent": CUSTOMERS}
    assert emails_per_customer(smtp_server) == [1] * CUSTOMERS

    # The next notification, while the node is still down: the nodes left confirm its
    # message, so the web keeps nothing in its outbox.
    assert requests.get(web.url("/playground/hello/"), timeout=10).ok
    assert not OutboxMessage.objects.using(database).exists()
    # The lost node comes back, rejoins the cluster and the queue, mid-notification.
    leader.start()
    wait_until(lambda: leader.node in rabbitmq_cluster.running(), timeout=60)
    wait_until_done(database, count=2, timeout=300)
    assert emails_per_customer(smtp_server) == [2] * CUSTOMERS
    assert leader.node in rabbitmq_cluster.queue_members("cluster", "celery")


def test_the_redis_primary_lost_mid_notification_is_replaced_by_its_replica_costing_no_email(
    network, redis_with_sentinels, project_env, seed_customers, smtp_server, start_worker_on,
    start_web_on, database,
):  # fmt: skip
    web = a_fifth_sent(seed_customers, start_web_on, start_worker_on, database)
    lost = redis_with_sentinels.primary_address()
    redis_with_sentinels.primary.kill()

    # The Sentinels promote the replica; the web and the workers follow them to it.
    wait_until(lambda: redis_with_sentinels.primary_address() not in (lost, None), timeout=60)
    health = requests.get(web.url("/healthz"), timeout=10).json()
    assert health == {
        "status": "ok",
        "down": [],
        "broker_node": redis_with_sentinels.primary_address(),
    }
    wait_until_done(database, timeout=300)
    assert deliveries(database) == {"sent": CUSTOMERS}
    assert emails_per_customer(smtp_server) == [1] * CUSTOMERS
    # Back, the lost primary is made a replica of the new one.
    redis_with_sentinels.primary.start()
    wait_until(redis_with_sentinels.whole, timeout=60)
