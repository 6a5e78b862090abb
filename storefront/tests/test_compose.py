"""docker-compose.yml cannot run here (no Docker engine): check it against the
Compose specification's schema, resolve it as compose would with an operator's .env
(harness/compose.py) to see what each service receives, and keep it in step with the
Procfile, the settings, .env.example and the project's Redis policy. prod_web in
conftest runs its web command for real."""

import ast
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from django.conf import settings
from kombu import Connection

from conftest import BASE_DIR, compose_command, procfile_command
from harness.compose import ComposeError, interpolate, parse_env_file, resolve
from harness.localrabbitmq import LocalRabbitMQ
from harness.localredis import REDIS_FLAGS
from storefront.beat import SingleBeatScheduler
from storefront.sentinel import sentinel_for
from storefront.settings.environment import BROKER_DB, CACHE_DB

COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
ENV_EXAMPLE = BASE_DIR / ".env.example"
SERVICE_OF_PROCESS = {
    "worker": "celery",
    "mailer": "celery-mail",
    "beat": "celery-beat",
    "flower": "flower",
}
# The web serves with gunicorn in compose, and smtp4dev (under the mailcatcher profile)
# catches the mail there.
SERVICE_OF_EVERY_PROCESS = {**SERVICE_OF_PROCESS, "web": "web", "mail": "smtp4dev"}
# The services running the project's code, from the one image.
APP_SERVICES = ("web", "celery", "celery-mail", "celery-beat", "flower")
# What every stack runs, whatever its profiles.
WITHOUT_PROFILES = (*APP_SERVICES, "proxy", "redis", "db")


@pytest.fixture(scope="module")
def services():
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


@pytest.mark.slow  # runs check-jsonschema
def test_compose_file_follows_the_compose_specification():
    check = subprocess.run(
        [Path(BASE_DIR, ".venv/bin/check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         BASE_DIR / "docker-compose.yml"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_procfile_process_has_its_compose_service(services):
    processes = [
        line.partition(":")[0] for line in (BASE_DIR / "Procfile").read_text().splitlines()
    ]
    assert sorted(processes) == sorted(SERVICE_OF_EVERY_PROCESS)
    assert set(SERVICE_OF_EVERY_PROCESS.values()) <= set(services)


@pytest.mark.parametrize(("process", "service"), sorted(SERVICE_OF_PROCESS.items()))
def test_compose_runs_each_celery_process_as_the_procfile_does(process, service):
    assert shlex.split(compose_command(service)) == procfile_command(process)


def test_compose_web_migrates_then_serves_the_project_with_gunicorn(services):
    command = compose_command("web")
    assert command.index("manage.py migrate") < command.index("gunicorn storefront.wsgi")
    assert services["web"]["environment"]["DJANGO_SETTINGS_MODULE"] == "storefront.settings.prod"


def test_every_service_has_a_health_check_and_waits_for_healthy_dependencies(services):
    for name, service in services.items():
        assert "test" in service["healthcheck"], name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = {"condition": "service_healthy"}
            if services[dependency].get("profiles"):
                # Waited for when its profile is on, dropped when it is off.
                expected["required"] = False
            assert condition == expected, (name, dependency)


def test_compose_redis_keeps_the_project_redis_policy_behind_a_password(services):
    command = services["redis"]["command"]
    assert all(flag in command for flag in REDIS_FLAGS)
    assert "--requirepass" in command
    assert "ports" not in services["redis"]
    assert "redisdata:/data" in services["redis"]["volumes"]


def test_compose_publishes_only_the_proxy_to_the_world_and_the_rest_on_loopback(services):
    assert services["proxy"]["ports"] == ["${HTTP_PORT:-80}:80", "${HTTPS_PORT:-443}:443"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    for name, service in services.items():
        if name != "proxy":
            assert all(port.startswith("127.0.0.1:") for port in service.get("ports", [])), name
    assert "ports" not in services["db"]


def test_compose_lets_only_the_proxy_reach_the_web(services):
    # So no client sets X-Forwarded-Proto or X-Real-IP itself; and the web believes
    # X-Real-IP from the proxy's address only.
    assert "ports" not in services["web"]
    proxy_address = services["proxy"]["networks"]["default"]["ipv4_address"]
    assert services["web"]["environment"]["TRUSTED_PROXIES"] == proxy_address


def test_compose_file_and_image_hold_no_secrets():
    compose = (BASE_DIR / "docker-compose.yml").read_text()
    keys = r"^\s*\w*(?:PASSWORD|SECRET_KEY|BASIC_AUTH|COOKIE)\w*: *(\S+)"
    passwords_in_urls = r"://[^\s:@/]*:([^\s@]+)@"
    for pattern in (keys, passwords_in_urls):
        for match in re.finditer(pattern, compose, re.MULTILINE):
            assert match.group(1).startswith("${"), match.group(0)
    assert ".env" in (BASE_DIR / ".dockerignore").read_text().split()


def test_production_image_installs_no_development_packages():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "pipenv install --system --deploy\n" in dockerfile


def test_compose_has_exactly_one_beat(services):
    beats = [s for s in services.values() if " beat" in str(s.get("command", ""))]
    assert len(beats) == 1
    assert "replicas" not in beats[0].get("deploy", {})


@pytest.mark.parametrize("worker", ["celery", "celery-mail"])
def test_compose_lets_a_deploy_wait_for_the_longest_task(services, worker):
    grace = services[worker]["stop_grace_period"]
    assert float(grace.removesuffix("s")) > settings.CELERY_TASK_TIME_LIMIT


def test_the_image_leaves_out_the_harness_the_benchmarks_and_the_tests():
    ignored = (BASE_DIR / ".dockerignore").read_text().split()
    assert {"harness", "bench", "conftest.py", "**/tests", "db.sqlite3*"} <= set(ignored)


def test_nothing_deployed_imports_the_harness():
    deployed = [
        path
        for package in ("storefront", "playground")
        for path in (BASE_DIR / package).rglob("*.py")
        if "tests" not in path.parts
    ]
    assert deployed
    for path in [*deployed, BASE_DIR / "flowerconfig.py", BASE_DIR / "gunicorn.conf.py"]:
        assert not re.search(r"^\s*(from|import) harness\b", path.read_text(), re.M), path


# --- What each service receives from the operator's .env ---------------------------

OPERATOR_KEYS = {
    "SECRET_KEY": "operator-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "ALLOWED_HOSTS": "shop.example.com",
    "POSTGRES_PASSWORD": "pg-password",
    "REDIS_PASSWORD": "redis-password",
    "FLOWER_BASIC_AUTH": "admin:flower-password",
    "TLS_CERTIFICATE": "/etc/ssl/shop.example.com/fullchain.pem",
    "TLS_CERTIFICATE_KEY": "/etc/ssl/shop.example.com/privkey.pem",
}
OPERATOR_MAIL = {
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
    "EMAIL_HOST_USER": "shop@example.com",
    "EMAIL_HOST_PASSWORD": "smtp-password",
    "EMAIL_USE_TLS": "true",
}
OPERATOR_ADDRESSES = {
    "DATABASE_URL": "postgres://shop:db-password@db.example.com:5432/shop",
    "CELERY_BROKER_URL": "redis://:broker-password@redis.example.com:6379/1",
    "REDIS_CACHE_URL": "redis://:cache-password@redis.example.com:6379/2",
}


def compose_up(tmp_path, dot_env, **options):
    """The services `docker compose up` would start from tmp_path with this .env."""
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in dot_env.items()))
    return resolve(COMPOSE_FILE, project_dir=tmp_path, shell={}, **options)


def environment_of(services, *names):
    return {name: services[name]["environment"] for name in names}


def test_web_and_workers_get_the_operators_mail_server_and_addresses(tmp_path):
    operator = {**OPERATOR_MAIL, **OPERATOR_ADDRESSES}
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **operator})
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert {variable: environment.get(variable) for variable in operator} == operator, name


