"""Whether the egress policy (firstboot/egress.py) is in force: the last try's outcome, as a line.

`firstboot egress` (each time dockerd starts, and ai-platform-egress.service when the agent wrote a
new policy) records it in /var/lib/ai-platform/egress-state.json; the health check (every minute)
carries the line into health.json and onto the console, and starts ai-platform-egress.service
again while the last try failed. Lines:

    ai-platform egress: enforced; VPC 10.0.0.0/16 closed; allowed 10.0.5.0/24; off the internet: n8n
    ai-platform egress: NOT ENFORCED: iptables-restore refused ...; containers reach all the host
        reaches; retried each minute
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from firstboot.status import write_atomic

LINE_PREFIX = "ai-platform egress:"
STATE_NAME = "egress-state.json"
EGRESS_UNIT = "ai-platform-egress.service"


@dataclass(frozen=True)
class EgressReport:
    enforced: bool
    detail: str

    def line(self) -> str:
        if self.enforced:
            return f"{LINE_PREFIX} enforced; {self.detail}"
        return f"{LINE_PREFIX} NOT ENFORCED: {self.detail}; containers reach all the host reaches; retried each minute"

    def to_json(self) -> dict:
        return {"enforced": self.enforced, "detail": self.detail, "line": self.line()}


def write(report: EgressReport, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(state_dir / STATE_NAME, json.dumps(report.to_json(), indent=2) + "\n", mode=0o644)


def read(state_dir: Path) -> EgressReport | None:
    """The last try's outcome; None before any (an instance whose dockerd has not started yet)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        document = json.loads((state_dir / STATE_NAME).read_text(encoding="utf-8"))
        return EgressReport(bool(document["enforced"]), str(document["detail"]))
    return None
