"""The provider's cap (playground/sending_rate.py): one budget in Redis that every worker
process takes its turns from: here first in this process, on the tests' throwaway
Redis, then through three workers on two hosts, counted at the SMTP server."""

import time
from bisect import bisect_left

import pytest
import redis

from conftest import call, deliveries, emails_per_customer, wait_until_done
from harness.processes import CACHE_DB
from playground import sending_rate

CAP = 5


@pytest.fixture
def cache_redis(settings, redis_server):
    settings.REDIS_CACHE_URL = redis_server.url(CACHE_DB)
    sending_rate.scripts.cache_clear()
    client = redis.Redis.from_url(settings.REDIS_CACHE_URL)
    client.delete(sending_rate.LOG)
    yield client
    sending_rate.scripts.cache_clear()


def test_a_turn_is_given_a_second_after_the_handover_of_the_one_it_replaces(settings, cache_redis):
    settings.NOTIFY_RATE_LIMIT = CAP
    given, ended = [], []  # when each turn was given, when its handover ended
    for _ in range(3 * CAP):
        with sending_rate.Turn() as turn:
            turn.take()
            given.append(time.monotonic())
            time.sleep(0.01)  # the handover
            ended.append(time.monotonic())

    # By this process's clock, as Redis's runs at the same pace: each turn past the
    # first CAP came more than a second after the handover of the one CAP before it.
    waits = [later - earlier for earlier, later in zip(ended, given[CAP:], strict=False)]
    assert min(waits) >= 1
    assert cache_redis.zcard(sending_rate.LOG) == CAP


def test_a_turn_whose_handover_never_ended_stops_counting(settings, cache_redis, monkeypatch):
    settings.NOTIFY_RATE_LIMIT = 1
    monkeypatch.setattr(sending_rate, "HANDOVER_LASTS_MS", 200)
    sending_rate.Turn().take()  # its worker died mid-handover

    sending_rate.Turn().take()  # given once the first stopped counting

    assert cache_redis.zcard(sending_rate.LOG) == 1


def test_without_a_cap_a_turn_is_given_at_once_and_nothing_is_kept(settings, cache_redis):
    settings.NOTIFY_RATE_LIMIT = None

    for _ in range(3 * CAP):
        with sending_rate.Turn() as turn:
            turn.take()

    assert cache_redis.exists(sending_rate.LOG) == 0


# Its servers on hosts of their own, three workers and 25 s of sending under the cap:
# past the suite's 120 s on a loaded machine (the waits inside keep their own bounds).
@pytest.mark.timeout(300)
def test_three_workers_on_two_hosts_keep_together_within_the_providers_cap(
    network, network_redis, database_host, project_env, seed_customers, smtp_server,
    start_worker_on, database,
):  # fmt: skip
    # The database on a host of its own too, as where workers are on several hosts.
    customers, cap = 5000, 200
    project_env["NOTIFY_RATE_LIMIT"] = str(cap)
    seed_customers(customers)
    first_host, _first = start_worker_on("first")
    start_worker_on("second", host=first_host)
    start_worker_on("third")

    call(project_env, "Within the provider's cap")
    wait_until_done(database, timeout=120)

    # The SMTP server's own clock: the most messages it took within any one second.
    taken = sorted(smtp_server.received_at)
    busiest = max(bisect_left(taken, at + 1) - n for n, at in enumerate(taken))
    took = taken[-1] - taken[0]
    print(f"{customers} emails at a cap of {cap}/s: {took:.1f} s, busiest second {busiest}")
    assert busiest <= cap
    assert deliveries(database) == {"sent": customers}
    assert emails_per_customer(smtp_server) == [1] * customers
    assert took == pytest.approx(customers / cap, rel=0.15)
