"""Production settings and the doors they close, with the processes started as
docker-compose.yml starts them."""

import subprocess
import sys
import time

import pytest
import requests
from celery_guarantees.testing.servers import free_port

from conftest import manage, queued_tasks, wait_until, wait_until_done
from harness.processes import BASE_DIR
from playground.models import Notification
from playground.tasks import notify_customers
from storefront.celery import celery

REQUIRED = ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_CACHE_URL"]
REQUIRED += ["EMAIL_HOST"]
HTTPS = {"X-Forwarded-Proto": "https"}  # as the TLS proxy in front of gunicorn says
TOO_WEAK = "storefront: the environment variable SECRET_KEY is too weak;"


@pytest.mark.parametrize("name", REQUIRED)
def test_production_refuses_to_start_without_each_required_variable(prod_env, name):
    del prod_env[name]

    check = manage(prod_env, "check", check=False)

    assert check.returncode == 1
    expected = f"storefront: the environment variable {name} is not set; production needs it.\n"
    assert check.stderr == expected


def test_production_refuses_to_start_with_a_trusted_proxy_that_is_no_address(prod_env):
    prod_env["TRUSTED_PROXIES"] = "proxy"

    check = manage(prod_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr == (
        "storefront: TRUSTED_PROXIES must list IP addresses or networks, comma-separated:"
        " 'proxy' does not appear to be an IPv4 or IPv6 network.\n"
    )


@pytest.mark.parametrize("rate", ["fast", "0", "2.5"])
def test_production_refuses_to_start_with_a_mail_cap_that_is_no_whole_number(prod_env, rate):
    prod_env["NOTIFY_RATE_LIMIT"] = rate

    check = manage(prod_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr == (
        "storefront: NOTIFY_RATE_LIMIT must be a whole number above zero, or unset:"
        f" not {rate!r}.\n"
    )


def test_check_deploy_is_clean_under_production_settings(prod_env):
    check = manage(prod_env, "check", "--deploy", "--fail-level", "WARNING", check=False)

    assert check.returncode == 0, check.stderr
    assert "System check identified no issues (0 silenced)." in check.stdout


def test_production_has_no_debug_toolbar(prod_web):
    debug = requests.get(prod_web.url("/__debug__/render_panel/"), headers=HTTPS, timeout=5)
    hello = requests.get(prod_web.url("/playground/hello/"), headers=HTTPS, timeout=5)

    assert debug.status_code == 404
    assert hello.status_code == 200
    assert "djDebug" not in hello.text


def test_production_serves_static_files_itself_with_whitenoise(prod_web):
    page = requests.get(prod_web.url("/admin/login/"), headers=HTTPS, timeout=5).text
    stylesheet = page.split('<link rel="stylesheet" href="')[1].split('"')[0]

    response = requests.get(prod_web.url(stylesheet), headers=HTTPS, timeout=5)

    assert response.status_code == 200
    assert "max-age=315360000" in response.headers["Cache-Control"]  # hashed name: forever


def test_production_redirects_plain_http_to_https(prod_web):
    response = requests.get(prod_web.url("/playground/hello/"), allow_redirects=False, timeout=5)

    assert response.status_code == 301
    assert response.headers["Location"].startswith("https://")


def test_healthz_names_what_is_down_within_a_second_and_recovers(own_redis, prod_web):
    probe = {"Host": "10.0.0.7:8000"}  # whatever the orchestrator sends, over plain HTTP

    up = requests.get(prod_web.url("/healthz"), headers=probe, timeout=5)
    own_redis.stop()
    started = time.monotonic()
    down = requests.get(prod_web.url("/healthz"), headers=probe, timeout=5)
    seconds = time.monotonic() - started
    own_redis.start()
    back = requests.get(prod_web.url("/healthz"), headers=probe, timeout=5)

    node = f"127.0.0.1:{own_redis.port}"
    assert (up.status_code, up.json()) == (200, {"status": "ok", "down": [], "broker_node": node})
    assert (down.status_code, down.json()) == (
        503,
        {"status": "down", "down": ["cache", "broker"], "broker_node": None},
    )
    assert seconds < 1
    assert back.status_code == 200


def test_livez_answers_while_the_broker_and_cache_are_down_and_readyz_names_them(
    own_redis, prod_web
):
    own_redis.stop()

    live = requests.get(prod_web.url("/livez"), timeout=5)
    ready = requests.get(prod_web.url("/readyz"), timeout=5)

    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["down"]) == (503, ["cache", "broker"])


def test_a_hundred_probes_reuse_their_connections_to_redis(own_redis, prod_web):
    def connections_received():
        with own_redis.client() as client:  # itself one more
            return client.info("stats")["total_connections_received"]

    before = connections_received()
    answers = {requests.get(prod_web.url("/readyz"), timeout=5).status_code for _ in range(100)}
    opened = connections_received() - before - 1

    assert answers == {200}
    # Each of gunicorn's two workers: the cache's pool and the broker's connection.
    assert opened <= 4, opened


def test_a_pickled_message_is_refused_and_never_run(start_worker, broker, database):
    worker = start_worker("worker", "--concurrency=1")

    celery.send_task(notify_customers.name, ["Pickled"], serializer="pickle")
    celery.send_task(notify_customers.name, ["JSON"])

    # One worker takes messages in order: once the second has run, the first is behind it.
    wait_until_done(database)
    messages = list(Notification.objects.using(database).values_list("message", flat=True))
    assert messages == ["JSON"]
    assert broker.llen("celery") == 0
    assert "]: Pickled" not in worker.log()
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log()


@pytest.mark.parametrize(
    "weak_key",
    ["django-insecure-" + "x7Gq2" * 10, "short-but-random-Zq81", "ab" * 30],
    ids=["django's development prefix", "shorter than 50", "fewer than 5 characters"],
)
def test_production_refuses_a_weak_secret_key(prod_env, weak_key):
    prod_env["SECRET_KEY"] = weak_key

    check = manage(prod_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr.startswith(TOO_WEAK)
    assert check.stderr.count("\n") == 1


@pytest.mark.parametrize("hosts", ["*", "shop.example.com,*"])
def test_production_refuses_any_host_at_all(prod_env, hosts):
    prod_env["ALLOWED_HOSTS"] = hosts

    check = manage(prod_env, "check", check=False)

    assert check.returncode == 1
    assert check.stderr.startswith("storefront: the environment variable ALLOWED_HOSTS is *,")
    assert check.stderr.count("\n") == 1


def test_gunicorn_refused_its_settings_exits_with_the_sentence_not_restarting_workers(
    prod_env,
):
    prod_env["SECRET_KEY"] = "short-but-random-Zq81"
    argv = [sys.executable, "-m", "gunicorn", "storefront.wsgi", f"--bind=127.0.0.1:{free_port()}"]

    gunicorn = subprocess.run(
        argv, cwd=BASE_DIR, env=prod_env, capture_output=True, text=True, timeout=30
    )

    assert gunicorn.returncode == 1
    assert gunicorn.stderr.count(TOO_WEAK) == 1  # gunicorn's own "Starting" line comes first
    assert gunicorn.stderr.splitlines()[-1].startswith(TOO_WEAK)


def test_pages_carry_a_content_security_policy(prod_web):
    for path in ("/playground/hello/", "/admin/login/"):
        policy = requests.get(prod_web.url(path), headers=HTTPS, timeout=5).headers.get(
            "Content-Security-Policy", ""
        )
        assert "default-src 'self'" in policy, path
        assert "frame-ancestors 'none'" in policy, path


def test_admin_logins_are_refused_from_the_fifth_failure_on(prod_web, prod_env):
    password = "the-right-password-for-the-admin"
    env = {**prod_env, "DJANGO_SUPERUSER_PASSWORD": password}
    manage(env, "createsuperuser", "--noinput", "--username=admin", "--email=a@example.com")
    login = prod_web.url("/admin/login/")

    def attempt(password):
        session = requests.Session()
        page = session.get(login, headers=HTTPS, timeout=5)
        token = page.text.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        form = {"username": "admin", "password": password, "csrfmiddlewaretoken": token}
        headers = {**HTTPS, "Referer": f"https://127.0.0.1:{prod_web.port}/admin/login/",
                   "Cookie": f"csrftoken={page.cookies['csrftoken']}"}  # fmt: skip
        return session.post(login, data=form, headers=headers, allow_redirects=False, timeout=5)

    failures = [attempt(f"guess-{n}").status_code for n in range(5)]
    locked = attempt(password)

    assert failures == [200] * 4 + [429]  # the form with its error; the fifth locks out
    assert locked.status_code == 429  # even the right password, for AXES_COOLOFF_TIME
    assert "sessionid" not in locked.cookies


def test_beat_under_production_settings_sends_no_mailing(prod_env, start_beat, broker):
    prod_env["OUTBOX_RELAY_EVERY"] = "0.2"

    start_beat()

    relays = ("playground.tasks.relay_outbox", [])
    wait_until(lambda: queued_tasks(broker).count(relays) >= 5, what="5 relay_outbox runs")
    assert "playground.tasks.notify_customers" not in {name for name, _ in queued_tasks(broker)}
