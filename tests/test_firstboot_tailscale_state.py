"""tailscaled's node identity kept on the data volume, so that a replaced instance is the same node.

tailscaled and the tailnet's control server cannot run here (Tailscale's packages and service are
out of reach): systemd is the agent's recording stand-in and the bind mount is seen through a
mountinfo file the test writes. The units themselves go through the real `systemd-analyze verify`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from firstboot_machine import SystemdStandIn

from firstboot import tailscale_state


def layout(tmp_path, root="one"):
    base = tmp_path / root
    paths = {
        "volume_dir": tmp_path / "volume/platform/tailscale",
        "state_dir": base / "var/lib/tailscale",
        "data_mount": tmp_path / "volume",
        "systemd_dir": base / "etc/systemd/system",
        "mountinfo": base / "mountinfo",
    }
    paths["state_dir"].mkdir(parents=True)
    paths["mountinfo"].write_text("22 1 259:1 / / rw,relatime - ext4 /dev/root rw\n")
    return paths


def test_the_first_instance_moves_its_state_onto_the_volume_then_only_checks(tmp_path):
    paths = layout(tmp_path)
    (paths["state_dir"] / "tailscaled.state").write_text('{"_machinekey": "first"}')
    systemd = SystemdStandIn()

    said = tailscale_state.keep_on_volume(systemd, **paths)

    assert said == "node identity now kept on the data volume"
    kept = paths["volume_dir"] / "tailscaled.state"
    assert kept.read_text() == '{"_machinekey": "first"}'  # what tailscaled had made is not lost
    assert paths["volume_dir"].stat().st_mode & 0o777 == 0o700
    assert systemd.calls == [
        ("daemon-reload",),
        ("stop", "tailscaled.service"),
        ("start", _mount_name(paths)),
        ("start", "tailscaled.service"),
    ]
    # A reboot of the same instance: the units are there and the mount is on.
    with paths["mountinfo"].open("a") as info:
        info.write(f"40 22 259:2 /platform/tailscale {paths['state_dir']} rw,relatime - ext4 /dev/nvme1n1 rw\n")
    systemd.calls.clear()
    assert tailscale_state.keep_on_volume(systemd, **paths) == "node identity on the data volume"
    assert systemd.calls == []


def test_a_replacement_instance_reuses_the_volumes_node_not_its_own(tmp_path):
    first = layout(tmp_path, "one")
    (first["state_dir"] / "tailscaled.state").write_text('{"_machinekey": "first"}')
    tailscale_state.keep_on_volume(SystemdStandIn(), **first)

    second = layout(tmp_path, "two")  # a new root disk, the same volume
    (second["state_dir"] / "tailscaled.state").write_text('{"_machinekey": "new and unwanted"}')
    systemd = SystemdStandIn()
    assert tailscale_state.keep_on_volume(systemd, **second) == "node identity reused from the data volume"
    assert (second["volume_dir"] / "tailscaled.state").read_text() == '{"_machinekey": "first"}'
    assert ("start", _mount_name(second)) in systemd.calls


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is in system-packages.txt")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    paths = {
        "volume_dir": tmp_path / "mnt/data/platform/tailscale",
        "state_dir": tmp_path / "var/lib/tailscale",
        "data_mount": tmp_path / "mnt/data",
    }
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    mount = unit_dir / tailscale_state.mount_unit_name(str(paths["state_dir"]))
    mount.write_text(tailscale_state.bind_mount_unit(**paths))
    service = unit_dir / "tailscaled.service"
    service.write_text(
        "[Service]\nExecStart=/bin/true\n" + "\n" + tailscale_state.tailscaled_drop_in(paths["state_dir"])
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(mount), str(service)],
        capture_output=True,
        text=True,
        check=False,
        env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr


def _mount_name(paths) -> str:
    return tailscale_state.mount_unit_name(str(paths["state_dir"]))
