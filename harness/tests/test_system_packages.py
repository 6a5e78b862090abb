"""harness/system-packages: what `make run`, `make test` and `make bench` install first."""

import os
import subprocess

import pytest

from harness.processes import BASE_DIR

SCRIPT = BASE_DIR / "harness" / "system-packages"
NOBODY = 65534
pytestmark = pytest.mark.slow  # it runs a shell


def run(*pairs, uid=None):
    """Run the script (read from standard input: any user can) as root or as `uid`."""
    argv = ["sh", "-s", "--", *pairs]
    if uid is not None:
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    return subprocess.run(
        argv, input=SCRIPT.read_text(), capture_output=True, text=True, env={"PATH": os.defpath}
    )


def test_it_does_nothing_when_every_command_is_there():
    done = run("sh:dash", "cat:coreutils")

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_root_it_stops_with_one_sentence_naming_the_package_and_the_command():
    done = run("sh:dash", "no-such-command:no-such-package", uid=NOBODY)

    assert done.returncode == 1
    assert done.stderr == (
        "storefront needs the system package(s) no-such-package: install them as root"
        " (apt-get update && apt-get install -y no-such-package) and run make again.\n"
    )
