"""Read a YAML config file strictly: line numbers for every key, duplicate keys refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ConfigError, Problem

KeyPath = tuple  # of str keys and int list indices

# A config is a few hundred values; nested aliases ("billion laughs") could expand to billions.
MAX_EXPANDED_NODES = 100_000


@dataclass
class YamlDocument:
    data: Any
    lines: dict[KeyPath, int]  # key path -> 1-based line where it is written


def read_yaml_file(path: Path) -> YamlDocument:
    """Parse `path`; any problem is a ConfigError naming the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem(str(path), "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError(str(path), [Problem(str(path), "", "is a directory, not a YAML file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [Problem(str(path), "", f"not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise ConfigError(str(path), [Problem(str(path), "", f"cannot be read: {exc.strerror}")]) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> YamlDocument:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already: inside the try
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        problems: list[Problem] = []
        if node is not None:
            _index(node, (), lines, problems, name, set())
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            problems.append(Problem(name, "", f"aliases expand to more than {MAX_EXPANDED_NODES} values"))
        if problems:
            raise ConfigError(name, problems)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(name, [Problem(where, "", f"broken YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            name,
            [
                Problem(
                    name,
                    "",
                    f"broken YAML: character {exc.character!r} is not allowed in YAML (position {exc.position})",
                )
            ],
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(name, [Problem(name, "", f"broken YAML: {exc}")]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # SafeLoader raises these for values such as an out-of-range date or a bad !!binary.
        raise ConfigError(name, [Problem(name, "", f"unreadable YAML value: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(data, lines)


def _index(node: yaml.Node, path: KeyPath, lines: dict, problems: list, name: str, seen_nodes: set) -> None:
    """Record where each key is written and refuse duplicates (PyYAML silently keeps the last)."""
    if id(node) in seen_nodes:  # an alias: indexed where its anchor is (and no exponential walk)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(f"{name}:{line}", _dotted(path), "a key must be a plain word"))
                continue
            key = key_node.value
            if key == "<<":  # merge key: its own entries are indexed where they are written
                continue
            if key in seen:
                problems.append(
                    Problem(f"{name}:{line}", _dotted((*path, key)), f"duplicate key (first set on line {seen[key]})")
                )
                continue
            seen[key] = line
            lines[(*path, key)] = line
            _index(value_node, (*path, key), lines, problems, name, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index(item, (*path, index), lines, problems, name, seen_nodes)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


def _expanded_size(node: yaml.Node, memo: dict) -> int:
    """How many values the document holds once every alias is expanded."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_EXPANDED_NODES + 1  # a node that contains itself expands forever
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_EXPANDED_NODES + 1)
    return memo[id(node)]