def test_without_the_operators_addresses_web_and_workers_use_the_stacks_db_and_redis(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL})
    built_from_the_passwords = {
        "DATABASE_URL": "postgres://storefront:pg-password@db:5432/storefront",
        "CELERY_BROKER_URL": f"redis://:redis-password@redis:6379/{BROKER_DB}",
        "REDIS_CACHE_URL": f"redis://:redis-password@redis:6379/{CACHE_DB}",
    }
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert {
            variable: environment.get(variable) for variable in built_from_the_passwords
        } == built_from_the_passwords, name


def test_the_stacks_own_settings_win_over_the_operators_env(tmp_path):
    services = compose_up(
        tmp_path,
        {
            **OPERATOR_KEYS,
            **OPERATOR_MAIL,
            "DJANGO_SETTINGS_MODULE": "storefront.settings.dev",
            "FLOWER_ADDRESS": "127.0.0.1",
        },
    )
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert environment["DJANGO_SETTINGS_MODULE"] == "storefront.settings.prod", name
        assert environment["FLOWER_ADDRESS"] == "0.0.0.0", name


def test_db_and_redis_get_their_password_and_none_of_the_sites_secrets(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL})
    assert services["redis"]["environment"] == {"REDIS_PASSWORD": "redis-password"}
    assert services["db"]["environment"] == {
        "POSTGRES_DB": "storefront",
        "POSTGRES_USER": "storefront",
        "POSTGRES_PASSWORD": "pg-password",
    }


def env_example_lines():
    """Each NAME=value line of .env.example: {name: (commented out, value)}."""
    return {
        line["name"]: (bool(line["comment"]), line["value"])
        for line in re.finditer(
            r"^(?P<comment># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$",
            ENV_EXAMPLE.read_text(),
            re.MULTILINE,
        )
    }


# What the operator must fill in: the lines .env.example leaves blank.
BLANK_IN_ENV_EXAMPLE = sorted(
    name for name, (commented, value) in env_example_lines().items() if not commented and not value
)


