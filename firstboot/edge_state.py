"""Each stack's state for the edge's index page: /etc/ai-platform/edge/state.json.

The edge serves the file at /.ai-platform-edge/state.json (edge/nginx.conf) and its index asks for it
every few seconds (firstboot/apps/edge.py), so the owner sees each app go from starting to healthy.
Written by the boot while the stacks start (from their units: active is healthy) and by the health
check every minute after (from the containers: firstboot/health.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

from firstboot.services import HOST_UNITS, STACK_UNIT
from firstboot.status import write_atomic

STATE_FILE = "edge/state.json"  # under /etc/ai-platform, which the edge mounts read-only


def stack_name(unit: str) -> str:
    host_units = {unit: name for name, unit in HOST_UNITS.items()}
    prefix, suffix = STACK_UNIT.split("{}")
    return host_units.get(unit) or unit.removeprefix(prefix).removesuffix(suffix)


def from_units(states: Mapping[str, str], off: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Stack name -> state from the units' active states while the boot starts them: a unit is active
    once its stack is healthy; one that waits for its turn or runs its start is starting."""
    shown = {}
    for unit, state in states.items():
        if unit in off:
            shown[stack_name(unit)] = "off"
        elif state == "active":
            shown[stack_name(unit)] = "healthy"
        elif state == "failed":
            shown[stack_name(unit)] = "failed"
        else:
            shown[stack_name(unit)] = "starting"
    return shown


def write(etc_dir: Path, stacks: Mapping[str, str]) -> bool:
    """The state file, when it differs from what is there; True when written."""
    path = etc_dir / STATE_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("stacks") == dict(stacks):
            return False
    except (OSError, ValueError, AttributeError):
        pass
    document = {"version": 1, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stacks": dict(stacks)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2) + "\n", mode=0o644)
    return True
