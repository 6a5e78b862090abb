"""What `docker compose up` would give each service, read from the compose file the way
the Compose specification defines, for tests where no Docker engine runs.

Compose fills in `${...}` from the shell's environment, then from the project's .env
file; a container's environment is its env_file entries overridden by its
`environment:` entries; a service with profiles runs only when one of them is asked
for (`--profile`, or COMPOSE_PROFILES), and a dependency on one left out is an error
unless marked `required: false`, which drops it. Compose interpolates the whole file
before it looks at profiles: a `${VAR:?...}` stops it even in a service left out.
Values compose would refuse raise ComposeError with the sentence it names the problem
in."""

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
# What may follow the name in ${...}; the ":" forms count an empty value as none.
OPERATORS = (":-", ":?", ":+", "-", "?", "+")
# What a backslash means inside a double-quoted .env value; any other stays as written.
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


class ComposeError(ValueError):
    """docker compose would refuse the project, for this reason."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """`text` with $VAR, ${VAR} and ${VAR<operator>argument} filled in from `variables`;
    `$$` is a literal `$`."""
    out: list[str] = []
    position = 0
    while (dollar := text.find("$", position)) >= 0:
        out.append(text[position:dollar])
        after = dollar + 1
        if text.startswith("$", after):
            out.append("$")
            position = after + 1
        elif text.startswith("{", after):
            end = _closing_brace(text, after)
            out.append(_substitute(text[after + 1 : end], variables, text))
            position = end + 1
        elif name := NAME.match(text, after):
            out.append(variables.get(name.group(), ""))
            position = name.end()
        else:
            # Neither a name nor a brace follows: the spec keeps the `$` as written.
            out.append("$")
            position = after
    out.append(text[position:])
    return "".join(out)


def _closing_brace(text: str, opening: int) -> int:
    """Where the `${` whose brace is at `opening` ends, counting nested `${...}`."""
    depth, position = 1, opening + 1
    while position < len(text):
        if text.startswith("$$", position):
            position += 2
            continue
        if text.startswith("${", position):
            depth += 1
            position += 2
            continue
        if text[position] == "}":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    raise ComposeError(f"invalid interpolation format: unclosed ${{ in {text!r}")


def _substitute(expression: str, variables: Mapping[str, str], text: str) -> str:
    name = NAME.match(expression)
    if name is None:
        raise ComposeError(f"invalid interpolation format in {text!r}")
    variable, rest = name.group(), expression[name.end() :]
    if not rest:
        return variables.get(variable, "")
    operator = next((op for op in OPERATORS if rest.startswith(op)), None)
    if operator is None:
        # ${VAR/foo/bar} and the shell's other forms: Compose has none of them.
        raise ComposeError(f"invalid interpolation format in {text!r}")
    argument = rest[len(operator) :]
    # The ":" forms treat an empty value as no value.
    has_value = variable in variables and (variables[variable] != "" or ":" not in operator)
    # The argument is read only when it is used, as in the shell: a default's own
    # `${...:?}` stops nothing once the variable has a value.
    if operator.endswith("-"):
        return variables[variable] if has_value else interpolate(argument, variables)
    if operator.endswith("+"):
        return interpolate(argument, variables) if has_value else ""
    if not has_value:
        message = interpolate(argument, variables)
        raise ComposeError(f"required variable {variable} is missing a value: {message}")
    return variables[variable]


def parse_env_file(text: str, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of an environment file in the spec's syntax: KEY=VALUE lines, `#`
    comments (inline after whitespace, or after a closing quote), optional `export`,
    single quotes literal, double quotes with escapes and possibly several lines.
    Unquoted and double-quoted values are interpolated from `variables`, then from the
    lines above; a KEY alone takes its value from `variables`."""
    variables = variables or {}
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, assigned, raw = line.partition("=")
        key = re.sub(r"^export\s+", "", key.strip())
        if not NAME.fullmatch(key):
            raise ComposeError(f"invalid variable name {key!r} in an environment file")
        if not assigned:
            if key in variables:
                values[key] = variables[key]
            continue
        known = {**values, **variables}
        if raw.lstrip()[:1] in ("'", '"'):
            values[key] = _quoted(key, raw.lstrip(), lines, known)
        else:
            # A `#` starts a comment only after whitespace: `a#b` is a value.
            values[key] = interpolate(re.split(r"\s#", raw, maxsplit=1)[0].strip(), known)
    return values


def _quoted(key: str, raw: str, lines: Iterator[str], variables: Mapping[str, str]) -> str:
    quote, body = raw[0], raw[1:]
    while (end := _closing_quote(body, quote)) < 0:
        body = _next_line(key, body, lines)
    after = body[end + 1 :].strip()
    if after and not after.startswith("#"):
        raise ComposeError(f"unexpected {after!r} after the quoted value of {key}")
    value = body[:end]
    if quote == "'":
        return value.replace("\\'", "'")
    unescaped = re.sub(r"\\(.)", lambda m: ESCAPES.get(m[1], m[0]), value, flags=re.S)
    return interpolate(unescaped, variables)


