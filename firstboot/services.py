"""Starting the stacks: ai-platform.target, wanting exactly this instance's stacks, until each is healthy.

A stack unit (ai-platform-stack@NAME.service) is active once `docker compose up --wait` saw its
healthchecks pass, so "active" is "healthy". A failed unit fails the boot at once, naming it; one
still starting at the deadline is named with its state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PLATFORM_TARGET = "ai-platform.target"
STACK_UNIT = "ai-platform-stack@{}.service"


class ServicesError(Exception):
    pass


def write_target_drop_in(systemd_dir: Path, stacks: Sequence[str]) -> bool:
    """Make ai-platform.target want exactly these stacks; True when the drop-in changed."""
    drop_in = systemd_dir / f"{PLATFORM_TARGET}.d" / "instance.conf"
    text = "# Written by the firstboot agent: the stacks this instance runs.\n[Unit]\n" + "".join(
        f"Wants={STACK_UNIT.format(name)}\n" for name in stacks
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
) -> str:
    if write_target_drop_in(systemd_dir, stacks):
        systemd.daemon_reload()
    systemd.start(PLATFORM_TARGET)
    units = [STACK_UNIT.format(name) for name in stacks]
    deadline = clock() + timeout
    while True:
        states = {unit: systemd.active_state(unit) for unit in units}
        failed = [unit for unit, state in states.items() if state == "failed"]
        if failed:
            raise ServicesError(f"{', '.join(failed)} failed; see `journalctl -u {failed[0]}`")
        waiting = [unit for unit, state in states.items() if state != "active"]
        if not waiting:
            return f"{len(units)} healthy: {', '.join(stacks)}" if units else "no stacks enabled"
        if clock() >= deadline:
            raise ServicesError(
                f"not healthy within {timeout:g} s: " + ", ".join(f"{unit} ({states[unit]})" for unit in waiting)
            )
        sleep(poll_interval)
