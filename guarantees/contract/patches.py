"""The upstream patches (guarantees/patches/), checked against the sdist of the installed
kombu or Celery, each on a copy of its own: its tests alone must fail (they test the
change, not what was there), and with its change they must pass, with every other test
of the files it touches. Each file runs in a process of its own (kombu's unit tests
replace its poller for good), integration tests on a throwaway Redis. Part of the
contract lane (`make test-contract`).

A patch is named `<project>-<version>-<what>.patch` (git format-patch, against that
release's tree); made for another version than the one installed, it is reported, to be
made again, and fails the lane. A patch that builds on others names each in its message,
in the order they apply, on a line `Applies-on: <file name>` (a git trailer): they are
applied whole before it, in both of its checks."""

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from celery_guarantees.testing.servers import RedisServer, free_port
from contract import WORK, pytest_argv, sdist

PATCHES = Path(__file__).resolve().parent.parent / "patches"
NAME = re.compile(r"^(?P<project>[a-z]+)-(?P<version>\d+\.\d+\.\d+)-")
APPLIES_ON = re.compile(r"^Applies-on: (\S+\.patch)$", re.MULTILINE)


def built_on(patch: Path) -> list[Path]:
    """The patches `patch` applies on, theirs first, in the order they apply."""
    under: list[Path] = []
    for name in APPLIES_ON.findall(patch.read_text().split("\n---\n", 1)[0]):
        for earlier in [*built_on(PATCHES / name), PATCHES / name]:
            if earlier not in under:
                under.append(earlier)
    return under


def touched(patch: Path) -> list[str]:
    """The files the patch changes."""
    listing = subprocess.run(
        ["git", "apply", "--numstat", str(patch)], check=True, capture_output=True, text=True
    ).stdout
    return [line.split("\t")[2] for line in listing.splitlines()]


def apply(patch: Path, tree: Path, *only: str) -> None:
    argv = ["git", "apply", *(f"--include={path}" for path in only), str(patch.resolve())]
    # The tree is inside this project's repository, where git would apply the patch to
    # the repository's paths (skipping all of it, from a folder): not above the tree.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tree.parent)}
    subprocess.run(argv, cwd=tree, env=env, check=True)


def beneath(patch: Path, tree: Path) -> Path:
    """`tree` with the patches `patch` applies on applied, whole."""
    for earlier in built_on(patch):
        apply(earlier, tree)
    return tree


def sdist_copy(project: str, tree: Path) -> Path:
    """`tree`, made a fresh copy of the sdist of the installed `project`."""
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(sdist(project), tree)
    return tree


def tests_pass(tree: Path, tests: list[str], redis: RedisServer) -> bool:
    """Whether every one of these test files passes, each in a process of its own, kombu's
    integration tests finding `redis` as they find Redis."""
    env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_6379_TCP": str(redis.port)}
    return all(
        subprocess.run(pytest_argv([test]), cwd=tree, env=env, capture_output=True).returncode == 0
        for test in tests
    )


def check(patch: Path, redis: RedisServer) -> str | None:
    """What is wrong with `patch`, or None."""
    name = NAME.match(patch.name)
    if name is None:
        return "not named <project>-<version>-<what>.patch"
    project, made_for = name["project"], name["version"]
    if version(project) != made_for:
        return f"made for {project} {made_for}, {version(project)} is installed: make it again"
    tests = [path for path in touched(patch) if path.startswith("t/")]
    if not tests:
        return "it has no test"
    if missing := [earlier.name for earlier in built_on(patch) if not earlier.exists()]:
        return f"it applies on {', '.join(missing)}, which is not in {PATCHES.name}/"
    tree = WORK / "patched" / patch.stem
    apply(patch, beneath(patch, sdist_copy(project, tree)), *tests)
    if tests_pass(tree, tests, redis):
        return "its tests pass without its change: they do not test it"
    apply(patch, beneath(patch, sdist_copy(project, tree)))
    if not tests_pass(tree, tests, redis):
        return f"with its change, tests of {', '.join(tests)} fail"
    return None


def main(names: list[str]) -> int:
    """Check the patches named (file names in patches/), or every one."""
    patches = [PATCHES / name for name in names] or sorted(PATCHES.glob("*.patch"))
    redis = RedisServer(free_port(), WORK / "redis-patches").start()
    try:
        problems = {patch.name: check(patch, redis) for patch in patches}
    finally:
        redis.stop()
    for name, problem in problems.items():
        print(f"{name}: {problem or 'applies, its tests fail without it and pass with it'}")
    return 1 if any(problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
