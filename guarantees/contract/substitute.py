"""A pytest plugin for kombu's and Celery's own tests (contract.py loads it into each run):
CONTRACT_TRANSPORT=package makes kombu's Redis transport classes the package's, so that
every test of kombu's that builds a Redis channel, transport or QoS builds the package's,
and so does Celery's worker (a thread of the same process, its pool forked from it);
CONTRACT_PRIORITY_STEPS=0 gives every Redis channel one list per queue, as the project
runs it (the package then takes with BLMOVE; kombu's pops from that one list)."""

import os

import kombu.transport.redis as kombu_redis
from celery_guarantees import redis_transport
from kombu.utils import eventio

if os.environ.get("CONTRACT_TRANSPORT") == "package":
    for name, ours in {
        "Channel": redis_transport.Channel,
        "Transport": redis_transport.Transport,
        "QoS": redis_transport.TakingQoS,
        "SentinelChannel": redis_transport.SentinelChannel,
        "SentinelTransport": redis_transport.SentinelTransport,
    }.items():
        setattr(kombu_redis, name, ours)
if steps := os.environ.get("CONTRACT_PRIORITY_STEPS"):
    kombu_redis.Channel.priority_steps = [int(step) for step in steps.split(",")]


def pytest_collection_finish(session):
    # kombu's unit tests replace eventio.poll before they import kombu.transport.redis,
    # which this plugin imported first: its poller takes theirs.
    kombu_redis.poll = eventio.poll
