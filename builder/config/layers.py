"""The layers of a platform config and where each value came from.

Precedence, lowest first: built-in defaults < the config file < environment < command-line flags.
Each layer is a nested dict plus, for every key path it sets, a human-readable origin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.config.yamlfile import KeyPath, read_yaml_file
from builder.errors import ConfigError, Problem

# Nested keys in one environment variable, as pydantic-settings does: BUILDER__AWS__INSTANCE_TYPE.
ENV_PREFIX = "BUILDER__"
# builder's variables that are not config keys (one underscore): every other BUILDER_* name is a
# misspelt key, refused with the right form rather than ignored. A new such variable belongs here.
OTHER_VARIABLES = ("BUILDER_CONFIG",)
# The AWS conventions: AWS_PROFILE, and the region from AWS_REGION before AWS_DEFAULT_REGION.
AWS_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")

_KEY = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class Layer:
    name: str
    data: dict = field(default_factory=dict)
    origins: dict[KeyPath, str] = field(default_factory=dict)

    def set(self, path: KeyPath, value: Any, origin: str) -> None:
        node = self.data
        for end, part in enumerate(path[:-1], start=1):
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
                # A section this value made: an unknown one (--set nosuch.key=1) is blamed on the value's origin.
                self.origins.setdefault(path[:end], origin)
            node = child
        node[path[-1]] = value
        for sub_path in _paths(value, path):
            self.origins[sub_path] = origin


def file_layer(path: Path) -> Layer:
    document = read_yaml_file(path)
    if document.data is None:
        raise ConfigError(str(path), [Problem(str(path), "", "is empty; it needs at least 'version: 1'")])
    if not isinstance(document.data, dict):
        raise ConfigError(
            str(path), [Problem(str(path), "", f"must be a mapping of keys (found a {_kind(document.data)})")]
        )
    layer = Layer(f"file {path}", document.data)
    for sub_path in _paths(document.data, ()):
        line = document.lines.get(sub_path)
        layer.origins[sub_path] = f"{path}:{line}" if line else str(path)
    return layer


def environment_layer(environ: Mapping[str, str]) -> Layer:
    layer = Layer("environment")
    problems = []
    if environ.get("AWS_PROFILE"):
        layer.set(("aws", "profile"), environ["AWS_PROFILE"], "environment variable AWS_PROFILE")
    for variable in AWS_REGION_VARIABLES:
        if environ.get(variable):
            layer.set(("aws", "region"), environ[variable], f"environment variable {variable}")
            break
    for variable in sorted(environ):
        origin = f"environment variable {variable}"
        if not variable.startswith(ENV_PREFIX):
            if variable.upper().startswith("BUILDER_") and variable not in OTHER_VARIABLES:
                problems.append(Problem(origin, "", _misnamed(variable)))
            continue
        parts = tuple(variable[len(ENV_PREFIX) :].lower().split("__"))
        if not all(_KEY.fullmatch(part) for part in parts):
            problems.append(Problem(origin, "", "name it BUILDER__SECTION__KEY, e.g. BUILDER__AWS__INSTANCE_TYPE"))
            continue
        try:
            layer.set(parts, _parse_value(environ[variable]), origin)
        except ValueError as exc:
            problems.append(Problem(origin, ".".join(parts), str(exc)))
    if problems:
        raise ConfigError("environment", problems)
    return layer


def _misnamed(variable: str) -> str:
    """Why a BUILDER_* name that is neither a key's nor builder's own is not read, and its right form."""
    rest = variable.upper()[len("BUILDER") :].lstrip("_")
    if rest in (name[len("BUILDER_") :] for name in OTHER_VARIABLES):
        right = f"BUILDER_{rest}"
    elif rest and all(_KEY.fullmatch(part) for part in rest.lower().split("__")):
        right = f"{ENV_PREFIX}{rest}"
    else:
        right = None
    guess = f" (did you mean {right}?)" if right else ""
    return (
        f"not a name builder reads{guess}: a config key is BUILDER__SECTION__KEY, in capitals with two "
        "underscores after BUILDER and between keys, e.g. BUILDER__AWS__INSTANCE_TYPE; builder's other "
        f"variables: {', '.join(OTHER_VARIABLES)}. Rename or unset it"
    )


def flag_layer(region: str | None, profile: str | None, assignments: tuple[str, ...] | list[str]) -> Layer:
    """The flags' layer. A --set that is not KEY.PATH=VALUE is a usage error (exit 2), as click's own are."""
    layer = Layer("flags")
    problems = []
    malformed = [a for a in assignments if not _well_formed_assignment(a)]
    if malformed:
        import click

        shown = ", ".join(repr(a) for a in malformed)
        raise click.BadParameter(
            f"{shown}: write --set KEY.PATH=VALUE, e.g. --set aws.instance_type=g5.xlarge "
            "(KEY.PATH: lowercase keys joined by '.'; VALUE: YAML, quoted if it is a string YAML would change)",
            param_hint="'--set'",
        )
    for assignment in assignments:
        key, _, raw = assignment.partition("=")
        parts = tuple(key.strip().split("."))
        origin = f"flag --set {key.strip()}={_shown_value(parts, raw)}"
        try:
            layer.set(parts, _parse_value(raw), origin)
        except ValueError as exc:
            problems.append(Problem(origin, key, str(exc)))
    if region is not None:
        layer.set(("aws", "region"), region, "flag --region")
    if profile is not None:
        layer.set(("aws", "profile"), profile, "flag --profile")
    if problems:
        raise ConfigError("command line", problems)
    return layer


def _well_formed_assignment(assignment: str) -> bool:
    key, sep, _ = assignment.partition("=")
    return bool(sep) and all(_KEY.fullmatch(part) for part in key.strip().split("."))


def _shown_value(parts: KeyPath, raw: str) -> str:
    # An SSM parameter's name is where a user may paste the secret itself: its value is never echoed.
    if str(parts[-1]).endswith("_parameter"):
        return "…"
    return raw if len(raw) <= 40 else raw[:37] + "..."


def merge(layers: list[Layer]) -> Layer:
    """Later layers win key by key; a value that replaces a whole section drops the section's origins."""
    merged = Layer("merged")
    for layer in layers:
        _merge_into(merged, layer.data, (), layer.origins)
    return merged