def test_the_mail_server_is_among_what_the_operator_must_fill_in():
    assert "EMAIL_HOST" in BLANK_IN_ENV_EXAMPLE
    assert {"SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= set(BLANK_IN_ENV_EXAMPLE)


@pytest.mark.parametrize("name", BLANK_IN_ENV_EXAMPLE)
def test_compose_refuses_to_start_without_what_env_example_leaves_blank(tmp_path, name):
    filled_in = {**OPERATOR_KEYS, **OPERATOR_MAIL}
    left_blank = {**filled_in, name: ""}
    left_out = {variable: value for variable, value in filled_in.items() if variable != name}
    for dot_env in (left_blank, left_out):
        with pytest.raises(ComposeError, match=f"required variable {name} is missing a value"):
            compose_up(tmp_path, dot_env)


def test_mail_never_defaults_to_the_mail_catcher(tmp_path):
    with pytest.raises(ComposeError, match="EMAIL_HOST"):
        compose_up(tmp_path, OPERATOR_KEYS, profiles=["mailcatcher"])


def test_the_mail_catcher_runs_only_when_its_profile_is_asked_for(tmp_path):
    dot_env = {**OPERATOR_KEYS, **OPERATOR_MAIL}
    assert set(compose_up(tmp_path, dot_env)) == {*WITHOUT_PROFILES}
    assert "smtp4dev" in compose_up(tmp_path, dot_env, profiles=["mailcatcher"])
    assert "smtp4dev" in compose_up(tmp_path, {**dot_env, "COMPOSE_PROFILES": "mailcatcher"})


# --- RabbitMQ as the broker: the rabbitmq profile ----------------------------------

# What .env.example tells the operator to uncomment for RabbitMQ, a password chosen.
TO_RABBITMQ = {
    "COMPOSE_PROFILES": "rabbitmq",
    "RABBITMQ_PASSWORD": "rabbitmq-password",
    "CELERY_BROKER_URL": "amqp://storefront:${RABBITMQ_PASSWORD}@rabbitmq:5672/",
}
RABBITMQ_BROKER_URL = "amqp://storefront:rabbitmq-password@rabbitmq:5672/"
STACKS_CACHE_URL = f"redis://:redis-password@redis:6379/{CACHE_DB}"


def test_env_example_shows_how_to_switch_the_broker_to_rabbitmq():
    text = ENV_EXAMPLE.read_text()
    for name, value in {**TO_RABBITMQ, "RABBITMQ_PASSWORD": ""}.items():
        assert f"\n# {name}={value}\n" in text, name


def test_without_the_broker_profiles_no_rabbitmq_or_sentinel_runs_nor_needs_its_settings(
    tmp_path,
):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL})
    assert not {"RABBITMQ_PASSWORD", "RABBITMQ_ERLANG_COOKIE"} & set(OPERATOR_KEYS)
    assert set(services) == {*WITHOUT_PROFILES}
    for name in APP_SERVICES:
        assert not {"rabbitmq", *RABBITMQ_NODES, *SENTINELS} & set(services[name]["depends_on"])
        assert services[name]["environment"]["CELERY_BROKER_URL"].startswith("redis://"), name


def test_with_the_rabbitmq_profile_every_app_service_uses_it_once_it_is_healthy(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_RABBITMQ})
    assert set(services) == {*WITHOUT_PROFILES, "rabbitmq"}
    for name in APP_SERVICES:
        assert services[name]["environment"]["CELERY_BROKER_URL"] == RABBITMQ_BROKER_URL, name
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name


def test_with_rabbitmq_the_cache_results_and_beats_lock_stay_in_the_stacks_redis(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_RABBITMQ})
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert environment["REDIS_CACHE_URL"] == STACKS_CACHE_URL, name
        # Unset, so the settings keep results in REDIS_CACHE_URL's Redis.
        assert "CELERY_RESULT_BACKEND" not in environment, name


def test_rabbitmq_gets_its_user_and_password_and_none_of_the_sites_secrets(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_RABBITMQ})
    assert services["rabbitmq"]["environment"] == {
        "RABBITMQ_DEFAULT_USER": "storefront",
        "RABBITMQ_DEFAULT_PASS": "rabbitmq-password",
    }


def test_rabbitmq_refuses_to_start_without_its_password(tmp_path):
    # Compose cannot refuse: it reads every ${...} before it looks at profiles, and a
    # stack without RabbitMQ needs no password. The container's command does, run here
    # with a stand-in for the image's entrypoint.
    (tmp_path / "bin").mkdir()
    entrypoint = tmp_path / "bin" / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\necho "entrypoint $*"\n')
    entrypoint.chmod(0o755)

    def start_rabbitmq(dot_env):
        services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **dot_env})
        rabbitmq = services["rabbitmq"]
        path = f"{tmp_path / 'bin'}:{os.environ['PATH']}"
        return subprocess.run(
            rabbitmq["command"],
            env={**rabbitmq["environment"], "PATH": path},
            capture_output=True,
            text=True,
        )

    without_a_password = start_rabbitmq({"COMPOSE_PROFILES": "rabbitmq"})
    assert without_a_password.returncode == 1
    assert "set RABBITMQ_PASSWORD in .env" in without_a_password.stderr
    started = start_rabbitmq(TO_RABBITMQ)
    assert (started.returncode, started.stdout) == (0, "entrypoint rabbitmq-server\n")


def test_rabbitmq_publishes_its_management_ui_on_the_hosts_loopback_and_no_amqp_port(services):
    assert services["rabbitmq"]["ports"] == ["127.0.0.1:15672:15672"]
    for name, service in services.items():
        assert not any(str(port).endswith(":5672") for port in service.get("ports", [])), name


