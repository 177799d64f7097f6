"""Docker restarts, dockerd's death and the data volume's absence, played on a real systemd (issue #26).

The image's own units (ai-platform-stack@.service, its per-stack drop-ins, ai-platform.target,
docker.service's drop-ins) run under this machine's systemd as a user manager
(tests/systemd_user_manager.py): the same dependency and restart logic as PID 1. What a user manager
cannot have is replaced, and only that, each with a stand-in that systemd treats the same way:
- dockerd: a service that sleeps (containers are the VM check's: tests/vm_docker_checks.py);
- the data volume's mount unit: a service (a user manager cannot mount). RequiresMountsFor=/mnt/data
  becomes Requires= and After= on it, which is what systemd.unit(5) says RequiresMountsFor= adds;
  stopping it is what systemd does to the mount when the device goes (systemd.mount(5): BindsTo=);
- ai-platform-stack (up/down): a script that writes each call to a log, so a stack taken down shows;
- `systemctl` in the drop-in's ExecStartPost= gains --user, to reach this manager.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import REPO
from measured import say
from systemd_user_manager import UserManager, available

from firstboot import platform_resume, services
from firstboot.platform import Systemd

UNITS = REPO / "image" / "rootfs" / "etc" / "systemd" / "system"
INSTANCE_STACKS = ["ollama", "litellm", "n8n"]
STACK_UNITS = services.platform_units(INSTANCE_STACKS)  # data first, the edge last
VOLUME = "data-volume.service"
DOCKER = "docker.service"

pytestmark = pytest.mark.skipif(available() is not None, reason=f"no systemd user manager here: {available()}")


def for_user_manager(text: str, recorder: Path) -> str:
    text = text.replace("RequiresMountsFor=/mnt/data", f"Requires={VOLUME}\nAfter={VOLUME}")
    text = re.sub(r"^ConditionPathExists=.*\n", "", text, flags=re.MULTILINE)
    text = text.replace("/opt/ai-platform/bin/ai-platform-stack", str(recorder))
    return text.replace("/bin/systemctl ", "/bin/systemctl --user ")


def install_platform(manager: UserManager, stack_unit: str | None = None) -> Path:
    """The image's units into the manager; returns the log of ai-platform-stack calls."""
    log = manager.root / "stack-calls.log"
    recorder = manager.root / "ai-platform-stack"
    recorder.write_text(f'#!/bin/sh\necho "$1 $2" >>{log}\n')
    recorder.chmod(0o755)
    units = manager.units
    template = stack_unit if stack_unit is not None else (UNITS / "ai-platform-stack@.service").read_text()
    (units / "ai-platform-stack@.service").write_text(for_user_manager(template, recorder))
    target = (UNITS / "ai-platform.target").read_text()
    (units / "ai-platform.target").write_text(for_user_manager(target, recorder))
    services.write_target_drop_in(units, STACK_UNITS)  # as the agent writes it
    for drop_ins in UNITS.glob("*.d"):
        (units / drop_ins.name).mkdir(exist_ok=True)
        for drop_in in drop_ins.iterdir():
            (units / drop_ins.name / drop_in.name).write_text(for_user_manager(drop_in.read_text(), recorder))
    (units / DOCKER).write_text("[Unit]\nDescription=dockerd stand-in\n[Service]\nExecStart=/bin/sleep infinity\n")
    (units / platform_resume.AGENT_UNIT).write_text(
        "[Unit]\nDescription=the firstboot agent, standing in\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
    )
    (units / VOLUME).write_text(
        "[Unit]\nDescription=the data volume's mount, standing in\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
    )
    manager.systemctl("daemon-reload")
    return log


class UserSystemd(Systemd):
    """The agent's systemctl wrapper, talking to the test's user manager; `What` of the data volume's
    mount (a user manager has no mount units) is the test's device path."""

    def __init__(self, manager: UserManager, device: Path):
        self.manager, self.device = manager, device

    def _systemctl(self, *args: str) -> None:
        self.manager.systemctl(*args)

    def _property(self, unit: str, name: str) -> str:
        if (unit, name) == (VOLUME, "What"):
            return str(self.device)
        return self.manager.show(unit, name)