def _merge_into(merged: Layer, data: dict, prefix: KeyPath, origins: dict[KeyPath, str]) -> None:
    for key, value in data.items():
        path = (*prefix, key)
        existing = _get(merged.data, path)
        if isinstance(value, dict) and isinstance(existing, dict):
            # A section both layers have was written first by the lower one (a --set inside it made no section).
            merged.origins[path] = merged.origins.get(path) or origins.get(path, "")
            _merge_into(merged, value, path, origins)
            continue
        for stale in [p for p in merged.origins if p[: len(path)] == path]:
            del merged.origins[stale]
        merged.set(path, _copy(value), "")
        for sub_path in _paths(value, path):
            merged.origins[sub_path] = origins.get(sub_path, origins.get(path, ""))


def origin_of(origins: dict[KeyPath, str], path: KeyPath, fallback: str) -> str:
    """Where the value at `path` (or its nearest written ancestor) came from."""
    for end in range(len(path), 0, -1):
        origin = origins.get(path[:end])
        if origin:
            return origin
    return fallback


def default_config_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (a named file must exist)."""
    named = environ.get("BUILDER_CONFIG")
    if named:
        return Path(named), True
    return Path("platform.yaml"), False


def _parse_value(raw: str) -> Any:
    # Values are YAML, so BUILDER__SERVICES__DIFY__ENABLED=false and --set ollama.models=[a:1] are typed.
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not a YAML value"
        raise ValueError(f"value is not valid YAML ({problem}); quote it if it is a string") from None


def _paths(value: Any, prefix: KeyPath):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")