def test_rabbitmq_keeps_its_messages_on_a_volume_under_a_fixed_node_name(services):
    # RabbitMQ's data directory is named after rabbit@<hostname>.
    assert services["rabbitmq"]["hostname"] == "rabbitmq"
    assert "rabbitmqdata:/var/lib/rabbitmq" in services["rabbitmq"]["volumes"]


def run_command(service, workdir, stand_ins, **environment):
    """Run a service's command as its container would (its environment, in `workdir`),
    with stand-ins on PATH for the image's programs: each prints its name, then its
    arguments, one a line."""
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = workdir.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in stand_ins:
        program = bin_dir / name
        program.write_text('#!/bin/sh\nbasename "$0"\nprintf "%s\\n" "$@"\n')
        program.chmod(0o755)
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    path = f"{bin_dir}:{os.environ['PATH']}"
    return subprocess.run(
        argv,
        cwd=workdir,
        env={**service["environment"], "PATH": path, **environment},
        capture_output=True,
        text=True,
    )


# --- A RabbitMQ cluster: the rabbitmq-cluster profile --------------------------------

RABBITMQ_NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")
# What .env.example tells the operator to uncomment for the cluster, secrets chosen.
TO_RABBITMQ_CLUSTER = {
    "COMPOSE_PROFILES": "rabbitmq-cluster",
    "RABBITMQ_PASSWORD": "rabbitmq-password",
    "RABBITMQ_ERLANG_COOKIE": "erlang-cookie-0123456789abcdef",
    "CELERY_BROKER_URL": ";".join(
        f"amqp://storefront:${{RABBITMQ_PASSWORD}}@{node}:5672/" for node in RABBITMQ_NODES
    ),
}
CLUSTER_BROKER_URL = ";".join(
    f"amqp://storefront:rabbitmq-password@{node}:5672/" for node in RABBITMQ_NODES
)


def test_env_example_shows_how_to_run_a_rabbitmq_cluster():
    text = ENV_EXAMPLE.read_text()
    chosen = {"RABBITMQ_PASSWORD": "", "RABBITMQ_ERLANG_COOKIE": ""}
    for name, value in {**TO_RABBITMQ_CLUSTER, **chosen}.items():
        assert f"\n# {name}={value}\n" in text, name


def test_with_the_rabbitmq_cluster_profile_every_app_service_gets_every_node_once_all_are_up(
    tmp_path,
):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_RABBITMQ_CLUSTER})
    assert set(services) == {*WITHOUT_PROFILES, *RABBITMQ_NODES}
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert environment["CELERY_BROKER_URL"] == CLUSTER_BROKER_URL, name
        # The nodes kombu fails over between, as it reads the URL.
        nodes = Connection(environment["CELERY_BROKER_URL"]).alt
        assert [urlsplit(url).hostname for url in nodes] == list(RABBITMQ_NODES), name
        assert environment["REDIS_CACHE_URL"] == STACKS_CACHE_URL, name
        for node in RABBITMQ_NODES:
            assert services[name]["depends_on"][node]["condition"] == "service_healthy", name


def test_the_rabbitmq_nodes_share_the_cookie_and_password_and_none_of_the_sites_secrets(
    tmp_path, services
):
    cluster = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_RABBITMQ_CLUSTER})
    for node in RABBITMQ_NODES:
        assert cluster[node]["image"] == services["rabbitmq"]["image"], node
        assert cluster[node]["environment"] == {
            "RABBITMQ_DEFAULT_USER": "storefront",
            "RABBITMQ_DEFAULT_PASS": "rabbitmq-password",
            "ERLANG_COOKIE": "erlang-cookie-0123456789abcdef",
        }, node


def cluster_config(service):
    """The cluster settings a node reads: the file of deploy/ mounted in its conf.d."""
    mounts = [volume.split(":") for volume in service["volumes"]]
    (source,) = [source for source, target, *_ in mounts if target.startswith("/etc/rabbitmq/")]
    return (COMPOSE_FILE.parent / source).read_text()


def test_the_rabbitmq_nodes_name_each_other_as_the_tests_cluster_does(services, tmp_path):
    # Each node's host name is its service's name, which the others reach it by.
    assert [services[node]["hostname"] for node in RABBITMQ_NODES] == list(RABBITMQ_NODES)
    first = f"rabbit@{services[RABBITMQ_NODES[0]]['hostname']}"
    tests_cluster = LocalRabbitMQ(5672, tmp_path, peers=(first,))._cluster_formation()
    for node in RABBITMQ_NODES:
        lines = cluster_config(services[node]).splitlines()
        settings_lines = [line for line in lines if line and not line.startswith("#")]
        assert settings_lines == tests_cluster.splitlines(), node
        assert "cluster_formation.peer_discovery_backend = classic_config" in settings_lines
        # The first node alone: the others join it (RabbitMQ 4 waits for every node named).
        assert [line for line in settings_lines if ".classic_config.nodes." in line] == [
            f"cluster_formation.classic_config.nodes.1 = {first}"
        ]
        assert "cluster_partition_handling = pause_minority" in settings_lines


