"""The owner's own services baked into the image (services.custom): what the edge needs to publish
and list them, read from the manifest the bake wrote (/opt/ai-platform/stacks/custom.json).

Their compose projects, units and edge routes are in the image already; the instance config's
`services` says which run. A service it names that the image lacks (added to the config after this
bake) is reported, not started: its unit's stack folder is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "custom.json"


@dataclass(frozen=True)
class CustomService:
    name: str
    title: str
    edge_port: int | None  # a TLS port of its own, or
    path: str | None  # a sub-path of the main port


def load_manifest(stacks_dir: Path) -> dict[str, CustomService]:
    path = stacks_dir / MANIFEST
    if not path.exists():  # an image baked before the owner's own services existed
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: CustomService(name, entry["title"], entry.get("edge_port"), entry.get("path"))
            for name, entry in document["services"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a manifest of the owner's services ({exc})") from None
