"""The README's code map and the configuration table stay true: a path the map names
that does not exist, a file of the project the map leaves out, or a variable the
project reads that the table leaves out fails here."""

import re
import subprocess
from pathlib import Path

from harness.processes import BASE_DIR

CONFIGURATION = BASE_DIR / "docs" / "configuration.md"
# Django's and Python's own files, which need no line of the map.
BOILERPLATE = {"__init__.py", "apps.py"}
# Folders whose row names each of their files (a folder named alone covers its files).
NAMED_FILE_BY_FILE = {"harness/"}
# What reads the environment when the project runs (not the harness, tests or bench).
DEPLOYED = ["storefront", "playground", "flowerconfig.py", "gunicorn.conf.py", "manage.py"]
READS = re.compile(
    r"""(?:\benv(?:_bool|_list|_redis_url)?\(|broker_transport\(|environ\.get\(|environ\[|getenv\()"""
    r""""([A-Z][A-Z0-9_]+)\""""
)


def code_map():
    """The rows of the README's *Where the code is*."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("## Where the code is", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def first_cell_paths(row):
    """The paths of a row's first cell: the first from the project's root, the others
    from there or beside the first (`playground/views.py`, `urls.py`)."""
    first, *others = re.findall(r"`([^`]+)`", row.split(" | ")[0])
    beside = (BASE_DIR / first).parent
    return [BASE_DIR / first] + [
        BASE_DIR / name if (BASE_DIR / name).exists() else beside / name for name in others
    ]


def project_files():
    listed = subprocess.run(
        ["git", "ls-files", "storefront", "playground", "harness", "guarantees"],
        cwd=BASE_DIR, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [
        path
        for path in listed
        if "/tests/" not in path and "/migrations/" not in path
        and Path(path).name not in BOILERPLATE
    ]  # fmt: skip


def test_every_path_the_code_map_names_exists():
    missing = [path for row in code_map() for path in first_cell_paths(row) if not path.exists()]
    assert missing == []


def test_every_file_of_the_project_is_in_the_code_map():
    named = {name for row in code_map() for name in re.findall(r"`([^`]+)`", row)}
    names = {Path(name).name for name in named}
    folders = {name for name in named if name.endswith("/")} - NAMED_FILE_BY_FILE

    def in_the_map(path):
        return Path(path).name in names or any(path.startswith(folder) for folder in folders)

    assert [path for path in project_files() if not in_the_map(path)] == []


def test_every_variable_the_project_reads_is_in_the_configuration_table():
    sources = []
    for name in DEPLOYED:
        path = BASE_DIR / name
        files = path.rglob("*.py") if path.is_dir() else [path]
        sources += [file for file in files if "tests" not in file.parts]
    read = {variable for file in sources for variable in READS.findall(file.read_text())}
    first_cells = re.findall(r"^\| ([^|]+) \|", CONFIGURATION.read_text(), re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}

    assert len(read) > 30  # the pattern still finds how the settings read the environment
    assert read - documented == set()