def test_the_rabbitmq_nodes_keep_their_data_on_volumes_of_their_own_and_follow_the_first(
    services,
):
    for node in RABBITMQ_NODES:
        assert f"{node}data:/var/lib/rabbitmq" in services[node]["volumes"], node
        assert services[node]["healthcheck"]["test"] == services["rabbitmq"]["healthcheck"]["test"]
    assert "depends_on" not in services["rabbitmq1"]
    first = {"rabbitmq1": {"condition": "service_healthy", "required": False}}
    assert services["rabbitmq2"]["depends_on"] == services["rabbitmq3"]["depends_on"] == first


def test_a_rabbitmq_node_writes_the_shared_cookie_and_refuses_to_start_without_it(tmp_path):
    # Compose cannot refuse (see the rabbitmq service); the node's command does, run here
    # with a stand-in for the image's entrypoint. The image's HOME is the node's data.
    home = tmp_path / "home"

    def start_node(dot_env):
        cluster = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **dot_env})
        return run_command(cluster["rabbitmq2"], home, ["docker-entrypoint.sh"], HOME=str(home))

    cookie = home / ".erlang.cookie"
    without_a_cookie = start_node({**TO_RABBITMQ_CLUSTER, "RABBITMQ_ERLANG_COOKIE": ""})
    assert without_a_cookie.returncode == 1
    assert "set RABBITMQ_ERLANG_COOKIE in .env" in without_a_cookie.stderr
    assert not cookie.exists()
    without_a_password = start_node({**TO_RABBITMQ_CLUSTER, "RABBITMQ_PASSWORD": ""})
    assert without_a_password.returncode == 1
    assert "set RABBITMQ_PASSWORD in .env" in without_a_password.stderr

    started = start_node(TO_RABBITMQ_CLUSTER)
    assert (started.returncode, started.stdout) == (0, "docker-entrypoint.sh\nrabbitmq-server\n")
    assert cookie.read_text() == "erlang-cookie-0123456789abcdef"
    # Erlang refuses a cookie file that others may read.
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600


# --- Redis behind Sentinel: the redis-sentinel profile -------------------------------

SENTINELS = ("sentinel1", "sentinel2", "sentinel3")


def sentinel_urls(db, password="${REDIS_PASSWORD}"):
    return ";".join(f"sentinel://:{password}@{sentinel}:26379/{db}" for sentinel in SENTINELS)


# What .env.example tells the operator to uncomment for Sentinel.
TO_REDIS_SENTINEL = {
    "COMPOSE_PROFILES": "redis-sentinel",
    "CELERY_BROKER_URL": sentinel_urls(BROKER_DB),
    "REDIS_CACHE_URL": sentinel_urls(CACHE_DB),
    "REDIS_SENTINEL_MASTER": "storefront",
}


def test_env_example_shows_how_to_reach_redis_through_its_sentinels():
    text = ENV_EXAMPLE.read_text()
    for name, value in TO_REDIS_SENTINEL.items():
        assert f"\n# {name}={value}\n" in text, name


def test_with_the_redis_sentinel_profile_every_app_service_asks_the_sentinels_for_redis(
    tmp_path,
):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_REDIS_SENTINEL})
    assert set(services) == {*WITHOUT_PROFILES, "redis-replica", *SENTINELS}
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        for variable, db in (("CELERY_BROKER_URL", BROKER_DB), ("REDIS_CACHE_URL", CACHE_DB)):
            assert environment[variable] == sentinel_urls(db, "redis-password"), name
            # As the project reads it: every Sentinel, the database, Redis's password.
            sentinel, database, password = sentinel_for(environment[variable])
            asked = [client.connection_pool.connection_kwargs for client in sentinel.sentinels]
            assert [(kwargs["host"], kwargs["port"]) for kwargs in asked] == [
                (sentinel, 26379) for sentinel in SENTINELS
            ]
            assert (database, password) == (db, "redis-password"), name
        assert environment["REDIS_SENTINEL_MASTER"] == "storefront", name
        # Unset, so the settings keep results in REDIS_CACHE_URL's Redis, through them.
        assert "CELERY_RESULT_BACKEND" not in environment, name
        for sentinel in SENTINELS:
            assert services[name]["depends_on"][sentinel]["condition"] == "service_healthy"


def test_the_sentinels_watch_the_stacks_redis_by_the_sets_name_with_a_quorum_of_two(tmp_path):
    renamed = {**TO_REDIS_SENTINEL, "REDIS_SENTINEL_MASTER": "shop"}
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **renamed})
    assert services["web"]["environment"]["REDIS_SENTINEL_MASTER"] == "shop"
    for name in SENTINELS:
        sentinel = services[name]
        assert sentinel["hostname"] == name
        assert sentinel["volumes"] == [f"{name}data:/data"]
        data = tmp_path / name
        started = run_command(sentinel, data, ["redis-server"], HOSTNAME=sentinel["hostname"])
        assert started.stdout.splitlines() == ["redis-server", "sentinel.conf", "--sentinel"]
        config = (data / "sentinel.conf").read_text().splitlines()
        # The stack's redis, under the name web and workers ask for; two Sentinels agree.
        assert "sentinel monitor shop redis 6379 2" in config, name
        assert "sentinel auth-pass shop redis-password" in config, name
        # The failover tests' timings (harness/localredis.py, LocalSentinel).
        assert "sentinel down-after-milliseconds shop 1000" in config, name
        assert "sentinel failover-timeout shop 5000" in config, name
        # Names, not addresses, which change when a container is recreated.
        assert f"sentinel announce-ip {name}" in config, name
        assert {"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"} <= set(
            config
        ), name
    assert "--requirepass" in services["redis"]["command"]


