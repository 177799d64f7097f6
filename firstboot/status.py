"""The agent's report: a status file written after every step, so a kill leaves an honest record.

    {"version": 1, "state": "running" | "done" | "degraded" | "failed",
     "instance_id": …, "started_at": …, "finished_at": …,
     "steps": [{"name", "state": "pending" | "running" | "ok" | "skipped" | "failed", "seconds", "detail",
                "warnings"}],
     "first_error": {"step", "message", "transient": true (only when it is)} | null}

Exit codes follow cloud-init: 0 done, 1 failed, 2 done with recoverable warnings ("degraded"); and
75 (sysexits' EX_TEMPFAIL) failed for a passing reason, which ai-platform-firstboot.service answers
by starting the agent again (Restart=on-failure; RestartPreventExitStatus=1 keeps a permanent failure failed).
Every text that reaches the file passes through `Redactor`, which knows the secret values of this run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATUS_PATH = Path("/var/lib/ai-platform/status.json")
STATUS_VERSION = 1

RUNNING, DONE, DEGRADED, FAILED = "running", "done", "degraded", "failed"
EXIT_CODES = {DONE: 0, FAILED: 1, DEGRADED: 2}
EXIT_TRANSIENT = 75


def exit_code(state: str, first_error: dict | None) -> int:
    """The agent's exit status for a run that ended in `state`; an unknown state counts as failed."""
    if state == FAILED and (first_error or {}).get("transient"):
        return EXIT_TRANSIENT
    return EXIT_CODES.get(state, EXIT_CODES[FAILED])


@dataclass
class StepRecord:
    name: str
    state: str = "pending"
    seconds: float | None = None
    detail: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class Status:
    steps: list[StepRecord]
    state: str = RUNNING
    instance_id: str | None = None
    started_at: str = field(default_factory=lambda: _now())
    finished_at: str | None = None
    first_error: dict | None = None

    def to_json(self) -> dict:
        return {"version": STATUS_VERSION, **asdict(self)}

    def summary(self) -> str:
        """One line for the console."""
        counts = {}
        for step in self.steps:
            counts[step.state] = counts.get(step.state, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        line = f"ai-platform firstboot: {self.state} ({parts})"
        if self.first_error:
            line += f"; {self.first_error['step']}: {self.first_error['message']}"
        return line


class Redactor:
    """Replaces every known secret value with a marker. Secrets are registered as soon as they are read."""

    MARKER = "[redacted]"

    def __init__(self) -> None:
        self._values: set[str] = set()

    def register(self, value: str | None) -> None:
        if value and len(value) >= 4:  # shorter values would redact ordinary words
            self._values.add(value)

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, self.MARKER)
        return text


def write_status(status: Status, path: Path = STATUS_PATH) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(status.to_json(), indent=2) + "\n", mode=0o644)


def read_status(path: Path = STATUS_PATH) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Temp file in the same directory, fsync, chmod, rename: the file is whole or absent."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)  # before any byte is written
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """write_atomic, only when the content or the mode differs (creating the directory); True when it wrote."""
    try:
        if path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=mode)
    return True


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
