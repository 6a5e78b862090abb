"""make upgrade-celery moves the two pins of celery and kombu together (the run itself,
which re-locks and runs the contract lane, is shown in docs/testing.md)."""

import sys

import pytest

from harness.upgrade_celery import (
    PIPFILE,
    PYPROJECT,
    main,
    pinned_minor,
    repinned_pipfile,
    repinned_pyproject,
)


def test_the_pipfile_and_the_package_pin_the_same_minor_version():
    minor = pinned_minor(PIPFILE.read_text())
    major, number = minor.split(".")
    pyproject = PYPROJECT.read_text()
    assert f'"celery[redis]>={minor}.0,<{major}.{int(number) + 1}"' in pyproject
    assert f'"kombu>={minor}.0,<{major}.{int(number) + 1}"' in pyproject


def test_both_pins_move_to_the_new_minor_version_and_nothing_else_changes():
    pipfile, pyproject = PIPFILE.read_text(), PYPROJECT.read_text()
    moved = repinned_pipfile(pipfile, "5.12")
    assert pinned_minor(moved) == "5.12"
    assert 'kombu = "~=5.12.0"' in moved
    assert changed_lines(pipfile, moved) == 2

    moved = repinned_pyproject(pyproject, "5.12")
    assert '"celery[redis]>=5.12.0,<5.13"' in moved
    assert '"kombu>=5.12.0,<5.13"' in moved
    assert changed_lines(pyproject, moved) == 2


def test_a_pin_of_another_shape_is_refused_not_left_behind():
    with pytest.raises(ValueError, match="pins kombu"):
        repinned_pipfile('celery = "~=5.7.0"\nkombu = "*"\n', "5.8")


def test_a_version_that_is_no_minor_version_stops_it_in_one_sentence(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["upgrade_celery", "5.8.1"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert (
        str(stopped.value) == "upgrade-celery: TO must be a minor version such as 5.8, not '5.8.1'."
    )


def changed_lines(before, after):
    return sum(old != new for old, new in zip(before.splitlines(), after.splitlines(), strict=True))