@pytest.fixture
def manager(tmp_path):
    manager = UserManager(tmp_path)
    manager.start()
    yield manager
    manager.stop()


def start_platform(manager: UserManager) -> dict[str, str]:
    manager.systemctl("start", services.PLATFORM_TARGET)
    manager.settle()
    manager.systemctl("start", platform_resume.AGENT_UNIT)  # the agent is done once the stacks are healthy
    assert active(manager, [*STACK_UNITS, DOCKER, VOLUME, services.PLATFORM_TARGET])
    return {unit: manager.show(unit, "ActiveEnterTimestampMonotonic") for unit in STACK_UNITS}


def active(manager: UserManager, units: list[str]) -> bool:
    states = manager.systemctl("is-active", *units, check=False).stdout.split()
    return states == ["active"] * len(units)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def up_calls(log: Path, stack: str) -> int:
    return calls(log).count(f"up {stack}")


def stack_names() -> list[str]:
    return [unit.removeprefix("ai-platform-stack@").removesuffix(".service") for unit in STACK_UNITS]


def test_restarting_docker_leaves_every_stack_up_and_checks_it_again(manager):
    log = install_platform(manager)
    started = start_platform(manager)
    began = time.monotonic()
    manager.systemctl("restart", DOCKER)
    manager.settle()
    say(f"docker restarted and every stack reloaded in {time.monotonic() - began:.1f} s")
    assert active(manager, STACK_UNITS)
    # Never deactivated: the same activation, and no `ai-platform-stack down`.
    assert {unit: manager.show(unit, "ActiveEnterTimestampMonotonic") for unit in STACK_UNITS} == started
    assert not [call for call in calls(log) if call.startswith("down")]
    # Each was reloaded once dockerd was back: `up` again, which leaves running containers be.
    assert all(up_calls(log, stack) == 2 for stack in stack_names()), calls(log)


def test_the_stack_unit_main_shipped_took_every_stack_down_with_docker(manager):
    """The check above fails on the unit before #26 (Requires=docker.service): the restart propagated."""
    before = (
        (UNITS / "ai-platform-stack@.service").read_text().replace("Wants=docker.service", "Requires=docker.service")
    )
    log = install_platform(manager, stack_unit=before)
    start_platform(manager)
    manager.systemctl("restart", DOCKER)
    manager.settle()
    assert {f"down {stack}" for stack in stack_names()} <= set(calls(log))


def test_a_dockerd_that_exits_is_started_again_and_the_stacks_stay_up(manager):
    """SIGTERM: a clean death that docker.io's own Restart=on-failure would leave dead (systemd.service(5))."""
    log = install_platform(manager)
    started = start_platform(manager)
    first = manager.show(DOCKER, "MainPID")
    began = time.monotonic()
    manager.systemctl("kill", "--kill-whom=main", "--signal=SIGTERM", DOCKER)
    deadline = time.monotonic() + 60
    while not (manager.show(DOCKER, "MainPID") not in ("0", first) and active(manager, [DOCKER])):
        assert time.monotonic() < deadline, (
            f"dockerd not back: {manager.systemctl('status', DOCKER, check=False).stdout}"
        )
        time.sleep(0.2)
    manager.settle()
    say(f"dockerd back and every stack reloaded {time.monotonic() - began:.1f} s after it died")
    assert manager.show(DOCKER, "NRestarts") == "1"
    assert {unit: manager.show(unit, "ActiveEnterTimestampMonotonic") for unit in STACK_UNITS} == started
    assert not [call for call in calls(log) if call.startswith("down")]
    assert all(up_calls(log, stack) == 2 for stack in stack_names()), calls(log)


