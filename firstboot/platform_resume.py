"""The platform back on its feet after systemd stopped it underneath: run by the health check every minute.

Two ways the platform stops with no one asking, and what brings it back (a stop by hand, with the
volume in place, is left as it is):
- The data volume goes away at runtime (detached, or the device fails). Its mount unit is bound to the
  device (systemd.mount(5): block-device file systems gain BindsTo= on their device), so systemd stops
  it, and with it everything that requires /mnt/data (RequiresMountsFor=): Docker, the stacks,
  ai-platform.target. Nothing starts them again when the device returns: a device's appearance starts
  only what it Wants=. Here: once the device is back, ai-platform.target is started again, which
  mounts the volume (RequiresMountsFor=), starts every stack of the instance (the agent's Wants=
  drop-in) and, through them, Docker (Wants=docker.service). While it is gone, the line says so.
- dockerd is stopped for good while the platform runs. docker.service's drop-in restarts it however
  often it dies; this is for a stop nothing restarts (a dependency's stop, by hand): it is started again.

Only once the firstboot agent is done in this boot (its oneshot unit active): until then starting the
stacks is the agent's, after its other steps. (Not ai-platform.target's activation time: systemd
forgets an inactive unit nothing refers to, timestamps and all.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from firstboot.services import PLATFORM_TARGET
from firstboot.storage import MOUNT_POINT, mount_unit_name

DOCKER_UNIT = "docker.service"
AGENT_UNIT = "ai-platform-firstboot.service"
UP = ("active", "activating", "reloading")


def resume(
    systemd: Any,
    mount_unit: str = mount_unit_name(MOUNT_POINT),
    device_present: Callable[[str], bool] = lambda device: Path(device).exists(),
) -> str | None:
    """Start what systemd stopped; a line saying what was done, or what is missing, or None when all runs."""
    if systemd.active_state(AGENT_UNIT) != "active":
        return None
    target = systemd.active_state(PLATFORM_TARGET)
    if target not in UP:
        if systemd.active_state(mount_unit) in UP:
            # Stopped with the volume in place: by hand (`ai-platform-backup restore-files` asks for
            # it), not by a volume that went away. Left as it is: starting it would write under a restore.
            return None
        device = systemd.show(mount_unit, "What")
        if device and not device_present(device):
            return (
                f"the data volume ({device}) is gone: Docker and the stacks are stopped and nothing on the "
                f"volume is touched; they start again on their own within a minute of it coming back"
            )
        systemd.start(PLATFORM_TARGET, wait=False)
        return f"{PLATFORM_TARGET} was {target} (the data volume went away and came back?): started it again"
    docker = systemd.active_state(DOCKER_UNIT)
    if docker not in UP:
        systemd.start(DOCKER_UNIT, wait=False)
        return f"{DOCKER_UNIT} was {docker} while the stacks ran: started it again"
    return None
