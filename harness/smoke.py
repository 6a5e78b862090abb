"""Waits until `make run` serves: the course's page and Flower (with development's
credentials) answer 200, as a person's browser would ask (`.venv/bin/python -m
harness.smoke` from the clone: harness/debian13). Fails, saying what did not answer,
after `--timeout` seconds."""

import argparse
import base64
import urllib.request
from urllib.error import URLError

from celery_guarantees.testing.waiting import wait_until

PAGES = {
    "the page": ("http://127.0.0.1:8000/playground/hello/", None),
    "Flower": ("http://127.0.0.1:5555/", "admin:admin"),
}


def status(url: str, credentials: str | None) -> int | str:
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except URLError as failure:
        return getattr(failure, "code", None) or str(failure.reason)
    except OSError as failure:
        return str(failure)


def wait_for_200(name: str, url: str, credentials: str | None, timeout: float) -> None:
    last: list[int | str] = []

    def answers_200() -> bool:
        last[:] = [status(url, credentials)]
        return last == [200]

    wait_until(answers_200, timeout, lambda: f"{name} answering 200 (last: {last})", 0.5)
    print(f"{name} answers 200 ({url})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=300)
    timeout = parser.parse_args().timeout
    for name, (url, credentials) in PAGES.items():
        wait_for_200(name, url, credentials, timeout)


if __name__ == "__main__":
    main()