def test_a_sentinel_keeps_what_it_rewrote_in_its_config_across_restarts(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_REDIS_SENTINEL})
    data = tmp_path / "sentinel1"
    run_command(services["sentinel1"], data, ["redis-server"], HOSTNAME="sentinel1")
    config = data / "sentinel.conf"
    # As Sentinel leaves it after promoting the replica.
    rewritten = config.read_text().replace(" redis 6379 ", " redis-replica 6379 ")
    config.write_text(rewritten)
    restarted = run_command(services["sentinel1"], data, ["redis-server"], HOSTNAME="sentinel1")
    assert restarted.returncode == 0
    assert config.read_text() == rewritten


def test_redis_and_its_replica_keep_the_redis_policy_and_can_each_follow_the_other(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_REDIS_SENTINEL})
    assert services["redis-replica"]["image"] == services["redis"]["image"]
    assert services["redis-replica"]["volumes"] == ["redisreplicadata:/data"]
    for name in ("redis", "redis-replica"):
        argv = run_command(services[name], tmp_path / name, ["redis-server"]).stdout.split("\n")
        words = f" {' '.join(argv)} "
        # Its role is in its config file, which Sentinel rewrites; the rest, here.
        assert argv[:2] == ["redis-server", "redis.conf"], name
        assert all(f" {flag} " in words for flag in REDIS_FLAGS), name
        assert " --requirepass redis-password " in words, name
        assert " --masterauth redis-password " in words, name
        assert f" --replica-announce-ip {name} " in words, name
        assert "--replicaof" not in words, name
    assert (tmp_path / "redis" / "redis.conf").read_text() == ""
    assert (tmp_path / "redis-replica" / "redis.conf").read_text() == "replicaof redis 6379\n"


def test_the_replica_once_promoted_stays_the_primary_across_restarts(tmp_path):
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **TO_REDIS_SENTINEL})
    data = tmp_path / "redis-replica"
    data.mkdir()
    # As Sentinel leaves it after promoting the replica (REPLICAOF NO ONE, CONFIG REWRITE).
    promoted = '# Generated by CONFIG REWRITE\nreplica-announce-ip "redis-replica"\n'
    (data / "redis.conf").write_text(promoted)
    restarted = run_command(services["redis-replica"], data, ["redis-server"])
    assert restarted.returncode == 0
    assert (data / "redis.conf").read_text() == promoted


def test_with_both_profiles_the_broker_is_the_cluster_and_the_cache_is_behind_sentinels(
    tmp_path,
):
    # The cluster's lines, then the Sentinels' cache: .env fills in a ${...} only from the
    # lines above it, so each URL comes after the password it names.
    both = {
        **TO_RABBITMQ_CLUSTER,
        "COMPOSE_PROFILES": "rabbitmq-cluster,redis-sentinel",
        "REDIS_CACHE_URL": TO_REDIS_SENTINEL["REDIS_CACHE_URL"],
        "REDIS_SENTINEL_MASTER": "storefront",
    }
    services = compose_up(tmp_path, {**OPERATOR_KEYS, **OPERATOR_MAIL, **both})
    assert set(services) == {
        *WITHOUT_PROFILES, *RABBITMQ_NODES, "redis-replica", *SENTINELS,
    }  # fmt: skip
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert environment["CELERY_BROKER_URL"] == CLUSTER_BROKER_URL, name
        assert environment["REDIS_CACHE_URL"] == sentinel_urls(CACHE_DB, "redis-password"), name


def test_beats_health_check_reads_the_lock_through_the_sentinels(
    services, redis_with_sentinels, project_env
):
    test = services["celery-beat"]["healthcheck"]["test"]
    assert project_env["REDIS_CACHE_URL"].startswith("sentinel://")

    def healthy():
        check = subprocess.run([sys.executable, *test[2:]], env=project_env, cwd=BASE_DIR)
        return check.returncode == 0

    assert not healthy()
    primary = redis_with_sentinels.primary.client(CACHE_DB)
    try:
        primary.set(SingleBeatScheduler.lock_name, "a Beat")
        assert healthy()
    finally:
        primary.close()


