"""Starting the stacks: ai-platform.target, wanting exactly this instance's stacks, until each is healthy.

A stack unit (ai-platform-stack@NAME.service) is active once `docker compose up --wait` saw its
healthchecks pass, so "active" is "healthy". A failed unit fails the boot at once, naming it; one
still starting at the deadline is named with its state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PLATFORM_TARGET = "ai-platform.target"
STACK_UNIT = "ai-platform-stack@{}.service"
# Always run, around the instance's services. The order here is only the report's: the units'
# drop-ins order each stack after the ones its start needs (the edge after none).
FIRST_STACKS = ("data",)
LAST_STACKS = ("edge",)
# Services that are host units rather than compose stacks.
HOST_UNITS = {"gdrive": "ai-platform-gdrive.service"}
# Units the platform does not wait for: a Drive mount whose remote is down or whose token expired
# is reported, and the apps come up without it.
OPTIONAL_UNITS = frozenset({"ai-platform-gdrive.service"})
# A stack whose start job failed on a dependency (data failed once, then its Restart= brought it
# up) stays inactive with no job: systemd does not try it again. Asked again this often while the
# boot waits.
RESTART_STRANDED_EVERY = 60.0

log = logging.getLogger("firstboot")


def platform_units(services: Sequence[str]) -> list[str]:
    """Every unit the instance runs, as the report lists them: data services, the enabled services, the edge."""
    names = [*FIRST_STACKS, *(s for s in services if s not in FIRST_STACKS + LAST_STACKS), *LAST_STACKS]
    return [HOST_UNITS.get(name) or STACK_UNIT.format(name) for name in names]


class ServicesError(Exception):
    pass


def write_target_drop_in(systemd_dir: Path, units: Sequence[str]) -> bool:
    """Make ai-platform.target want exactly these units; True when the drop-in changed."""
    drop_in = systemd_dir / f"{PLATFORM_TARGET}.d" / "instance.conf"
    text = "# Written by the firstboot agent: the stacks this instance runs.\n[Unit]\n" + "".join(
        f"Wants={unit}\n" for unit in units
    )
    if drop_in.exists() and drop_in.read_text(encoding="utf-8") == text:
        return False
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(text, encoding="utf-8")
    return True


def start_stacks(
    systemd: Any,
    systemd_dir: Path,
    stacks: Sequence[str],
    *,
    timeout: float,
    poll_interval: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    warn: Callable[[str], None] = log.warning,
    on_change: Callable[[dict[str, str], set[str], str], None] | None = None,
) -> str:
    """`on_change` hears of each change while it waits: every unit's state, the units that are off,
    and a line of the progress (which are healthy, after how long, and which are still starting)."""
    units = platform_units(stacks)
    if write_target_drop_in(systemd_dir, units):
        systemd.daemon_reload()
    # Queued, not waited for: `systemctl start` of the target would return only once every stack
    # had started (or failed), past this deadline and with no word of progress in between.
    systemd.start(PLATFORM_TARGET, wait=False)
    started = clock()
    deadline = started + timeout
    announced: dict[str, float] = {}  # unit -> seconds it took to become healthy
    asked_again = started
    heard: tuple | None = None
    while True:
        states = {unit: systemd.active_state(unit) for unit in units}
        for unit in units:  # each stack's line as it becomes healthy: the boot's progress, timed
            if states[unit] == "active" and unit not in announced:
                announced[unit] = clock() - started
                log.info("healthy: %s after %.0f s", unit, announced[unit])
        failed = [unit for unit, state in states.items() if state == "failed" and unit not in OPTIONAL_UNITS]
        if failed:
            raise ServicesError(f"{', '.join(failed)} failed; see `journalctl -u {failed[0]}`")
        # A unit whose condition is unmet (gdrive without its rclone config) is off, not starting.
        off = [unit for unit, state in states.items() if state == "inactive" and systemd.condition_failed(unit)]
        waiting = [
            unit
            for unit, state in states.items()
            if state != "active" and unit not in off and unit not in OPTIONAL_UNITS
        ]
        if on_change is not None and heard != (states, off):
            heard = (states, off)
            on_change(dict(states), set(off), progress_line(states, announced, off))
        if not waiting:
            healthy = [unit for unit in units if states[unit] == "active"]
            down = [unit for unit in units if unit in OPTIONAL_UNITS and unit not in off and states[unit] != "active"]
            for unit in down:
                warn(f"{unit} is {states[unit]}, the rest runs without it; see `journalctl -u {unit}`")
            return (
                f"{len(healthy)} healthy: {', '.join(healthy)}"
                + (f"; off: {', '.join(off)}" if off else "")
                + (f"; not running: {', '.join(down)}" if down else "")
            )
        # Inactive with no job: its start job failed on a dependency. Inactive with a job queued is
        # only waiting on a stack it is ordered after (the apps on data): asked again, it would merge.
        stranded = [unit for unit in waiting if states[unit] == "inactive" and not systemd.job_queued(unit)]
        if stranded and clock() - asked_again >= RESTART_STRANDED_EVERY:
            asked_again = clock()
            for unit in stranded:  # a start already queued merges with this one: no harm done
                log.info("starting %s again: it is inactive (a dependency failed before it came up?)", unit)
                systemd.start(unit, wait=False)
        if clock() >= deadline:
            raise ServicesError(
                f"not healthy within {timeout:g} s: " + ", ".join(f"{unit} ({states[unit]})" for unit in waiting)
            )
        sleep(poll_interval)


def progress_line(states: dict[str, str], healthy_after: dict[str, float], off: Sequence[str] = ()) -> str:
    """ "healthy: data (41 s), edge (12 s); starting: litellm, n8n" while the stacks start."""
    prefix, suffix = STACK_UNIT.split("{}")
    name = lambda unit: unit.removeprefix(prefix).removesuffix(suffix)  # noqa: E731
    healthy = [f"{name(unit)} ({healthy_after[unit]:.0f} s)" for unit in healthy_after if states.get(unit) == "active"]
    starting = [name(unit) for unit, state in states.items() if state != "active" and unit not in off]
    parts = {"healthy": healthy, "starting": starting}
    return "; ".join(f"{what}: {', '.join(names)}" for what, names in parts.items() if names)
