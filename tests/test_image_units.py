"""The systemd units the image ships (image/rootfs/etc/systemd/system), checked by systemd itself.

`systemd-analyze verify` exits 0 on unknown keys and hides ordering cycles unless it sees the whole
boot: the units are enabled in a copy of this machine's systemd tree (which has Debian's
cloud-init units), cloud-init.target linked as cloud-init's generator links it at boot, and any
output at all is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

UNITS = REPO / "image" / "rootfs" / "etc" / "systemd" / "system"
AGENT_UNIT = UNITS / "ai-platform-firstboot.service"


STACK_INSTANCES = ["data", "ollama", "litellm", "anythingllm", "clawdbot", "dify", "n8n", "signal_api", "edge"]


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".target", ".timer", ".mount"))


def enabled_names() -> list[str]:
    """What a booted instance has enabled: every unit, the stack template once per stack."""
    names = [unit.name for unit in unit_files() if "@." not in unit.name]
    return names + [f"ai-platform-stack@{name}.service" for name in STACK_INSTANCES]


@pytest.fixture
def boot_root(tmp_path):
    """A root with this machine's systemd and cloud-init units and the image's units, enabled."""
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copytree("/usr/lib/systemd", root / "usr/lib/systemd", symlinks=True)
    shutil.copytree("/etc/systemd", root / "etc/systemd", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    target = wants / "cloud-init.target"
    if not target.exists():
        target.symlink_to("/usr/lib/systemd/system/cloud-init.target")
    assert (root / "usr/lib/systemd/system/cloud-final.service").exists(), "cloud-init is not installed here"
    # The agent's executable, where the bake installs its venv.
    agent = root / "opt/ai-platform/agent/bin/firstboot"
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\n")
    agent.chmod(0o755)
    # The stack scripts as the image ships them; rclone as the bake installs it.
    shutil.copytree(REPO / "image/rootfs/opt/ai-platform/bin", root / "opt/ai-platform/bin")
    rclone = root / "usr/local/bin/rclone"
    rclone.parent.mkdir(parents=True, exist_ok=True)
    rclone.write_text("#!/bin/sh\n")
    rclone.chmod(0o755)
    return root


def install(root: Path, unit_text: dict[str, str], enable: list[str] | None = None) -> None:
    for name, text in unit_text.items():
        (root / "etc/systemd/system" / name).write_text(text)
    for directory in UNITS.glob("*.d"):
        shutil.copytree(directory, root / "etc/systemd/system" / directory.name, dirs_exist_ok=True)
    for name in enable if enable is not None else list(unit_text):
        subprocess.run(["systemctl", f"--root={root}", "enable", name], check=True, capture_output=True)


def verify(root: Path) -> str:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "multi-user.target"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return (result.stdout + result.stderr).strip()


def test_image_ships_the_agent_unit():
    assert AGENT_UNIT in unit_files()


def test_units_verify_with_no_finding_and_no_ordering_cycle(boot_root):
    install(boot_root, {unit.name: unit.read_text() for unit in unit_files()}, enabled_names())
    assert verify(boot_root) == ""


def dependencies(root: Path, unit: str) -> str:
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", unit],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
    )
    return result.stdout + result.stderr


# Each stack's start order: (the stacks it is ordered after, those it Requires=, why). A stack waits
# only for what its start needs; the rest starts at once after the data stack, and the edge at once.
START_ORDER = {
    "data": ((), (), "first: every database the apps migrate at start"),
    "ollama": (("data",), (), "needs nothing; after data only to leave the CPU to Postgres's start"),
    "litellm": (("data",), ("data",), "migrates its Postgres database at start; Ollama is asked per question"),
    "anythingllm": (("data",), ("data",), "its vectors are in the data stack's Weaviate"),
    "dify": (("data",), ("data",), "migrates its Postgres database at start, needs Redis and Weaviate"),
    "n8n": (("data",), ("data",), "migrates its Postgres database at start"),
    "signal_api": (("data",), (), "needs nothing; after data only to leave the CPU to Postgres's start"),
    "clawdbot": (("data", "signal_api"), (), "starts its Signal channel at start; skips one it cannot reach"),
    "edge": ((), (), "resolves each upstream per request and says 'starting' until it answers"),
}


def stack_dependencies(found: str, kind: str) -> set[str]:
    """The stacks a unit is ordered after (kind "After") or requires ("Requires"), from systemd's dump."""
    prefix, suffix = f"{kind}: ai-platform-stack@", ".service"
    return {
        line.strip().split(" (")[0].removeprefix(prefix).removesuffix(suffix)
        for line in found.splitlines()
        if line.strip().startswith(prefix)
    }


def test_the_start_order_table_covers_every_stack():
    assert set(START_ORDER) == set(STACK_INSTANCES)
    drop_ins = {
        path.parent.name.removeprefix("ai-platform-stack@").removesuffix(".service.d")
        for path in UNITS.glob("*/10-order.conf")
    }
    assert drop_ins == set(STACK_INSTANCES) - {"data"}


