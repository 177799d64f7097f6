"""Load the platform config: merge the layers, validate, and explain every bad value."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from builder.config.layers import Layer, environment_layer, file_layer, flag_layer, merge, origin_of
from builder.config.schema import CONFIG_VERSION, PlatformConfig
from builder.config.yamlfile import KeyPath
from builder.errors import ConfigError, Problem

DEFAULT_ORIGIN = "default"


@dataclass
class LoadedConfig:
    config: PlatformConfig
    file: Path | None  # None: no file, built-in defaults only
    sources: dict[str, str]  # dotted key path of every value -> where it came from
    # Valid settings that expose the platform beyond the tailnet (builder/config/risks.py): said, not refused.
    warnings: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.config.model_dump(mode="json")

    def warnings_json(self) -> list[dict]:
        return [{"origin": w.origin, "path": w.path, "message": w.message} for w in self.warnings]


def load_config(
    path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    region: str | None = None,
    profile: str | None = None,
    assignments: tuple[str, ...] | list[str] = (),
) -> LoadedConfig:
    """Read `path` (None: defaults only) under the environment and flag layers.

    Raises ConfigError naming the file (or variable, or flag), key path and what would be valid.
    """
    layers: list[Layer] = []
    if path is None:
        layers.append(_defaults_layer())
    else:
        layers.append(file_layer(path))
    layers.append(environment_layer(environ or {}))
    layers.append(flag_layer(region, profile, assignments))
    merged = merge(layers)
    source = str(path) if path is not None else "(built-in defaults)"
    _check_version(merged, source)
    try:
        config = PlatformConfig.model_validate(merged.data)
    except ValidationError as exc:
        raise ConfigError(
            source, [_explain(error, merged, source) for error in exc.errors(include_url=False)]
        ) from None
    except RecursionError:
        raise ConfigError(source, [Problem(source, "", "nested too deeply (a YAML alias refers to itself?)")]) from None
    return LoadedConfig(config, path, _sources(config, merged), _warnings(config, merged, source))


def _warnings(config: PlatformConfig, merged: Layer, source: str) -> list[Problem]:
    from builder.config.risks import risks

    return [
        Problem(
            origin_of(merged.origins, tuple(int(p) if p.isdigit() else p for p in path.split(".")), source), path, text
        )
        for path, text in risks(config)
    ]


def _defaults_layer() -> Layer:
    layer = Layer("defaults")
    layer.set(("version",), CONFIG_VERSION, DEFAULT_ORIGIN)
    return layer


def _check_version(merged: Layer, source: str) -> None:
    # The version decides how everything else is read, so it is checked before anything else.
    version = merged.data.get("version")
    origin = origin_of(merged.origins, ("version",), source)
    if "version" not in merged.data:
        raise ConfigError(source, [Problem(source, "version", f"missing; add 'version: {CONFIG_VERSION}' at the top")])
    if version != CONFIG_VERSION or isinstance(version, bool):
        raise ConfigError(
            source,
            [Problem(origin, "version", f"unsupported config version {version!r}; this builder reads version 1")],
        )


def _explain(error: dict, merged: Layer, source: str) -> Problem:
    loc: KeyPath = tuple(error["loc"])
    kind = error["type"]
    message = error["msg"]
    # pydantic marks a bad dictionary key by appending "[key]"; a user's key may be "[key]" too.
    bad_key = kind != "extra_forbidden" and loc[-1:] == ("[key]",)
    if bad_key:
        loc = loc[:-1]
    if kind == "extra_forbidden":
        return Problem(origin_of(merged.origins, loc, source), _dotted(loc), _unknown_key(loc))
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        # Validators that check several fields name the one at fault as "key.path: message".
        named = re.match(r"([a-z0-9_.]+): (.*)", message, re.S)
        if named:
            loc = loc + tuple(int(p) if p.isdigit() else p for p in named.group(1).split("."))
            message = named.group(2)
    elif kind == "missing":
        message = "required"
    elif not _is_sensitive(loc) and "input" in error and kind not in ("literal_error",):
        message = f"{message} (got {_show(error['input'])})"
        if kind == "string_type" and type(error["input"]) in (int, float):
            message += _quote_hint(loc, error["input"])
    if bad_key:
        message = f"key {message[0].lower()}{message[1:]}"
    return Problem(origin_of(merged.origins, loc, source), _dotted(loc), message)


def _quote_hint(loc: KeyPath, number: int | float) -> str:
    # YAML reads +4915112345678 as the integer 4915112345678: the '+' (and a leading 0) is gone.
    if loc[-2:] == ("signal_api", "account") and isinstance(number, int) and number > 0:
        return f"; YAML read it as a number: write it in quotes: '+{number}'"
    return "; YAML read it as a number: write it in quotes, as you mean it"


def _unknown_key(loc: KeyPath) -> str:
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1])
    if allowed is None:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown key {key!r}{hint} Valid keys here: {', '.join(allowed)}"


def _allowed_keys(loc: KeyPath) -> list[str] | None:
    model: Any = PlatformConfig
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return None


def _model_of(annotation: Any) -> Any:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return annotation


def _is_sensitive(loc: KeyPath) -> bool:
    # SSM parameter fields: a user may have pasted the secret itself, which must not be echoed.
    return any(isinstance(part, str) and part.endswith("_parameter") for part in loc)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: KeyPath) -> str:
    return ".".join(str(part) for part in loc)


def _sources(config: PlatformConfig, merged: Layer) -> dict[str, str]:
    paths = _leaf_paths(config.model_dump(mode="json"), ())
    return {_dotted(path): merged.origins.get(path) or DEFAULT_ORIGIN for path in paths}


def _leaf_paths(value: Any, prefix: KeyPath):
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaf_paths(child, (*prefix, key))
    else:
        yield prefix
