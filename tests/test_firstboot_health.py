"""`firstboot health`: every stack's health now, from its containers (a stack unit stays active after
its start), recorded every run and reported on a change."""

from __future__ import annotations

import json

from firstboot_machine import Machine

from builder.config.schema import PlatformConfig
from builder.local.instances import LocalInstance
from firstboot import health
from firstboot.cli import main

UP = "Up 3 minutes (healthy)"


def test_a_stack_is_healthy_only_when_every_container_runs_and_passes():
    assert health.stack_health([("a", UP), ("worker", "Up 3 minutes")]) == "healthy"
    assert health.stack_health([("a", UP), ("b", "Up 5 seconds (health: starting)")]) == "starting"
    assert health.stack_health([("a", "Up 1 hour (unhealthy)")]) == "unhealthy: a fails its healthcheck"
    assert health.stack_health([("a", UP), ("b", "Exited (137) 2 minutes ago")]) == "unhealthy: b exited"
    assert health.stack_health([]) == "unhealthy: no containers"


def test_the_command_records_every_run_and_reports_only_changes(tmp_path, capsys):
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    containers = {"ai-platform-data": [("postgres", UP)], "ai-platform-ollama": [("ollama", UP)]}
    settings = machine.settings(containers=lambda project: containers.get(project, []))
    assert main(["run"], settings) == 0
    capsys.readouterr()

    assert main(["health"], settings) == 0
    first = capsys.readouterr().out
    assert first.startswith("ai-platform health: 2/4 healthy")  # litellm and the edge have no containers here
    recorded = json.loads((machine.paths.state_dir / "health.json").read_text())
    assert recorded["stacks"]["data"] == "healthy" and recorded["stacks"]["edge"] == "unhealthy: no containers"

    assert main(["health"], settings) == 0
    assert capsys.readouterr().out == ""  # nothing changed: nothing said
    containers["ai-platform-data"] = [("postgres", "Up 9 minutes (unhealthy)")]
    assert main(["health"], settings) == 0
    assert "data unhealthy: postgres fails its healthcheck" in capsys.readouterr().out


def test_builder_status_shows_the_last_health_line_of_a_local_instance(tmp_path):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path)}})
    instance = LocalInstance(config, "alpha")
    instance.directory.mkdir(parents=True)
    assert instance.health() == "-"
    instance.console.write_text(
        "ai-platform firstboot: done (8 ok)\r\nai-platform health: 9/9 healthy\r\n"
        "ai-platform health: 8/9 healthy; n8n unhealthy: n8n exited\r\n"
    )
    assert instance.health() == "ai-platform health: 8/9 healthy; n8n unhealthy: n8n exited"


def test_a_stack_that_is_off_is_named_apart_and_not_counted():
    line = health.summary({"data": "healthy", "gdrive": "off", "n8n": "unhealthy: n8n exited"})
    assert line == "ai-platform health: 1/2 healthy; n8n unhealthy: n8n exited; off: gdrive"
    assert health.summary({"data": "healthy", "gdrive": "off"}) == "ai-platform health: 1/1 healthy; off: gdrive"
