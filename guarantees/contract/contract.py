"""The package's contract lane (`make test-contract`): kombu's own Redis transport tests,
unit and integration, and Celery's own integration tests of its canvas, tasks and
inspection (a worker on Redis as broker and result backend), each from the sdist of the
installed release (fetched from PyPI, never kept in the repository), run twice, each run
on a throwaway Redis of its own: with kombu's transport, and with the package's in its
place (substitute.py). A test that fails only with the package's fails the lane, unless
known-failures.txt lists it with its reason; a listed one that passes again is reported,
to be struck off. Each project's line says how often its runs took from Redis with BRPOP
(kombu's way), and with BLMOVE or the package's script (EVAL): the proof of whose
transport ran."""

import os
import subprocess
import sys
import tarfile
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from celery_guarantees.testing.servers import RedisServer, free_port

HERE = Path(__file__).resolve().parent
WORK = HERE.parent.parent / ".run" / "contract"
# Each suite of a project's sdist (pytest's arguments), with kombu's priority steps or with
# one list per queue (the project's: the package takes with BLMOVE only then; Celery's runs
# so with both transports). Celery's fixtures are a pytest plugin its conftest does not
# load whole. Celery's canvas tests first: the longest, they start first.
CELERY = ["-p", "celery.contrib.pytest"]
# Four chord tests that wait, on purpose, for a callback not to come (20 s per chord
# header): six minutes a run, with nothing of the transport's that the other chord tests
# do not exercise.
WAITING_ON_PURPOSE = [
    f"--deselect=t/integration/test_canvas.py::test_chord::{name}"
    for name in [
        "test_disabling_flag_allow_error_cb_on_chord_header",
        "test_enabling_flag_allow_error_cb_on_chord_header",
        "test_flag_allow_error_cb_on_chord_header_on_upgraded_chord",
        "test_error_propagates_from_chord",
    ]
]
# Each with the minutes it may take, about twice its time here: past them it is stopped
# and reported as hung (a test's own time limit does not stop a read blocked in a socket).
RUNS = [
    ("celery", [*CELERY, *WAITING_ON_PURPOSE, "t/integration/test_canvas.py"], "0", 20),
    ("celery", [*CELERY, "t/integration/test_tasks.py", "t/integration/test_inspect.py"], "0", 10),
    ("kombu", ["t/unit/transport/test_redis.py"], "", 3),
    ("kombu", ["t/unit/transport/test_redis.py"], "0", 3),
    ("kombu", ["t/integration/test_redis.py"], "0", 5),
    ("kombu", ["t/integration/test_redis_brpop_qos.py"], "0", 3),
]
# How many runs at once, each on a Redis of its own: Celery's mostly wait on timeouts.
AT_ONCE = 4
# A run's failing tests, and its counts by (project, tests or one of TAKES).
Outcome = tuple[set[str], Counter[tuple[str, str]]]
# What a project's suites import that the project does not install (Celery's integration
# tasks: pydantic), by the sdist's own requirements file: into its folder, not the project's
# environment.
REQUIREMENTS = {"celery": "requirements/extras/pydantic.txt"}
# Seconds a test may take: twice the longest of those that run (Celery's test_retry).
TIMEOUT = 60
# The Redis commands that take a message: kombu's, and the package's.
TAKES = ("BRPOP", "BLMOVE", "EVAL")


def sdist(project: str) -> Path:
    """The extracted sdist of the installed version of `project`, with what its tests
    need of REQUIREMENTS in its folder `site`."""
    release = f"{project}-{version(project)}"
    folder = WORK / release
    if not folder.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "--dest", str(WORK), f"{project}=={version(project)}"],
            check=True,
        )  # fmt: skip
        with tarfile.open(WORK / f"{release}.tar.gz") as archive:
            # Only what a source archive holds (Python 3.11.4 and later check it).
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(WORK, **safe)
    if project in REQUIREMENTS and not (folder / "site").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder / "site"),
             "-r", str(folder / REQUIREMENTS[project])],
            check=True,
        )  # fmt: skip
    return folder