def _next_line(key: str, body: str, lines: Iterator[str]) -> str:
    line = next(lines, None)
    if line is None:
        raise ComposeError(f"unterminated quoted value for {key}")
    return f"{body}\n{line}"


def _closing_quote(body: str, quote: str) -> int:
    position = 0
    while position < len(body):
        if body[position] == "\\":
            position += 2
        elif body[position] == quote:
            return position
        else:
            position += 1
    return -1


def resolve(
    compose_file: Path,
    *,
    project_dir: Path | None = None,
    shell: Mapping[str, str] | None = None,
    profiles: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The services `docker compose --project-directory project_dir [--profile ...] up`
    would start from this shell's environment, each with `environment` as its container
    receives it. project_dir holds the .env file and roots relative paths (default: the
    compose file's directory); without `profiles`, COMPOSE_PROFILES chooses."""
    project_dir = project_dir or compose_file.parent
    variables = project_variables(project_dir, shell or {})
    document = _interpolate_values(yaml.safe_load(compose_file.read_text()), variables)
    if profiles is None:
        profiles = variables.get("COMPOSE_PROFILES", "").split(",")
    active = {profile.strip() for profile in profiles} - {""}
    defined = document["services"]
    enabled = {
        name: service
        for name, service in defined.items()
        if not service.get("profiles") or active & set(service["profiles"])
    }
    return {
        name: {
            **{key: value for key, value in service.items() if key != "env_file"},
            **_dependencies(name, service, defined, enabled),
            "environment": container_environment(service, project_dir, variables),
        }
        for name, service in enabled.items()
    }


def _dependencies(
    name: str, service: Mapping[str, Any], defined: Mapping[str, Any], enabled: Mapping[str, Any]
) -> dict[str, Any]:
    """The service's depends_on as compose keeps it: a dependency on a service of a
    profile left out is dropped if `required: false`, and refused otherwise."""
    if "depends_on" not in service:
        return {}
    entries = service["depends_on"]
    # The short form, a list of names: each required, once started.
    long_form = entries if isinstance(entries, Mapping) else dict.fromkeys(entries, {})
    kept: dict[str, Any] = {}
    for dependency, entry in long_form.items():
        if dependency not in defined:
            raise ComposeError(f"service {name!r} depends on undefined service {dependency!r}")
        if dependency in enabled:
            kept[dependency] = entry
        elif (entry or {}).get("required", True):
            profiles = defined[dependency]["profiles"]
            raise ComposeError(
                f"service {dependency} is required by {name} but is disabled."
                f" Can be enabled by profiles {profiles}"
            )
    return {"depends_on": kept if isinstance(entries, Mapping) else list(kept)}


def project_variables(project_dir: Path, shell: Mapping[str, str]) -> dict[str, str]:
    """What compose interpolates with: the shell's environment, then the project's .env."""
    dot_env = project_dir / ".env"
    from_file = parse_env_file(dot_env.read_text(), shell) if dot_env.exists() else {}
    return {**from_file, **shell}


def container_environment(
    service: Mapping[str, Any], project_dir: Path, variables: Mapping[str, str]
) -> dict[str, str]:
    """A service's env_file entries in order, then its `environment:` entries over them;
    an entry without a value takes the one compose interpolates with, if any."""
    environment: dict[str, str] = {}
    for path, required in _env_files(service.get("env_file")):
        env_file = project_dir / path
        if env_file.exists():
            environment.update(parse_env_file(env_file.read_text(), variables))
        elif required:
            raise ComposeError(f"env file {env_file} not found")
    for key, value in _environment_entries(service.get("environment")):
        if value is not None:
            environment[key] = value
        elif key in variables:
            environment[key] = variables[key]
    return environment


def _env_files(entries: Any) -> Iterator[tuple[str, bool]]:
    for entry in [entries] if isinstance(entries, str) else entries or []:
        if isinstance(entry, str):
            yield entry, True
        else:
            yield entry["path"], entry.get("required", True)


def _environment_entries(entries: Any) -> Iterator[tuple[str, str | None]]:
    if isinstance(entries, Mapping):
        for key, value in entries.items():
            yield key, None if value is None else _scalar(value)
    else:
        for entry in entries or []:
            key, assigned, value = entry.partition("=")
            yield key, value if assigned else None


def _scalar(value: object) -> str:
    """A YAML scalar as the container sees it: `true`, not Python's `True`."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _interpolate_values(node: Any, variables: Mapping[str, str]) -> Any:
    # Values only: the spec never interpolates keys.
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, Mapping):
        return {key: _interpolate_values(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_values(item, variables) for item in node]
    return node
