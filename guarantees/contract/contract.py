"""The package's contract lane (`make test-contract`): kombu's own Redis transport tests,
unit and integration, from the sdist of the installed kombu (fetched from PyPI, never kept
in the repository), run twice on a throwaway Redis: with kombu's transport, and with the
package's in its place (substitute.py). A test that fails only with the package's fails
the lane, unless known-failures.txt lists it with its reason; a listed one that passes
again is reported, to be struck off."""

import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

from harness.localredis import LocalRedis
from harness.processes import free_port

HERE = Path(__file__).resolve().parent
WORK = HERE.parent.parent / ".run" / "contract"
# Each suite, with kombu's priority steps or with one list per queue (the project's:
# the package takes with BLMOVE only then).
RUNS = [
    ("t/unit/transport/test_redis.py", ""),
    ("t/unit/transport/test_redis.py", "0"),
    ("t/integration/test_redis.py", "0"),
    ("t/integration/test_redis_brpop_qos.py", "0"),
]


def sdist(project: str) -> Path:
    """The extracted sdist of the installed version of `project`."""
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
    return folder


def failures(folder: Path, redis: LocalRedis, transport: str) -> set[str]:
    """The ids of the tests of RUNS that fail with `transport` (kombu or package), each
    id followed by the run's priority steps. Each run in a process of its own (kombu's unit
    tests replace its poller for good), on an empty Redis (its integration tests read
    what earlier runs left)."""
    failed = set()
    for number, (suite, steps) in enumerate(RUNS):
        redis.client().flushall()
        report = WORK / f"{transport}-{number}.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
             "-p", "no:django", "-c", "setup.cfg", "--rootdir", ".", "-o", "addopts=",
             "-o", "junit_family=xunit1", "--junit-xml", str(report), "-p", "substitute",
             suite],
            cwd=folder, check=False,
            env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(HERE),
                 "CONTRACT_TRANSPORT": transport, "CONTRACT_PRIORITY_STEPS": steps,
                 "REDIS_HOST": "127.0.0.1", "REDIS_6379_TCP": str(redis.port)},
        )  # fmt: skip
        failed |= {f"{test} (priority steps: {steps or 'kombu'})" for test in failed_ids(report)}
    return failed


def failed_ids(junit: Path) -> set[str]:
    """The ids (path::Class::name) of the failed tests of a JUnit report (xunit1: each
    case names its file)."""
    failed = set()
    for case in ElementTree.parse(junit).iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        file = case.get("file", "")
        within = case.get("classname", "").removeprefix(file[:-3].replace("/", "."))
        classes = within.lstrip(".").split(".") if within else []
        failed.add("::".join([file, *classes, case.get("name", "")]))
    return failed


def known() -> dict[str, str]:
    lines = (HERE / "known-failures.txt").read_text().splitlines()
    return dict(line.split("  ", 1) for line in lines if line and not line.startswith("#"))


def main() -> int:
    folder = sdist("kombu")
    redis = LocalRedis(free_port(), WORK / "redis").start()
    try:
        stock = failures(folder, redis, "kombu")
        ours = failures(folder, redis, "package")
    finally:
        redis.stop()
    only_ours = ours - stock
    listed = known()
    print(
        f"kombu {version('kombu')}: {len(stock)} failing with kombu's transport,"
        f" {len(ours)} with the package's, {len(only_ours)} of them only with the package's"
    )
    for test in sorted(set(listed) - only_ours):
        print(f"passes again, strike it off known-failures.txt: {test}")
    unexplained = sorted(only_ours - set(listed))
    for test in unexplained:
        print(f"fails only with the package's transport: {test}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