def test_beats_health_check_reads_the_lock_from_the_caches_redis(services, redis_server, broker):
    test = services["celery-beat"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    environment = {
        **os.environ,
        "REDIS_CACHE_URL": redis_server.url(CACHE_DB),
        "CELERY_BROKER_URL": redis_server.url(BROKER_DB),
    }

    def healthy():
        return subprocess.run([sys.executable, *test[2:]], env=environment).returncode == 0

    lock = SingleBeatScheduler.lock_name
    cache = redis.Redis.from_url(redis_server.url(CACHE_DB))
    try:
        broker.set(lock, "a Beat")
        assert not healthy()
        cache.set(lock, "a Beat")
        assert healthy()
    finally:
        cache.delete(lock)
        cache.close()


# --- .env.example: every variable production reads ----------------------------------

SETTINGS_READ_IN_PRODUCTION = ("storefront/settings/common.py", "storefront/settings/prod.py")
READERS = {"env", "env_bool", "env_list", "env_redis_url"}
# Read by the settings, but not the operator's to set: .env.example says why instead.
NOT_THE_OPERATORS = {"DEBUG", "FLOWER_ADDRESS"}


@dataclass(frozen=True)
class SettingRead:
    name: str
    default: ast.expr | None
    # False when read only under a condition (NOTIFY_CUSTOMERS_MESSAGE with a crontab).
    always: bool

    @property
    def required(self):
        return self.default is None and self.always

    @property
    def written_default(self):
        """The default as .env spells it (`false`, `0.25`), or None if not a literal."""
        if not isinstance(self.default, ast.Constant):
            return None
        value = self.default.value
        return str(value).lower() if isinstance(value, bool) else str(value)


def settings_reads():
    """Every env(), env_bool() and env_list() of the production settings."""
    reads = []
    for path in SETTINGS_READ_IN_PRODUCTION:
        for statement in ast.parse((BASE_DIR / path).read_text()).body:
            always = isinstance(statement, ast.Assign | ast.AnnAssign | ast.Expr)
            for node in ast.walk(statement):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in READERS:
                    name, *default = node.args
                    assert isinstance(name, ast.Constant), ast.unparse(node)
                    reads.append(SettingRead(name.value, next(iter(default), None), always))
    return reads


def test_env_example_names_every_variable_production_reads():
    lines = env_example_lines()
    read = {setting.name for setting in settings_reads()}
    assert read - NOT_THE_OPERATORS <= set(lines), sorted(read - NOT_THE_OPERATORS - set(lines))
    for name in NOT_THE_OPERATORS:
        assert name not in lines
        assert name in ENV_EXAMPLE.read_text()


def test_env_example_names_every_variable_compose_fills_in():
    filled_in = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_]\w*)", COMPOSE_FILE.read_text()))
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= filled_in
    assert filled_in <= set(env_example_lines()), sorted(filled_in - set(env_example_lines()))


def test_env_example_comments_out_each_optional_variable_with_its_default():
    required_by_compose = set(re.findall(r"\$\{(\w+):\?", COMPOSE_FILE.read_text()))
    lines = env_example_lines()
    for setting in settings_reads():
        if setting.written_default is None or setting.name in NOT_THE_OPERATORS:
            continue
        if setting.name in required_by_compose:
            assert lines[setting.name] == (False, ""), setting.name
        else:
            assert lines[setting.name] == (True, setting.written_default), setting.name


def test_env_example_filled_in_gives_web_and_workers_all_production_requires(tmp_path):
    filled_in = re.sub(
        r"^([A-Z_]+)=$", r"\1=filled-in", ENV_EXAMPLE.read_text(), flags=re.MULTILINE
    )
    (tmp_path / ".env").write_text(filled_in)
    services = resolve(COMPOSE_FILE, project_dir=tmp_path, shell={})
    required = {setting.name for setting in settings_reads() if setting.required}
    assert {"SECRET_KEY", "DATABASE_URL", "EMAIL_HOST"} <= required
    for name, environment in environment_of(services, *APP_SERVICES).items():
        assert {variable for variable in required if environment.get(variable)} == required, name


# --- The resolver (harness/compose.py): the Compose specification's rules ------------

SET_AND_EMPTY = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$SET, ${SET}, [${UNSET}]", "value, value, []"),
        ("${SET:-d} ${EMPTY:-d} ${UNSET:-d}", "value d d"),
        ("${SET-d} [${EMPTY-d}] ${UNSET-d}", "value [] d"),
        ("${SET:+alt} [${EMPTY:+alt}] [${UNSET:+alt}]", "alt [] []"),
        ("${SET+alt} ${EMPTY+alt} [${UNSET+alt}]", "alt alt []"),
        ("${SET:?err} [${EMPTY?err}]", "value []"),
        ("${UNSET:-${SET}} ${UNSET:-${ALSO_UNSET:-inner}} ${UNSET-a/$SET}", "value inner a/value"),
        ("$$SET costs $$5, $${SET}", "$SET costs $5, ${SET}"),
        ("${SET}_suffix [$SET_suffix]", "value_suffix []"),
        ("a lone $ and $1 stay", "a lone $ and $1 stay"),
    ],
)
def test_interpolation_follows_the_compose_specification(template, expected):
    assert interpolate(template, SET_AND_EMPTY) == expected


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("${UNSET:?fill it in}", "UNSET"),
        ("${EMPTY:?fill it in}", "EMPTY"),
        ("${UNSET?fill it in}", "UNSET"),
    ],
)
def test_a_required_variable_without_a_value_stops_interpolation_naming_it(template, name):
    with pytest.raises(
        ComposeError, match=f"required variable {name} is missing a value: fill it in"
    ):
        interpolate(template, SET_AND_EMPTY)


