"""Waiting on a condition: the one polling loop of the harness, the tests and the
benchmarks. Wait on the thing itself (a row, a queue length, a process state), never
on a fixed sleep."""

import time
from collections.abc import Callable


class NotYet(AssertionError):
    """The condition did not hold in time (an AssertionError: a test that waits fails)."""


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.01,
) -> float:
    """Poll `condition` until it is true; return the moment it was (time.perf_counter).
    After `timeout` seconds raise NotYet naming `what` (a callable is asked only then,
    e.g. for a log worth showing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise NotYet(f"{what() if callable(what) else what} not within {timeout} s")
        time.sleep(interval)
    return time.perf_counter()
