"""The hello page under production settings, served as compose serves it (gunicorn
behind the TLS proxy): mailings start only on purpose, from a signed-in staff user."""

import re

import pytest
import requests

from conftest import manage, queued_tasks
from playground.models import Notification

STAFF = ("staff", "a-long-and-unguessable-staff-password")


class Client:
    """A browser behind the TLS proxy: it says HTTPS (X-Forwarded-Proto), keeps the
    secure cookies that requests would not send over plain HTTP, and sends the Referer
    Django's CSRF check wants on HTTPS."""

    def __init__(self, web):
        self.web, self.cookies = web, {}

    def request(self, method, path, headers=None, **kwargs):
        headers = {
            "X-Forwarded-Proto": "https",
            "Referer": f"https://127.0.0.1:{self.web.port}{path}",
            "Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items()),
            **(headers or {}),
        }
        response = requests.request(
            method, self.web.url(path), headers=headers, allow_redirects=False, timeout=10,
            **kwargs,
        )  # fmt: skip
        self.cookies.update(response.cookies.items())
        return response

    def csrf_token(self, path):
        page = self.request("GET", path).text
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def sign_in(self, username, password):
        token = self.csrf_token("/admin/login/")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
        return self.request("POST", "/admin/login/?next=/admin/", data=form)


def notifications(database):
    return Notification.objects.using(database).count()


@pytest.fixture
def staff(prod_web, prod_env):
    username, password = STAFF
    env = {**prod_env, "DJANGO_SUPERUSER_PASSWORD": password}
    manage(env, "createsuperuser", "--noinput", f"--username={username}", "--email=s@example.com")
    client = Client(prod_web)
    assert client.sign_in(username, password).status_code == 302
    return client


def test_no_anonymous_request_of_any_method_starts_a_notification(prod_web, broker, database):
    stranger = Client(prod_web)
    prefetch = {"Sec-Purpose": "prefetch"}
    preview = {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}

    answers = [stranger.request("GET", "/playground/hello/").status_code for _ in range(25)]
    answers += [stranger.request("HEAD", "/playground/hello/").status_code for _ in range(25)]
    answers += [stranger.request("POST", "/playground/hello/").status_code for _ in range(25)]
    token = stranger.csrf_token("/admin/login/")  # a valid CSRF token is still no permission
    answers += [
        stranger.request(
            "POST", "/playground/hello/", data={"csrfmiddlewaretoken": token}
        ).status_code
        for _ in range(22)
    ]
    answers.append(stranger.request("OPTIONS", "/playground/hello/").status_code)
    answers.append(stranger.request("GET", "/playground/hello/", headers=prefetch).status_code)
    answers.append(stranger.request("GET", "/playground/hello/", headers=preview).status_code)

    assert len(answers) == 100
    assert sorted(set(answers)) == [200, 403, 405]
    assert notifications(database) == 0
    assert queued_tasks(broker) == []


def test_the_anonymous_page_shows_no_form_to_start_one(prod_web):
    page = Client(prod_web).request("GET", "/playground/hello/").text

    assert "Hello Mosh" in page
    assert "<form" not in page


def test_a_staff_post_starts_exactly_one_notification(staff, broker, database):
    page = staff.request("GET", "/playground/hello/").text
    assert "Notify customers" in page
    token = staff.csrf_token("/playground/hello/")

    first = staff.request("POST", "/playground/hello/", data={"csrfmiddlewaretoken": token})
    again = staff.request("POST", "/playground/hello/", data={"csrfmiddlewaretoken": token})

    assert (first.status_code, again.status_code) == (200, 200)
    assert "/playground/notifications/" in first.text
    assert notifications(database) == 1
    assert queued_tasks(broker) == [("playground.tasks.notify_customers", ["Hello"])]
