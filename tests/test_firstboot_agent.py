"""The agent's boot story on the local target, end to end in one process, on a real disk image."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from firstboot_machine import CONTRACT, Machine, filesystem_uuid

from firstboot import storage
from firstboot.cli import main

VOLUME_ID = "vol-0123456789abcdef0"


@pytest.fixture
def machine(tmp_path):
    machine = Machine(tmp_path / "a")
    machine.disk(VOLUME_ID)
    machine.instance_config()
    machine.cloud_init("local-a")
    return machine


def run(machine, *args):
    return main(["run", *args], machine.settings())


def test_first_boot_formats_mounts_and_writes_the_env(machine, capsys):
    assert run(machine) == 0
    status = machine.status()
    assert status["state"] == "done"
    assert [(s["name"], s["state"]) for s in status["steps"]] == [
        ("config", "ok"),
        ("identity", "ok"),
        ("storage", "ok"),
        ("tailscale", "ok"),
        ("secrets", "ok"),
        ("gdrive", "ok"),
        ("stacks", "ok"),
        ("services", "ok"),
        ("report", "ok"),
    ]
    assert all(s["seconds"] is not None for s in status["steps"])
    uuid = filesystem_uuid(machine.disk_dir / "vdb")
    unit = machine.paths.systemd_dir / storage.mount_unit_name(str(machine.paths.data_mount))
    assert f"What=/dev/disk/by-uuid/{uuid}" in unit.read_text()
    assert ("start", unit.name) in machine.systemd.calls
    env = machine.env()
    # Every variable of the image's contract but the provider keys (none configured).
    contract = {v["name"] for v in CONTRACT["variables"]}
    assert set(env) == contract - {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}
    assert env["OLLAMA_KEEP_ALIVE"] == "5m" and env["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert len(env["N8N_ENCRYPTION_KEY"]) == 64 and env["LITELLM_MASTER_KEY"].startswith("sk-")
    assert env["PLATFORM_HOSTNAME"] == "ai-platform-alpha"
    assert oct(machine.paths.env_file.stat().st_mode & 0o777) == "0o600"
    secrets_file = machine.paths.data_mount / "platform" / "secrets.env"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    out = capsys.readouterr()
    assert out.out.strip().startswith("ai-platform firstboot: done")
    for value in env.values():  # no secret on the console or in the status file
        if value and value != "ai-platform-alpha":
            assert value not in out.out + out.err
            assert value not in machine.paths.status.read_text()


def test_every_later_boot_converges_and_changes_nothing(machine):
    assert run(machine) == 0
    uuid, secrets, env_stat = (
        filesystem_uuid(machine.disk_dir / "vdb"),
        machine.secrets(),
        machine.paths.env_file.stat(),
    )
    machine.systemd.calls.clear()

    assert run(machine) == 0

    assert filesystem_uuid(machine.disk_dir / "vdb") == uuid
    assert machine.secrets() == secrets
    assert machine.paths.env_file.stat().st_mtime_ns == env_stat.st_mtime_ns  # not even rewritten
    assert ("daemon-reload",) not in machine.systemd.calls  # the unit was already right
    storage_step = next(s for s in machine.status()["steps"] if s["name"] == "storage")
    assert "existing filesystem kept" in storage_step["detail"]


def test_a_new_instance_with_the_same_volume_gets_the_same_secrets(machine, tmp_path):
    assert run(machine) == 0
    first_env = machine.env()
    # A new root disk (new instance id, no state, no .env) with the same data volume attached.
    other = Machine(tmp_path / "b", disk_dir=machine.disk_dir, data_dir=machine.paths.data_mount)
    other.disk(VOLUME_ID, name="vdc")
    (other.disk_dir / "vdc").unlink()
    os.link(machine.disk_dir / "vdb", other.disk_dir / "vdc")  # the same disk, under the name Nitro gave it here
    other.instance_config()
    other.cloud_init("local-b")

    assert run(other) == 0
    assert other.env() == first_env
    assert other.status()["instance_id"] == "local-b"


def test_a_volume_with_data_but_no_secrets_file_stops_before_anything_starts(machine):
    assert run(machine) == 0
    (machine.paths.data_mount / "n8n").mkdir()
    (machine.paths.data_mount / "platform" / "secrets.env").unlink()
    machine.paths.env_file.unlink()

    assert run(machine) == 1
    status = machine.status()
    assert status["state"] == "failed"
    assert status["first_error"]["step"] == "secrets"
    assert "Restore secrets.env from a backup" in status["first_error"]["message"]
    assert not machine.paths.env_file.exists()


def test_a_foreign_disk_is_refused_and_nothing_after_storage_runs(machine):
    subprocess.run(["mkfs.ext4", "-q", "-L", "somebodys", str(machine.disk_dir / "vdb")], check=True)
    assert run(machine) == 1
    steps = {s["name"]: s for s in machine.status()["steps"]}
    assert steps["storage"]["state"] == "failed"
    assert "labelled 'somebodys'" in steps["storage"]["detail"]
    assert steps["secrets"]["state"] == "skipped"
    assert steps["report"]["state"] == "ok"
    assert machine.systemd.calls == []
    assert not machine.paths.env_file.exists()
    assert filesystem_uuid(machine.disk_dir / "vdb") is not None


def test_a_disk_that_never_appears_fails_at_the_deadline(machine):
    (machine.paths.sys_block / "vdb" / "serial").write_text("vol0ffffffffffffffff\n")
    assert run(machine) == 1
    assert (
        "no block device with serial vol0123456789abcdef0 appeared within 2 s"
        in (machine.status()["first_error"]["message"])
    )


KILLER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from firstboot_machine import Machine
    from pathlib import Path
    from firstboot import agent
    from firstboot.framework import Context, Step, run_steps

    machine = Machine(Path(sys.argv[2]))
    settings = machine.settings()
    after = sys.argv[3]
    steps = []
    for step in agent.STEPS:
        steps.append(step)
        if step.name == after:
            steps.append(Step("kill", lambda context: os._exit(137)))
    context = Context(state_dir=settings.paths.state_dir, platform=None, values={"settings": settings})
    run_steps(steps, context, settings.paths.status)
    """
)


