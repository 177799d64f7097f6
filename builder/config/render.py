"""The merged config as YAML, each value annotated with where it came from."""

from __future__ import annotations

from typing import Any

import yaml


def annotated_yaml(data: dict, sources: dict[str, str]) -> str:
    lines: list[tuple[str, str]] = []
    _walk(data, (), 0, sources, lines)
    # Align the source comments, but do not let one long value push them all far right.
    width = min(max(len(text) for text, _ in lines), 44) + 2
    return "".join(f"{text.ljust(width)}  # {source}\n" if source else f"{text}\n" for text, source in lines)


def _walk(data: dict, prefix: tuple, depth: int, sources: dict[str, str], lines: list) -> None:
    indent = "  " * depth
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            lines.append((f"{indent}{key}:", ""))
            _walk(value, path, depth + 1, sources, lines)
        else:
            lines.append((f"{indent}{key}: {inline_yaml(value)}", sources.get(".".join(map(str, path)), "")))


def inline_yaml(value: Any) -> str:
    """One value as YAML on one line (flow style for lists and maps)."""
    # Dumping inside a list keeps PyYAML from adding a document-end marker after plain scalars.
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]
