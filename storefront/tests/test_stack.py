"""docker-compose.yml as an operator runs it: the image built from the Dockerfile, the
stack up under Podman from a filled-in .env, every request through the proxy over
HTTPS, as strangers and the admin would send them (make test-compose)."""

import re
import socket
import statistics
import threading
import time

import pytest
import requests

from conftest import this_machines_address, wait_until

ADMIN = ("admin", "the-admins-own-long-password")


class Browser:
    """A client of the stack's proxy over HTTPS (verifying the stack's certificate),
    from `address` (this machine's loopback
    reaches the proxy masqueraded as the containers' gateway; its other address, as
    itself), sending what a browser sends: cookies, and the Referer Django's CSRF check
    wants."""

    def __init__(self, stack, address="127.0.0.1"):
        self.base = f"https://{address}:{stack.env['HTTPS_PORT']}"
        self.session = requests.Session()
        self.certificate = stack.certificate

    def request(self, method, path, headers=None, **kwargs):
        headers = {"Referer": self.base + path, **(headers or {})}
        return self.session.request(
            method, self.base + path, headers=headers, allow_redirects=False, timeout=10,
            verify=self.certificate, **kwargs,
        )  # fmt: skip

    def csrf_token(self, path):
        page = self.request("GET", path).text
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def sign_in(self, password, username=ADMIN[0], headers=None):
        form = {"username": username, "password": password}
        form["csrfmiddlewaretoken"] = self.csrf_token("/admin/login/")
        return self.request("POST", "/admin/login/?next=/admin/", data=form, headers=headers)


# The first test's setup builds the images and brings the stack up.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def compose_stack(start_stack):
    stack = start_stack()
    stack.exec(
        "web", "python", "manage.py", "createsuperuser", "--noinput",
        f"--username={ADMIN[0]}", "--email=admin@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": ADMIN[1]},
    )  # fmt: skip
    return stack


def test_the_site_answers_through_the_proxy_over_https_only(compose_stack):
    browser = Browser(compose_stack)
    plain = requests.get(
        f"http://127.0.0.1:{compose_stack.env['HTTP_PORT']}/playground/hello/",
        allow_redirects=False, timeout=10,
    )  # fmt: skip

    assert browser.request("GET", "/playground/hello/").status_code == 200
    assert "Hello Mosh" in browser.request("GET", "/playground/hello/").text
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://127.0.0.1")


def test_the_admin_gets_its_static_files_from_the_image(compose_stack):
    page = Browser(compose_stack).request("GET", "/admin/login/").text
    stylesheet = page.split('<link rel="stylesheet" href="')[1].split('"')[0]

    response = Browser(compose_stack).request("GET", stylesheet)

    assert response.status_code == 200
    assert "max-age=315360000" in response.headers["Cache-Control"]


def test_flower_answers_only_with_its_password_and_only_on_loopback(compose_stack):
    flower = "http://127.0.0.1:5555/api/workers"
    login = tuple(compose_stack.env["FLOWER_BASIC_AUTH"].split(":", 1))

    assert requests.get(flower, timeout=10).status_code == 401
    assert requests.get(flower, auth=login, timeout=10).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{this_machines_address()}:5555/api/workers", timeout=10)


def test_flower_in_the_stack_cannot_start_a_mailing(compose_stack):
    login = tuple(compose_stack.env["FLOWER_BASIC_AUTH"].split(":", 1))

    sent = requests.post(
        "http://127.0.0.1:5555/api/task/send-task/playground.tasks.notify_customers",
        json={"args": ["Hello"]}, auth=login, timeout=10,
    )  # fmt: skip

    assert sent.status_code == 403  # FLOWER_ALLOW_CONTROL is off unless .env says so


def test_a_body_too_big_is_refused_by_the_proxy(compose_stack):
    too_big = Browser(compose_stack).request("POST", "/admin/login/", data=b"x" * 4_000_000)

    assert too_big.status_code == 413


def test_a_notification_goes_out_through_the_stacks_worker_and_mail_path(
    compose_stack, stack_inbox
):
    compose_stack.exec("web", "python", "manage.py", "seed_customers", "3")
    admin = Browser(compose_stack, this_machines_address())
    assert admin.sign_in(ADMIN[1]).status_code == 302
    token = admin.csrf_token("/playground/hello/")

    started = admin.request("POST", "/playground/hello/", data={"csrfmiddlewaretoken": token})

    assert started.status_code == 200
    # Every active user with an address is a customer: the admin too.
    customers = ["admin@example.com", *(f"customer{n}@example.com" for n in range(3))]
    wait_until(lambda: len(stack_inbox.messages) >= 4, 60, "4 emails")
    assert sorted(m["To"] for m in stack_inbox.messages) == customers


# --- The admin's login throttle, keyed by the address the proxy saw -------------------

FORGED_HEADERS = [
    {},
    {"X-Forwarded-For": "203.0.113.7"},
    {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"},  # a forged leftmost address
    {"X-Real-IP": "203.0.113.8"},
]


def test_a_stranger_is_locked_out_whatever_headers_it_sends_and_the_admin_is_not(compose_stack):
    stranger = Browser(compose_stack)  # seen as the containers' gateway
    admin = Browser(compose_stack, this_machines_address())  # seen as itself: another address

    # Five wrong passwords, each with other headers; then more, rotating the addresses.
    answers = [stranger.sign_in("guess", headers=h).status_code for h in FORGED_HEADERS * 2]
    answers += [
        stranger.sign_in("guess", headers={"X-Forwarded-For": f"10.0.{n}.1"}).status_code
        for n in range(5)
    ]
    right = stranger.sign_in(ADMIN[1], headers={"X-Real-IP": "203.0.113.99"})

    assert answers == [200] * 4 + [429] * 9  # the form again, then refused from the fifth
    assert right.status_code == 429  # even the right password, from the stranger's address
    assert admin.sign_in(ADMIN[1]).status_code == 302  # the admin, elsewhere, signs in


# --- Slow clients wait in the proxy, not in gunicorn -------------------------------------


def test_slow_clients_do_not_delay_anyone_else(compose_stack):
    """2 x WEB_CONCURRENCY (4) connections each sending one byte of a request every
    5 s: with gunicorn's sync workers in front they held every worker (the issue's
    finding); behind the proxy a normal client's requests go on at once."""
    stop = threading.Event()
    address = ("127.0.0.1", int(compose_stack.env["HTTP_PORT"]))

    def slow_client():
        with socket.create_connection(address) as connection:
            for byte in b"GET /playground/hello/ HTTP/1.1\r\nHost: localhost\r\n":
                try:
                    connection.send(bytes([byte]))
                except OSError:  # the proxy gave up on it (client_header_timeout)
                    return
                if stop.wait(5):
                    return

    slow = [threading.Thread(target=slow_client) for _ in range(8)]
    for thread in slow:
        thread.start()
    browser = Browser(compose_stack)
    seconds = []
    deadline = time.monotonic() + 15  # three of the slow clients' bytes each
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert browser.request("GET", "/playground/hello/").status_code == 200
        seconds.append(time.monotonic() - started)
    stop.set()
    for thread in slow:
        thread.join()

    assert len(seconds) >= 20
    p99 = statistics.quantiles(seconds, n=100)[98]
    assert p99 < 1, f"p99 {p99:.2f} s over {len(seconds)} requests"
