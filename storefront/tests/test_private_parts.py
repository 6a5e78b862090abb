"""Only the package in guarantees/ reaches into kombu's and Celery's private parts: the
private names it uses appear nowhere else in the project, and nothing else imports a
private module of theirs."""

import ast
import subprocess

from harness.processes import BASE_DIR

PACKAGE = "guarantees/"
LIBRARIES = ("kombu", "celery", "billiard")


def python_files():
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=BASE_DIR, capture_output=True, text=True, check=True
    )
    return [BASE_DIR / name for name in listed.stdout.split()]


def private_attributes(path, on_self=True):
    """Each `x._name` in the file (`self._name` too, unless not `on_self`), with its line."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and (on_self or not (isinstance(node.value, ast.Name) and node.value.id == "self"))
        ):
            yield node.attr, node.lineno


def private_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            names = [alias.name for alias in node.names]
            if parts[0] in LIBRARIES and any(p.startswith("_") for p in parts[1:] + names):
                yield node.module, node.lineno


def test_the_private_names_the_package_uses_appear_nowhere_else():
    files = python_files()
    package = [path for path in files if path.relative_to(BASE_DIR).as_posix().startswith(PACKAGE)]
    # Those of kombu's and Celery's the package's own code reaches for (its tests included).
    reached = {name for path in package for name, _ in private_attributes(path)}
    assert {"_queue_cycle", "_deliver", "_process_task"} <= reached  # the scan sees them

    elsewhere = [
        f"{path.relative_to(BASE_DIR)}:{line}: .{name}"
        for path in files
        if path not in package
        # (the project's own classes' private parts are its own)
        for name, line in private_attributes(path, on_self=False)
        if name in reached
    ]
    assert elsewhere == []


def test_nothing_outside_the_package_imports_a_private_module_of_kombu_or_celery():
    found = [
        f"{path.relative_to(BASE_DIR)}:{line}: {module}"
        for path in python_files()
        if not path.relative_to(BASE_DIR).as_posix().startswith(PACKAGE)
        for module, line in private_imports(path)
    ]
    assert found == []
