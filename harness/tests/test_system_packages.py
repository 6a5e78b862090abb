"""harness/system-packages: what `make run`, `make test` and `make bench` install first."""

import os
import subprocess

import pytest

from harness.processes import BASE_DIR

SCRIPT = BASE_DIR / "harness" / "system-packages"
NOBODY = 65534
pytestmark = pytest.mark.slow  # it runs a shell


def run(*pairs, uid=None, python=None):
    """Run the script (read from standard input: any user can) as root or as `uid`, with
    `python` as the Makefile's PYTHON."""
    argv = ["sh", "-s", "--", *pairs]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    return subprocess.run(
        argv,
        input=SCRIPT.read_text(),
        capture_output=True,
        text=True,
        env={"PATH": os.defpath, **({"PYTHON": python} if python else {})},
    )


def test_it_does_nothing_when_every_command_is_there():
    done = run("sh:dash", "cat:coreutils")

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_root_it_stops_printing_the_one_line_that_installs_every_missing_package():
    done = run(
        "sh:dash", "no-such-command:no-such-package", "other-command:other-package", uid=NOBODY
    )

    assert done.returncode == 1
    assert done.stderr == (
        "storefront needs the Debian package(s) no-such-package other-package."
        " Install them, then run make again:\n"
        "  sudo apt-get update && sudo apt-get install -y no-such-package other-package\n"
    )


def test_a_python_module_debian_packages_apart_is_checked_with_the_makefiles_python():
    present = run("py:json:python3-json", python="python3")
    absent = run("py:no_such_module:python3-venv", python="python3", uid=NOBODY)

    assert (present.returncode, present.stderr) == (0, "")
    assert absent.returncode == 1
    assert "sudo apt-get install -y python3-venv\n" in absent.stderr
