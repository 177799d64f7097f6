"""The local target's lifecycle without a VM: following the agent's console lines, and the power-off
that waits for a clean shutdown. A real process stands in for qemu (a VM takes a minute to boot,
and these are about builder's side): it holds a UNIX socket as qemu's monitor does and ends, or
does not, when it reads `system_powerdown`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from builder.config.schema import PlatformConfig
from builder.local.instances import LocalInstance
from firstboot.services import start_stacks

GUEST = """
import socket, sys, time
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen(1)
print("ready", flush=True)
connection, _ = server.accept()
# Like qemu's monitor, as a destroy saw it: what arrives before its greeting and prompt is lost.
time.sleep(0.5)
connection.setblocking(False)
try:
    connection.recv(100)
except BlockingIOError:
    pass
connection.setblocking(True)
connection.sendall(b"QEMU 7.2 monitor - type 'help' for more information\\r\\n(qemu) ")
request = connection.recv(100)
connection.sendall(request.strip() + b"\\r\\n(qemu) ")  # the monitor always runs it; the guest decides
if sys.argv[2] == "obeys" and b"system_powerdown" in request:
    time.sleep(1)  # the guest's shutdown: stacks stop, the disk is unmounted
    open(sys.argv[1] + ".ended", "w").close()
    sys.exit(0)
