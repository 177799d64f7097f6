"""Running Packer: `-machine-readable` output turned into steps with elapsed time, the full log kept.

Packer's "say" lines (`==> qemu.local: Provisioning with shell script: …`) are its steps; its
"message" lines are the provisioners' output, kept in the log and shown only with --debug. An
interrupt is passed to Packer, which then cleans up what it made (instance, key pair, group).
Packer also gets that interrupt when `builder` dies without one (killed): otherwise it and its VM
would run on, orphaned. The janitor finds whatever a killed Packer could not.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuilderError


@dataclass
class PackerOutcome:
    returncode: int
    steps: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, step)
    errors: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # build name -> artifact id
    seconds: float = 0.0
    last_output: list[str] = field(default_factory=list)  # the provisioners' last lines, for a failure


def parse_line(line: str) -> tuple[str, str, list[str]] | None:
    """(target, type, data) of one machine-readable line; Packer escapes newlines and commas in data."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = [part.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "") for part in parts[3:]]
    return parts[1], parts[2], data


def run_packer(
    command: list[str],
    log_path: Path,
    cwd: Path,
    on_step: Callable[[float, str], None],
    on_output: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> PackerOutcome:
    outcome = PackerOutcome(returncode=-1)
    started = time.monotonic()
    # Line-buffered: `tail -f` on the log follows a bake as it runs, not 8 KiB behind.
    with log_path.open("w", encoding="utf-8", buffering=1) as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_interrupt_when_parent_dies,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                parsed = parse_line(line)
                if parsed is None:
                    continue
                target, kind, data = parsed
                if kind == "ui" and len(data) >= 2:
                    text = data[1].strip()
                    if data[0] == "say" and text:
                        elapsed = time.monotonic() - started
                        outcome.steps.append((elapsed, text))
                        on_step(elapsed, text)
                    elif data[0] == "error":
                        # Packer reports remote stderr as errors too: keep them with the output.
                        outcome.errors.append(text)
                        outcome.last_output = [*outcome.last_output[-11:], text]
                    elif text:
                        outcome.last_output = [*outcome.last_output[-11:], text]
                        if on_output is not None:
                            on_output(text)
                elif kind == "artifact" and len(data) >= 3 and data[1] == "id":
                    outcome.artifacts[target] = data[2]
        except KeyboardInterrupt:
            # Packer cleans up when interrupted; wait for it rather than leave resources behind. SIGTERM,
            # not SIGINT: Packer's outer (panic-wrapper) process ignores SIGINT and forwards SIGTERM.
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise BuilderError(
                f"bake interrupted; Packer cleaned up what it could (log: {log_path}). "
                "`builder janitor` finds anything left."
            ) from None
        outcome.returncode = process.wait()
    outcome.seconds = time.monotonic() - started
    return outcome


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _interrupt_when_parent_dies() -> None:
    """In the child before exec: the kernel sends it SIGTERM when `builder` dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def failure_reason(outcome: PackerOutcome) -> str:
    """The line that says why the build failed (not a provisioner's stray stderr)."""
    for text in outcome.errors:
        if "errored" in text or "non-zero exit status" in text or "failed" in text.lower():
            return text
    return outcome.errors[-1] if outcome.errors else f"exit code {outcome.returncode}"


def read_manifest(path: Path, run_uuid: str | None = None) -> list[dict]:
    """The builds of the last run recorded in Packer's manifest."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuilderError(f"{path}: Packer's manifest cannot be read ({exc})") from None
    last = run_uuid or manifest.get("last_run_uuid")
    return [build for build in manifest.get("builds", []) if build.get("packer_run_uuid") == last]


def ami_ids(artifact_id: str) -> dict[str, str]:
    """amazon-ebs artifact ids are "region:ami-…,region:ami-…" (one per copy)."""
    pairs = [item.split(":", 1) for item in artifact_id.split(",") if ":" in item]
    return {region: ami for region, ami in pairs}


# Packer's plugins answer on unix sockets it makes in TMPDIR (packer-plugin + 10 digits), and a
# socket's path holds at most 107 bytes (sun_path): in a deeper folder every plugin fails to start
# ("bind: invalid argument") and Packer crashes.
SOCKET_PATH_MAX = 107
PLUGIN_SOCKET = "packer-plugin0123456789"


@contextlib.contextmanager
def temporary_dir(work: Path) -> Iterator[Path]:
    """Packer's TMPDIR: the bake's work folder (its disk, cleaned with it) where a plugin socket's
    path fits; else a short folder of its own in the system's temporary folder, removed after."""
    if len(str(work / PLUGIN_SOCKET).encode()) <= SOCKET_PATH_MAX:
        yield work
        return
    with tempfile.TemporaryDirectory(prefix="ai-platform-packer-") as short:
        yield Path(short)
