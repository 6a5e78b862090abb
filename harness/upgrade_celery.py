"""`make upgrade-celery [TO=5.8]`: celery and kombu to another minor version (the newest
on PyPI unless told), then the package's contract lane, which says what broke.

celery and kombu are pinned to the minor version that the package in guarantees/ is
proven on (its contract lane: kombu's and Celery's own tests against its transport), in
two places that must agree: the project's Pipfile and the package's pyproject.toml. This
moves both pins, re-locks celery and kombu only (`pipenv upgrade --lock-only`: every
other locked version stays, but for what they need) and runs `make test-contract`, which
installs the lock first. The files
stay changed either way: commit them after `make test` passes, or mend the package where
the lane says it broke (`git checkout Pipfile Pipfile.lock guarantees/pyproject.toml`
goes back)."""

import re
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PIPFILE = BASE_DIR / "Pipfile"
PYPROJECT = BASE_DIR / "guarantees" / "pyproject.toml"
PROJECTS = ("celery", "kombu")
# celery and kombu release their minor versions together (celery 5.7 needs kombu 5.7).
MINOR = re.compile(r"^(\d+)\.(\d+)$")


def pinned_minor(pipfile: str) -> str:
    """The minor version celery is pinned to in the Pipfile's text (`~=5.7.0`: 5.7)."""
    found = re.search(r'^celery = .*"~=(\d+\.\d+)\.0"', pipfile, re.MULTILINE)
    if found is None:
        raise ValueError('the Pipfile pins celery with no "~=X.Y.0"')
    return found.group(1)


def repinned_pipfile(pipfile: str, minor: str) -> str:
    """The Pipfile's text with celery and kombu pinned to `minor` (`~=X.Y.0`)."""
    for project in PROJECTS:
        pattern = rf'^({project} = .*"~=)\d+\.\d+\.0(")'
        pipfile, count = re.subn(pattern, rf"\g<1>{minor}.0\g<2>", pipfile, flags=re.MULTILINE)
        if count != 1:
            raise ValueError(f'the Pipfile pins {project} with no "~=X.Y.0"')
    return pipfile


def repinned_pyproject(pyproject: str, minor: str) -> str:
    """The package's pyproject.toml with celery and kombu allowed in `minor` only."""
    major, number = MINOR.match(minor).groups()  # type: ignore[union-attr]
    for project in PROJECTS:
        pattern = rf'("{project}(?:\[[a-z]+\])?)>=\d+\.\d+\.0,<\d+\.\d+(")'
        allowed = rf"\g<1>>={minor}.0,<{major}.{int(number) + 1}\g<2>"
        pyproject, count = re.subn(pattern, allowed, pyproject)
        if count != 1:
            raise ValueError(
                f'the package\'s pyproject.toml allows {project} with no ">=X.Y.0,<X.Z"'
            )
    return pyproject


def minors_released(project: str) -> list[str]:
    """The minor versions of `project` with a final release on the package index, newest first."""
    listing = pip("index", "versions", project)
    versions = listing.split("Available versions:", 1)[1].split(",")
    minors = []
    for each in versions:
        parts = each.strip().split(".")
        if len(parts) >= 2 and all(part.isdigit() for part in parts):
            minor = ".".join(parts[:2])
            if minor not in minors:
                minors.append(minor)
    return minors


def pip(*args: str) -> str:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def main() -> int:
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    if wanted and not MINOR.match(wanted):
        sys.exit(f"upgrade-celery: TO must be a minor version such as 5.8, not {wanted!r}.")
    released = {project: minors_released(project) for project in PROJECTS}
    minor = wanted or released["celery"][0]
    missing = [project for project in PROJECTS if minor not in released[project]]
    if missing:
        sys.exit(
            f"upgrade-celery: {' and '.join(missing)} {minor} has no release on the package index."
        )
    current = pinned_minor(PIPFILE.read_text())
    print(
        f"celery and kombu: {current} to {minor}"
        if minor != current
        else f"celery and kombu stay on {minor}"
    )
    PIPFILE.write_text(repinned_pipfile(PIPFILE.read_text(), minor))
    PYPROJECT.write_text(repinned_pyproject(PYPROJECT.read_text(), minor))
    pipenv = str(BASE_DIR / ".tools" / "bin" / "pipenv")
    subprocess.run([pipenv, "upgrade", *PROJECTS, "--lock-only"], cwd=BASE_DIR, check=True)
    # (The lane's `make install` installs the new lock.)
    lane = subprocess.run(["make", "--no-print-directory", "test-contract"], cwd=BASE_DIR)
    if lane.returncode:
        print(f"upgrade-celery: the package's contract breaks on {minor} (above: what)."
              " Pipfile, Pipfile.lock and guarantees/pyproject.toml are changed: mend the"
              " package, or `git checkout` them and `make install` to go back.")  # fmt: skip
        return 1
    print(f"upgrade-celery: the package's contract holds on {minor}. Run `make test`, then"
          " commit Pipfile, Pipfile.lock and guarantees/pyproject.toml (and the package's"
          " README's *Versions*).")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
