"""The boot's word while the stacks start side by side: each stack as it becomes healthy, in the status
file's running step and on the edge's state file (its index), and done only once every one is healthy.

systemd is the recording stand-in of tests/firstboot_machine.py (a unit turns active after some looks):
the agent's side of the conversation is what is tested; systemd's ordering is tests/test_image_units.py's.
"""

from __future__ import annotations

import json

from firstboot_machine import Machine, SystemdStandIn

from firstboot import edge_state, services
from firstboot.cli import main


class StaggeredSystemd(SystemdStandIn):
    """Each unit turns active after its own number of looks: the stacks become healthy one by one."""

    def __init__(self, looks: dict[str, int]) -> None:
        super().__init__()
        self.looks = looks

    def active_state(self, unit: str) -> str:
        if ("start", "ai-platform.target") not in self.calls:
            return "inactive"
        self._looks[unit] = self._looks.get(unit, 0) + 1
        return "active" if self._looks[unit] >= self.looks.get(unit, 1) else "activating"


def unit(name: str) -> str:
    return services.STACK_UNIT.format(name)


def test_each_stack_is_reported_as_it_becomes_healthy_and_done_waits_for_the_last(tmp_path):
    systemd = StaggeredSystemd({unit("edge"): 1, unit("data"): 2, unit("n8n"): 4})
    clock = iter(range(0, 1000, 10))
    heard = []
    line = services.start_stacks(
        systemd,
        tmp_path,
        ["n8n"],
        timeout=600,
        poll_interval=1,
        clock=lambda: next(clock),
        sleep=lambda _: None,
        on_change=lambda states, off, progress: heard.append(progress),
    )
    assert heard == [
        "healthy: edge (10 s); starting: data, n8n",
        "healthy: edge (10 s), data (30 s); starting: n8n",
        "healthy: edge (10 s), data (30 s), n8n (60 s)",
    ]
    assert line.startswith("3 healthy: ")  # the step's result: only once the last one is healthy


def test_the_boot_keeps_the_running_step_and_the_edge_state_file_up_to_date(tmp_path):
    machine = Machine(tmp_path / "a")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    machine.systemd = StaggeredSystemd({unit("edge"): 1, unit("data"): 2, unit("ollama"): 3, unit("litellm"): 5})
    seen = []

    original = services.start_stacks

    def watched(*args, on_change=None, **kwargs):
        def hear(states, off, line):
            on_change(states, off, line)  # the agent's own reaction first, then what it left behind
            running = next(s for s in machine.status()["steps"] if s["state"] == "running")
            state = json.loads((machine.paths.etc_dir / edge_state.STATE_FILE).read_text())["stacks"]
            seen.append((running["name"], running["detail"], state))

        return original(*args, on_change=hear, **kwargs)

    services.start_stacks, saved = watched, services.start_stacks
    try:
        assert main(["run"], machine.settings()) == 0
    finally:
        services.start_stacks = saved
    first_name, first_detail, first_state = seen[0]
    assert first_name == "services"
    assert first_detail == "healthy: edge (0 s); starting: data, ollama, litellm"
    assert first_state == {"data": "starting", "ollama": "starting", "litellm": "starting", "edge": "healthy"}
    assert seen[-1][2] == dict.fromkeys(["data", "ollama", "litellm", "edge"], "healthy")
    services_step = next(s for s in machine.status()["steps"] if s["name"] == "services")
    assert services_step["state"] == "ok" and services_step["detail"].startswith("4 healthy")


def test_the_state_file_is_written_only_on_a_change_and_shows_off_and_failed(tmp_path):
    states = {unit("data"): "active", unit("n8n"): "failed", "ai-platform-gdrive.service": "inactive"}
    shown = edge_state.from_units(states, {"ai-platform-gdrive.service"})
    assert shown == {"data": "healthy", "n8n": "failed", "gdrive": "off"}
    assert edge_state.write(tmp_path, shown)
    assert not edge_state.write(tmp_path, dict(shown))
    assert edge_state.write(tmp_path, {**shown, "n8n": "healthy"})
    document = json.loads((tmp_path / edge_state.STATE_FILE).read_text())
    assert document["stacks"]["n8n"] == "healthy"
    assert (tmp_path / edge_state.STATE_FILE).stat().st_mode & 0o777 == 0o644


def test_the_health_check_shows_the_containers_state_on_the_index(tmp_path):
    machine = Machine(tmp_path / "a")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    assert main(["run"], machine.settings()) == 0
    starting = {"ai-platform-litellm": [("litellm", "Up 5 seconds (health: starting)")]}
    containers = lambda project: starting.get(project, [(project, "Up 2 minutes (healthy)")])  # noqa: E731
    assert main(["health"], machine.settings(containers=containers)) == 0
    stacks = json.loads((machine.paths.etc_dir / edge_state.STATE_FILE).read_text())["stacks"]
    assert stacks == {"data": "healthy", "ollama": "healthy", "litellm": "starting", "edge": "healthy"}