time.sleep(3600)  # a guest that never shuts down
"""


@pytest.fixture
def instance(tmp_path):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "state")}})
    made = LocalInstance(config, "alpha")
    made.directory.mkdir(parents=True)
    yield made
    made.monitor.unlink(missing_ok=True)


def start_guest(instance: LocalInstance, behaviour: str) -> subprocess.Popen:
    instance.monitor.unlink(missing_ok=True)
    guest = subprocess.Popen(
        [sys.executable, "-c", GUEST, str(instance.monitor), behaviour], stdout=subprocess.PIPE, text=True
    )
    assert guest.stdout.readline().strip() == "ready"
    (instance.directory / "state.json").write_text(json.dumps({"instance_id": "local-alpha-1", "pid": guest.pid}))
    return guest


def test_destroy_waits_for_a_clean_shutdown_and_says_so(instance):
    guest = start_guest(instance, "obeys")
    lines: list[str] = []
    assert instance.destroy(delete_data=False, log=lines.append, shutdown_wait=30) == "clean"
    guest.wait(10)
    assert instance.monitor.with_suffix(".monitor.ended").exists()  # it ended by itself: nothing was killed
    instance.monitor.with_suffix(".monitor.ended").unlink()
    assert any("shut down cleanly" in line for line in lines), lines
    assert not (instance.directory / "state.json").exists()


def test_a_guest_that_does_not_shut_down_is_forced_off_and_that_is_said(instance):
    guest = start_guest(instance, "ignores")
    lines: list[str] = []
    assert instance.destroy(delete_data=False, log=lines.append, shutdown_wait=2) == "forced"
    guest.wait(10)  # gone (builder reaped it, so Popen cannot see the signal)
    assert any(line.startswith("FORCED") for line in lines), lines


def test_a_monitor_that_is_gone_means_an_immediate_forced_stop(instance):
    guest = start_guest(instance, "obeys")
    instance.monitor.unlink()  # nobody can ask this guest to power off
    lines: list[str] = []
    began = time.monotonic()
    assert instance.destroy(delete_data=False, log=lines.append, shutdown_wait=600) == "forced"
    guest.wait(10)
    assert time.monotonic() - began < 60, "it waited for a shutdown nobody asked for"


def test_wait_reports_each_step_and_stack_in_order(instance):
    instance.console.write_text(
        "[  OK  ] Started foo.\n"
        "firstboot: step config: ok in 0.01 s: ai-platform/alpha on local\n"
        "firstboot: step storage: ok in 3.20 s: vol-1 on vdb: new filesystem made\n"
        "firstboot: healthy: ai-platform-stack@data.service after 41 s\n"
        "firstboot: step services: ok in 300.00 s: 2 healthy\n"
        "ai-platform firstboot: done (8 ok)\n"
    )
    (instance.directory / "state.json").write_text(json.dumps({"instance_id": "i", "pid": 0}))
    steps: list[str] = []
    state, line = instance.wait(5, lambda *_: None, poll=0.1, on_step=steps.append)
    assert (state, line) == ("done", "ai-platform firstboot: done (8 ok)")
    assert [s.split(":")[1].strip() for s in steps] == [
        "step config",
        "step storage",
        "healthy",
        "step services",
    ]


def test_start_stacks_logs_each_stack_as_it_becomes_healthy(tmp_path, caplog):
    class Systemd:
        polls = 0

        def daemon_reload(self):
            pass

        def start(self, unit, wait=True):
            assert not wait, "the agent must follow the stacks itself, not block in systemctl start"

        def active_state(self, unit):
            # data is healthy at once; the edge only from the third poll on
            return "active" if "data" in unit or self.polls >= 3 else "activating"

        def condition_failed(self, unit):
            return False

    systemd = Systemd()
    now = [0.0]

    def sleep(_seconds):  # each poll takes 10 s of the (fake) clock
        systemd.polls += 1
        now[0] += 10

    caplog.set_level("INFO", logger="firstboot")
    start_stacks(systemd, tmp_path, [], timeout=600, poll_interval=1, clock=lambda: now[0], sleep=sleep)
    healthy = [r.getMessage() for r in caplog.records if r.getMessage().startswith("healthy:")]
    assert healthy == [
        "healthy: ai-platform-stack@data.service after 0 s",
        "healthy: ai-platform-stack@edge.service after 30 s",
    ]


def test_the_target_is_started_without_blocking(monkeypatch):
    """`systemctl start` of the target returns only once every stack has started: the agent would
    have no deadline and say nothing while it waited."""
    from firstboot import platform

    ran = []
    monkeypatch.setattr(
        platform.subprocess, "run", lambda args, **_: ran.append(args) or subprocess.CompletedProcess(args, 0, "", "")
    )
    platform.Systemd().start("ai-platform.target", wait=False)
    platform.Systemd().start("mnt-data.mount")
    assert ran == [["systemctl", "start", "--no-block", "ai-platform.target"], ["systemctl", "start", "mnt-data.mount"]]


def test_a_unit_whose_start_is_only_queued_is_not_off(monkeypatch):
    """With --no-block the stacks' starts are queued: systemd shows ConditionResult=no for a unit
    it has not checked yet, and counting it as off ended the boot before any stack had started."""
    from firstboot import platform

    properties = {
        ("ai-platform-stack@data.service", "ConditionTimestampMonotonic"): "0",
        ("ai-platform-stack@data.service", "ConditionResult"): "no",
        ("ai-platform-gdrive.service", "ConditionTimestampMonotonic"): "81234567",
        ("ai-platform-gdrive.service", "ConditionResult"): "no",
    }
    monkeypatch.setattr(platform.Systemd, "_property", staticmethod(lambda unit, name: properties[(unit, name)]))
    assert platform.Systemd().condition_failed("ai-platform-stack@data.service") is False
    assert platform.Systemd().condition_failed("ai-platform-gdrive.service") is True


def test_a_stack_stranded_by_a_dependency_that_failed_once_is_started_again(tmp_path):
    """Seen in the chain: data failed once (then its Restart= brought it up), and systemd had already
    failed LiteLLM's and n8n's start jobs on it; they stayed inactive and the boot waited them out."""
    from firstboot_machine import SystemdStandIn

    systemd = SystemdStandIn()
    systemd.stranded = {"ai-platform-stack@litellm.service"}
    now = [0.0]

    def sleep(_seconds):
        now[0] += 10

    summary = start_stacks(
        systemd, tmp_path, ["litellm"], timeout=600, poll_interval=1, clock=lambda: now[0], sleep=sleep
    )
    assert "ai-platform-stack@litellm.service" in summary
    assert ("start", "ai-platform-stack@litellm.service") in systemd.calls
    assert systemd.waited_for["ai-platform-stack@litellm.service"] is False