@pytest.mark.parametrize("after", ["config", "identity", "storage", "tailscale", "secrets", "services"])
def test_killed_after_any_step_a_rerun_reaches_the_same_end(machine, after, tmp_path):
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, os.path.dirname(__file__), str(machine.root), after], capture_output=True
    )
    assert killed.returncode == 137, killed.stderr
    assert machine.status()["state"] == "running"  # the record shows the run did not finish
    uuid_before = filesystem_uuid(machine.disk_dir / "vdb")
    secrets_before = machine.secrets() if after == "secrets" else None

    assert run(machine) == 0

    assert machine.status()["state"] == "done"
    if uuid_before:
        assert filesystem_uuid(machine.disk_dir / "vdb") == uuid_before  # never formatted twice
    if secrets_before:
        assert machine.secrets() == secrets_before
    # The end state equals that of a run that was never killed, secrets aside (they are random).
    clean = Machine(tmp_path / "clean")
    clean.disk(VOLUME_ID)
    clean.instance_config()
    clean.cloud_init("local-a")
    assert run(clean) == 0
    assert sorted(machine.env()) == sorted(clean.env())
    assert [s["state"] for s in machine.status()["steps"]] == [s["state"] for s in clean.status()["steps"]]


def test_only_and_skip(machine, capsys):
    assert run(machine, "--only", "storage") == 0
    assert [s["name"] for s in machine.status()["steps"]] == ["config", "identity", "storage", "report"]
    assert not machine.paths.env_file.exists()
    assert run(machine, "--skip", "storage") == 0
    assert machine.paths.env_file.exists()
    with pytest.raises(SystemExit):
        run(machine, "--only", "tailscale-please")
    assert (
        "no step 'tailscale-please'; the steps are: "
        "config, identity, storage, tailscale, secrets, gdrive, stacks, services, report" in (capsys.readouterr().err)
    )
    with pytest.raises(SystemExit):
        run(machine, "--skip", "identity")


def test_status_command(machine, capsys):
    assert main(["status"], machine.settings()) == 1  # no run yet
    run(machine)
    capsys.readouterr()
    assert main(["status"], machine.settings()) == 0
    out = capsys.readouterr().out
    assert out.startswith("state: done  (instance local-a")
    assert "storage    ok" in out
    assert main(["status", "--json"], machine.settings()) == 0
    assert '"state": "done"' in capsys.readouterr().out


def test_a_second_run_waits_for_no_one(machine):
    """Two agents at once could both find a blank disk: the second one refuses to start."""
    import fcntl

    machine.paths.state_dir.mkdir(parents=True, exist_ok=True)
    with open(machine.paths.state_dir / "firstboot.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run(machine) == 1
    assert not machine.paths.status.exists()


def test_services_start_this_instances_stacks_and_wait_until_healthy(machine):
    assert run(machine) == 0
    drop_in = machine.paths.systemd_dir / "ai-platform.target.d" / "instance.conf"
    assert [line for line in drop_in.read_text().splitlines() if line.startswith("Wants=")] == [
        "Wants=ai-platform-stack@data.service",
        "Wants=ai-platform-stack@ollama.service",
        "Wants=ai-platform-stack@litellm.service",
        "Wants=ai-platform-stack@edge.service",
    ]
    services = next(s for s in machine.status()["steps"] if s["name"] == "services")
    assert services["detail"] == (
        "4 healthy: ai-platform-stack@data.service, ai-platform-stack@ollama.service, "
        "ai-platform-stack@litellm.service, ai-platform-stack@edge.service"
    )
    machine.systemd.calls.clear()
    assert run(machine) == 0
    assert ("daemon-reload",) not in machine.systemd.calls


def test_a_failed_stack_fails_the_boot_and_names_it(machine):
    machine.systemd.failing = {"ai-platform-stack@litellm.service"}
    assert run(machine) == 1
    error = machine.status()["first_error"]
    assert error == {
        "step": "services",
        "message": "ai-platform-stack@litellm.service failed; see `journalctl -u ai-platform-stack@litellm.service`",
    }


def test_a_stack_that_never_gets_healthy_fails_at_the_deadline(machine):
    machine.systemd.stuck = {"ai-platform-stack@ollama.service"}
    assert run(machine) == 1
    assert machine.status()["first_error"]["message"] == (
        "not healthy within 2 s: ai-platform-stack@ollama.service (activating)"
    )