def pytest_argv(arguments: list[str]) -> list[str]:
    """pytest with `arguments`, run in an sdist's folder: by the configuration it finds
    there, the sdist's own, less its added options, and without this project's plugins.
    A test still running after TIMEOUT seconds fails (pytest-timeout)."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-p", "no:django", "--rootdir", ".", "-o", "addopts=", "-o", f"timeout={TIMEOUT}",
            *arguments]  # fmt: skip


def run(number: int, transport: str) -> Outcome:
    """The ids of the tests of the run RUNS[number] that fail with `transport` (kombu or
    package), each after its project and followed by the run's priority steps; and how
    many tests ran and how many times each of TAKES was called, by project. In a process
    of its own (kombu's unit tests replace its poller for good), on a Redis of its own
    (kombu's integration tests read what earlier runs left)."""
    project, suite, steps, minutes = RUNS[number]
    folder = sdist(project)
    report = WORK / f"{transport}-{number}.xml"
    redis = RedisServer(free_port(), WORK / f"redis-{transport}-{number}").start()
    report.unlink(missing_ok=True)
    try:
        finished = ended_within(
            minutes,
            pytest_argv(["-o", "junit_family=xunit1", "--junit-xml", str(report),
                         "-p", "substitute", *suite]),
            cwd=folder,
            env={"PATH": str(Path(sys.executable).parent),
                 "PYTHONPATH": os.pathsep.join([str(HERE), str(folder / "site")]),
                 "CONTRACT_TRANSPORT": transport, "CONTRACT_PRIORITY_STEPS": steps,
                 "REDIS_HOST": "127.0.0.1", "REDIS_6379_TCP": str(redis.port),
                 # Celery's tests read its result backend with a client of their own, of
                 # the first database: the broker's too, as Celery's tox.ini sets them.
                 "REDIS_PORT": str(redis.port), "TEST_BROKER": redis.url(),
                 "TEST_BACKEND": redis.url()},
        )  # fmt: skip
        stats = redis.client().info("commandstats")
    finally:
        redis.stop()
    if finished:
        ran, failing = outcomes(report)
    else:
        ran, failing = 0, {f"{' '.join(suite)}: hung, stopped after {minutes} min"}
    counts = Counter({(project, "tests"): ran})
    for command in TAKES:
        counts[project, command] = stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0)
    return {f"{project} {test} (priority steps: {steps or 'kombu'})" for test in failing}, counts


def ended_within(minutes: int, argv: list[str], **options: Any) -> bool:
    """Whether the process of `argv` ended within `minutes` (else it is killed)."""
    try:
        subprocess.run(
            argv, check=False, stdout=subprocess.DEVNULL, timeout=minutes * 60, **options
        )
    except subprocess.TimeoutExpired:
        return False
    return True


def failures(transport: str, pool: ThreadPoolExecutor) -> list[Future[Outcome]]:
    """Every run of RUNS with `transport`, started in `pool`: their outcomes, to come."""
    return [pool.submit(run, number, transport) for number in range(len(RUNS))]


def merged(outcomes: list[Future[Outcome]]) -> Outcome:
    failed: set[str] = set()
    counts: Counter[tuple[str, str]] = Counter()
    for outcome in outcomes:
        its_failed, its_counts = outcome.result()
        failed |= its_failed
        counts += its_counts
    return failed, counts


def outcomes(junit: Path) -> tuple[int, set[str]]:
    """How many tests a JUnit report has, and the ids (path::Class::name) of those that
    failed (xunit1: each case names its file)."""
    cases = list(ElementTree.parse(junit).iter("testcase"))
    failed = set()
    for case in cases:
        if case.find("failure") is None and case.find("error") is None:
            continue
        file = case.get("file", "")
        within = case.get("classname", "").removeprefix(file[:-3].replace("/", "."))
        classes = within.lstrip(".").split(".") if within else []
        failed.add("::".join([file, *classes, case.get("name", "")]))
    return len(cases), failed


def takes(counts: Counter[tuple[str, str]], project: str) -> str:
    return "/".join(str(counts[project, command]) for command in TAKES)


def known() -> dict[str, str]:
    lines = (HERE / "known-failures.txt").read_text().splitlines()
    return dict(line.split("  ", 1) for line in lines if line and not line.startswith("#"))


def main() -> int:
    for project in {project for project, *_ in RUNS}:
        sdist(project)  # fetched once, before the runs share it
    with ThreadPoolExecutor(AT_ONCE) as pool:
        started = [failures(transport, pool) for transport in ("kombu", "package")]
        (stock, stock_counts), (ours, our_counts) = (merged(each) for each in started)
    only_ours = ours - stock
    for project in dict.fromkeys(project for project, *_ in RUNS):
        its = {test for test in stock | ours if test.startswith(f"{project} ")}
        print(
            f"{project} {version(project)}: {stock_counts[project, 'tests']} tests,"
            f" {len(stock & its)} failing with kombu's transport, {len(ours & its)} with the"
            f" package's, {len(only_ours & its)} of them only with the package's;"
            f" {'/'.join(TAKES)} {takes(stock_counts, project)} with kombu's,"
            f" {takes(our_counts, project)} with the package's"
        )
    listed = known()
    for test in sorted(set(listed) - only_ours):
        print(f"passes again, strike it off known-failures.txt: {test}")
    unexplained = sorted(only_ours - set(listed))
    for test in unexplained:
        print(f"fails only with the package's transport: {test}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