@pytest.mark.parametrize("stack", STACK_INSTANCES)
def test_each_stack_starts_after_exactly_what_its_start_needs(boot_root, stack):
    after, requires, _why = START_ORDER[stack]
    unit = f"ai-platform-stack@{stack}.service"
    install(boot_root, {unit.name: unit.read_text() for unit in unit_files()}, enabled_names())
    found = dependencies(boot_root, unit)
    assert stack_dependencies(found, "After") == set(after), found
    assert stack_dependencies(found, "Requires") == set(requires)
    assert "RequiresMountsFor: /mnt/data" in found
    assert "After: docker.service" in found


def test_each_order_in_a_drop_in_says_why():
    """One comment per dependency: every After= line in a stack's drop-in follows a comment naming it."""
    for drop_in in UNITS.glob("ai-platform-stack@*.service.d/10-order.conf"):
        lines = drop_in.read_text().splitlines()
        for number, line in enumerate(lines):
            if not line.startswith("After="):
                continue
            comment = []
            for previous in reversed(lines[:number]):
                if not previous.startswith("#"):
                    if previous.startswith("Requires="):
                        continue
                    break
                comment.append(previous)
            for stack in line.removeprefix("After=").split():
                name = stack.removeprefix("ai-platform-stack@").removesuffix(".service")
                assert any(name in c for c in comment), f"{drop_in}: no comment says why after {name}"


def test_the_cycle_check_catches_the_known_trap(boot_root):
    """LAB.md's trap: After=cloud-final.service with WantedBy=multi-user.target. The check must see it."""
    trap = AGENT_UNIT.read_text().replace("After=cloud-init.service", "After=cloud-final.service")
    install(boot_root, {AGENT_UNIT.name: trap})
    found = verify(boot_root)
    # Where systemd enters the cycle varies from run to run; that it finds one with our unit does not.
    assert "Found ordering cycle" in found
    assert "ai-platform-firstboot.service" in found


def test_agent_unit_treats_degraded_as_success_and_runs_the_installed_agent():
    text = AGENT_UNIT.read_text()
    assert "SuccessExitStatus=2" in text
    assert "ExecStart=/opt/ai-platform/agent/bin/firstboot run" in text
    assert "ConditionPathExists=/etc/ai-platform/instance.json" in text


def test_agent_unit_orders_after_cloud_inits_network_stage_under_both_of_its_names():
    """write_files runs in cloud-init's network stage: cloud-init.service here and on Ubuntu 22.04,
    cloud-init-network.service since upstream renamed it (2024); without it the order is lost."""
    after = " ".join(line.split("=", 1)[1] for line in AGENT_UNIT.read_text().splitlines() if line.startswith("After="))
    assert {"cloud-init.service", "cloud-init-network.service"} <= set(after.split())


def test_docker_waits_for_the_data_volume_once_the_agent_wrote_its_mount(boot_root):
    """The image's docker.service drop-in: with mnt-data.mount present, Docker requires and follows it."""
    from firstboot import storage

    shutil.copytree(UNITS / "docker.service.d", boot_root / "etc/systemd/system/docker.service.d")
    unit = boot_root / "etc/systemd/system" / storage.mount_unit_name()
    unit.write_text(storage.mount_unit("be1a6783-011f-467f-b4a2-f11e18797465"))
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={boot_root}", "docker.service"],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
    )
    dependencies = result.stdout + result.stderr
    assert "Requires: mnt-data.mount" in dependencies
    assert "After: mnt-data.mount" in dependencies


def test_stacks_want_docker_and_do_not_require_it(boot_root):
    """systemd.unit(5): a unit that Requires= another is stopped or restarted with it, so `systemctl
    restart docker` took every stack down and up; Wants= starts Docker with a stack and nothing more.
    tests/test_docker_restarts.py plays the restart on a real systemd."""
    install(boot_root, {unit.name: unit.read_text() for unit in unit_files()}, enabled_names())
    for name in STACK_INSTANCES:
        found = dependencies(boot_root, f"ai-platform-stack@{name}.service")
        assert "Wants: docker.service" in found and "After: docker.service" in found
        assert "Requires: docker.service" not in found and "BindsTo: docker.service" not in found


def test_docker_is_restarted_however_it_dies_and_then_reloads_the_running_stacks(boot_root):
    """The image's docker.service drop-ins over the distribution's docker.service, verified by systemd
    with the commands they run present (stubs where this machine has none)."""
    for command in ("usr/sbin/dockerd", "bin/kill", "bin/systemctl"):
        stub = boot_root / command
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    install(boot_root, {unit.name: unit.read_text() for unit in unit_files()}, enabled_names())
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={boot_root}", "docker.service"], capture_output=True, text=True
    )
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == ""
    found = dependencies(boot_root, "docker.service")
    assert "Restart: always" in found
    assert 'try-reload-or-restart "ai-platform-stack@*.service"' in found
    stack = dependencies(boot_root, "ai-platform-stack@data.service")
    assert "-> ExecReload:" in stack and "ai-platform-stack up data" in stack