@pytest.mark.parametrize("template", ["${SET/value/other}", "${SET", "${}"])
def test_interpolation_the_specification_does_not_define_is_refused(template):
    with pytest.raises(ComposeError, match="invalid interpolation format"):
        interpolate(template, SET_AND_EMPTY)


def test_env_file_syntax_follows_the_compose_specification():
    text = dedent(
        r"""
        # a comment, then a blank line

        PLAIN=value
        COMMENTED=value # a comment
        HASHED=value#not a comment
        export EXPORTED=exported
        SINGLE='$PLAIN # kept'
        ESCAPED_SINGLE='Let\'s go'
        DOUBLE="$PLAIN \"quoted\"\tand # kept" # a comment
        MULTILINE="first
        second"
        UNQUOTED_BACKSLASH=some\tvalue
        EMPTY=
        FROM_ABOVE=${PLAIN}/$FROM_SHELL
        FROM_SHELL
        """
    )
    assert parse_env_file(text, {"FROM_SHELL": "shell"}) == {
        "PLAIN": "value",
        "COMMENTED": "value",
        "HASHED": "value#not a comment",
        "EXPORTED": "exported",
        "SINGLE": "$PLAIN # kept",
        "ESCAPED_SINGLE": "Let's go",
        "DOUBLE": 'value "quoted"\tand # kept',
        "MULTILINE": "first\nsecond",
        "UNQUOTED_BACKSLASH": r"some\tvalue",
        "EMPTY": "",
        "FROM_ABOVE": "value/shell",
        "FROM_SHELL": "shell",
    }


def small_project(tmp_path, compose, dot_env):
    (tmp_path / "compose.yml").write_text(dedent(compose))
    (tmp_path / ".env").write_text(dedent(dot_env))
    return tmp_path / "compose.yml"


def test_environment_wins_over_env_file_and_the_shell_over_dot_env(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          app:
            image: app
            env_file: .env
            environment:
              CHOSEN_BY_THE_STACK: stack
              FILLED_IN: ${WHO}
              PASSED_THROUGH:
              ABSENT:
          listed:
            image: app
            environment:
              - FILLED_IN=${WHO:-nobody}
              - PASSED_THROUGH
        """,
        """
        WHO=dot-env
        CHOSEN_BY_THE_STACK=operator
        ONLY_IN_THE_FILE=file
        """,
    )
    services = resolve(compose, shell={"WHO": "shell", "PASSED_THROUGH": "shell"})
    assert services["app"]["environment"] == {
        "WHO": "dot-env",
        "CHOSEN_BY_THE_STACK": "stack",
        "ONLY_IN_THE_FILE": "file",
        "FILLED_IN": "shell",
        "PASSED_THROUGH": "shell",
    }
    assert services["listed"]["environment"] == {"FILLED_IN": "shell", "PASSED_THROUGH": "shell"}
    without_a_shell = resolve(compose, shell={})
    assert without_a_shell["app"]["environment"]["FILLED_IN"] == "dot-env"


def test_a_missing_env_file_stops_compose_unless_it_is_optional(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          app:
            image: app
            env_file: [{path: optional.env, required: false}, required.env]
        """,
        "",
    )
    with pytest.raises(ComposeError, match="required.env not found"):
        resolve(compose)
    (tmp_path / "required.env").write_text("A=1\n")
    assert resolve(compose)["app"]["environment"] == {"A": "1"}


def test_a_dependency_on_a_service_left_out_stops_compose_unless_it_is_not_required(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          app:
            image: app
            depends_on:
              optional: {condition: service_healthy, required: false}
              db: {condition: service_healthy}
          db:
            image: db
          optional:
            image: app
            profiles: [extra]
          needs_it:
            image: app
            profiles: [debug]
            depends_on: [optional]
        """,
        "",
    )
    assert resolve(compose)["app"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    with_extra = resolve(compose, profiles=["extra"])
    assert with_extra["app"]["depends_on"]["optional"]["condition"] == "service_healthy"
    with pytest.raises(ComposeError, match="service optional is required by needs_it"):
        resolve(compose, profiles=["debug"])
    assert resolve(compose, profiles=["debug", "extra"])["needs_it"]["depends_on"] == ["optional"]


def test_a_dependency_on_an_undefined_service_stops_compose(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          app:
            image: app
            depends_on:
              nowhere: {condition: service_started, required: false}
        """,
        "",
    )
    with pytest.raises(ComposeError, match="depends on undefined service 'nowhere'"):
        resolve(compose)


def test_compose_interpolates_services_left_out_too(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          app:
            image: app
          extra:
            image: app
            profiles: [extra]
            environment:
              PASSWORD: ${PASSWORD:?set PASSWORD}
        """,
        "",
    )
    with pytest.raises(ComposeError, match="required variable PASSWORD is missing a value"):
        resolve(compose)


def test_services_of_profiles_not_asked_for_are_left_out(tmp_path):
    compose = small_project(
        tmp_path,
        """
        services:
          always:
            image: app
          extra:
            image: app
            profiles: [extra, debug]
        """,
        "",
    )
    assert set(resolve(compose)) == {"always"}
    assert set(resolve(compose, profiles=["debug"])) == {"always", "extra"}
    assert set(resolve(compose, shell={"COMPOSE_PROFILES": "other,extra"})) == {"always", "extra"}
