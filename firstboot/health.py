"""The platform's health now, not only at first boot: `firstboot health`, run every minute by a timer.

A stack unit is active once its stack was healthy at start (a oneshot stays active), so the health
is read from the containers: a stack is healthy when each of its containers runs and none reports
its healthcheck as unhealthy or still starting. The result goes to /var/lib/ai-platform/health.json
(every run), to a console line and, on AWS, to the instance's health tag (only when it changed):
what `builder status` shows. The same file carries the on-volume backups' state (firstboot/backup_record.py)
and the data volume's room (firstboot/disk_space.py), whose lines are reported the same way, each on its own tag;
and whether the egress policy is in force (firstboot/egress_report.py: its line on the console).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from firstboot.report import TAG_VALUE_LIMIT
from firstboot.services import HOST_UNITS, PLATFORM_TARGET, STACK_UNIT
from firstboot.status import write_atomic

HEALTH_PATH = Path("/var/lib/ai-platform/health.json")
HEALTH_TAG = "ai-platform:health"
CONSOLE_PREFIX = "ai-platform health:"


def instance_stacks(systemd_dir: Path) -> list[str]:
    """The stacks the agent made ai-platform.target want (its drop-in), in start order."""
    drop_in = systemd_dir / f"{PLATFORM_TARGET}.d" / "instance.conf"
    if not drop_in.exists():
        return []
    units = [line.split("=", 1)[1] for line in drop_in.read_text().splitlines() if line.startswith("Wants=")]
    host_units = {unit: name for name, unit in HOST_UNITS.items()}
    prefix, suffix = STACK_UNIT.split("{}")
    return [host_units.get(unit) or unit.removeprefix(prefix).removesuffix(suffix) for unit in units]


def docker_states(project: str) -> list[tuple[str, str]]:
    """(container, status) of a compose project, as `docker ps -a` shows them."""
    listed = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            "{{.Names}}\t{{.Status}}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        raise RuntimeError(listed.stderr.strip() or "docker ps failed")
    return [tuple(line.split("\t", 1)) for line in listed.stdout.splitlines() if "\t" in line]


def stack_health(states: Sequence[tuple[str, str]]) -> str:
    """healthy, starting or unhealthy (with the first container that is not healthy)."""
    if not states:
        return "unhealthy: no containers"
    for name, status in states:
        if not status.startswith("Up"):
            return f"unhealthy: {name} {status.split(' (')[0].lower()}"
        if "(unhealthy)" in status:
            return f"unhealthy: {name} fails its healthcheck"
    if any("(health: starting)" in status for _, status in states):
        return "starting"
    return "healthy"


def check(
    stacks: Sequence[str],
    systemd: Any,
    containers: Callable[[str], Sequence[tuple[str, str]]] = docker_states,
) -> dict[str, str]:
    health = {}
    for stack in stacks:
        if stack in HOST_UNITS:
            state = systemd.active_state(HOST_UNITS[stack])
            off = state == "inactive" and systemd.condition_failed(HOST_UNITS[stack])
            health[stack] = "off" if off else ("healthy" if state == "active" else f"unhealthy: {state}")
            continue
        try:
            health[stack] = stack_health(containers(f"ai-platform-{stack}"))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            health[stack] = f"unknown: {exc}"
    return health


SIGNAL_CHANNEL = "signal channel"  # not a stack: Clawdbot's channel (firstboot/signal_channel.py)
GPU = "gpu"  # not a stack: the GPU image's GPU (firstboot/gpu.py)


def summary(health: dict[str, str]) -> str:
    """N/M healthy over the stacks that run; one that is off (gdrive without its rclone config) is
    named apart, neither healthy nor a problem, as is the Signal channel (linked, or waiting)."""
    channel = health.get(SIGNAL_CHANNEL)
    gpu = health.get(GPU)  # the GPU image's GPU (firstboot/gpu.py): named apart, as the channel
    stacks = {s: h for s, h in health.items() if s not in (SIGNAL_CHANNEL, GPU)}
    running = {s: h for s, h in stacks.items() if h != "off"}
    healthy = [s for s, h in running.items() if h == "healthy"]
    others = [f"{s} {h}" for s, h in running.items() if h != "healthy"]
    off = [s for s, h in stacks.items() if h == "off"]
    line = f"{CONSOLE_PREFIX} {len(healthy)}/{len(running)} healthy"
    line += "".join(f"; {other}" for other in others) + (f"; off: {', '.join(off)}" if off else "")
    line += f"; {SIGNAL_CHANNEL} {channel}" if channel else ""
    return line + (f"; gpu {gpu}" if gpu else "")


def previous_record(path: Path = HEALTH_PATH) -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads(path.read_text()).get("stacks") or {}
    return {}


def previous_backup_line(path: Path = HEALTH_PATH) -> str | None:
    """The backup line of the last record (None before any)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return (json.loads(path.read_text()).get("backup") or {}).get("line")
    return None


def previous_disk(path: Path = HEALTH_PATH) -> dict:
    """The disk part of the last record ({} before any)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads(path.read_text()).get("disk") or {}
    return {}


def previous_egress_line(path: Path = HEALTH_PATH) -> str | None:
    """The egress line of the last record (firstboot/egress_report.py; None before any)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return (json.loads(path.read_text()).get("egress") or {}).get("line")
    return None


def record(
    health: dict[str, str],
    path: Path = HEALTH_PATH,
    backup: dict | None = None,
    disk: dict | None = None,
    egress: dict | None = None,
) -> bool:
    """Write the health file (with the backups' state and the disk's when given); True when the
    stacks' health differs from the last record."""
    previous = None
    if path.exists():
        with contextlib.suppress(ValueError):
            previous = json.loads(path.read_text()).get("stacks")
    document = {"version": 1, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stacks": health}
    if backup is not None:
        document["backup"] = backup
    if disk is not None:
        document["disk"] = disk
    if egress is not None:
        document["egress"] = egress
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2) + "\n", mode=0o644)
    return previous != health


def publish_health_tag(ec2: Any, instance_id: str, line: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": HEALTH_TAG, "Value": line[:TAG_VALUE_LIMIT]}])