def test_the_data_volume_going_away_and_back_brings_docker_and_the_stacks_back(manager, tmp_path):
    log = install_platform(manager)
    device = tmp_path / "by-uuid-device"
    systemd = UserSystemd(manager, device)
    assert (
        platform_resume.resume(systemd, device_present=lambda device: Path(device).exists()) is None
    )  # the agent is not done: the stacks are its
    start_platform(manager)

    manager.systemctl("stop", VOLUME)  # what systemd does to the mount when its device goes
    manager.settle()
    assert manager.systemctl(
        "is-active", DOCKER, services.PLATFORM_TARGET, *STACK_UNITS, check=False
    ).stdout.split() == (["inactive"] * (2 + len(STACK_UNITS)))
    assert {f"down {stack}" for stack in stack_names()} <= set(calls(log))  # stopped cleanly, in order

    said = platform_resume.resume(systemd, mount_unit=VOLUME, device_present=lambda device: Path(device).exists())
    assert said is not None and f"the data volume ({device}) is gone" in said
    manager.settle()
    assert manager.systemctl("is-active", services.PLATFORM_TARGET, check=False).stdout.strip() == "inactive"

    device.touch()  # the volume is back
    began = time.monotonic()
    said = platform_resume.resume(systemd, mount_unit=VOLUME, device_present=lambda device: Path(device).exists())
    assert said is not None and "started it again" in said
    manager.settle()
    say(f"the platform was back {time.monotonic() - began:.1f} s after the health check saw the volume")
    assert active(manager, [VOLUME, DOCKER, services.PLATFORM_TARGET, *STACK_UNITS])
    assert (
        platform_resume.resume(systemd, mount_unit=VOLUME, device_present=lambda device: Path(device).exists()) is None
    )


def test_the_platform_stopped_by_hand_with_its_volume_in_place_is_left_stopped(manager, tmp_path):
    """`systemctl stop ai-platform.target`, as `ai-platform-backup restore-files` asks: not started
    again under the restore (the volume's mount is still active: it did not go away)."""
    install_platform(manager)
    start_platform(manager)
    manager.systemctl("stop", services.PLATFORM_TARGET)
    manager.settle()
    systemd = UserSystemd(manager, tmp_path / "device")
    assert platform_resume.resume(systemd, mount_unit=VOLUME) is None
    manager.settle()
    assert manager.systemctl("is-active", services.PLATFORM_TARGET, check=False).stdout.strip() == "inactive"


def test_docker_stopped_while_the_stacks_run_is_started_again(manager, tmp_path):
    install_platform(manager)
    started = start_platform(manager)
    manager.systemctl("stop", DOCKER)
    manager.settle()
    assert active(manager, STACK_UNITS)  # Wants=: the stacks' containers outlive dockerd (live-restore)
    said = platform_resume.resume(UserSystemd(manager, tmp_path / "device"), mount_unit=VOLUME)
    assert said == "docker.service was inactive while the stacks ran: started it again"
    manager.settle()
    assert active(manager, [DOCKER])
    assert {unit: manager.show(unit, "ActiveEnterTimestampMonotonic") for unit in STACK_UNITS} == started


def test_a_stack_waiting_on_the_data_stack_is_not_asked_to_start_again(manager, tmp_path, monkeypatch, caplog):
    """Seen on the chain's console: while the apps' start jobs waited on the data stack, the agent
    called them stranded ("inactive (a dependency failed before it came up?)") and started them again
    each minute. Inactive with a job queued is waiting, not stranded: only one with no job is asked."""
    log = install_platform(manager)
    recorder = manager.root / "ai-platform-stack"
    recorder.write_text(f'#!/bin/sh\necho "$1 $2" >>{log}\n[ "$1 $2" = "up data" ] && sleep 4\nexit 0\n')
    monkeypatch.setattr(services, "RESTART_STRANDED_EVERY", 0.5)
    caplog.set_level("INFO", logger="firstboot")
    systemd = UserSystemd(manager, tmp_path / "device")
    summary = services.start_stacks(systemd, manager.units, INSTANCE_STACKS, timeout=60, poll_interval=0.3)
    assert summary.startswith(f"{len(STACK_UNITS)} healthy"), summary
    assert "again" not in caplog.text, caplog.text
    assert all(up_calls(log, stack) == 1 for stack in stack_names()), calls(log)
