"""`builder launch --target local`: the test image (tests/vm_image.py) under qemu, launched, followed,
listed, destroyed and launched again on the same data disk; then the data disk deleted on request."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from builder.config.schema import PlatformConfig
from builder.local.debian_base import BaseImage
from builder.local.instances import LocalImage, LocalInstance, register_image


@pytest.fixture
def local_platform(test_image, tmp_path):
    base, raw = test_image
    state_dir = tmp_path / "state"
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {state_dir}, memory_mib: 2048, data_disk_size_gib: 1}}\n"
    )
    config = PlatformConfig.model_validate(
        {"version": 1, "local": {"state_dir": str(state_dir), "memory_mib": 2048, "data_disk_size_gib": 1}}
    )
    assert isinstance(base, BaseImage)
    register_image(config, LocalImage(raw, base.kernel, base.initrd, "raw"))
    yield config
    LocalInstance(config, "alpha").destroy(delete_data=False, log=lambda _line: None)  # never leave a VM running


def uuid_of(disk) -> str:
    return subprocess.run(
        ["blkid", "-p", "-s", "UUID", "-o", "value", str(disk)], capture_output=True, text=True
    ).stdout.strip()


def test_launch_status_destroy_and_relaunch_on_the_same_data_disk(local_platform, builder, monkeypatch):
    first = builder("--json", "launch", "alpha", "--target", "local", "--wait", "--wait-timeout", "400")
    assert first.code == 0, first.err
    launched = json.loads(first.out)
    assert launched["agent_state"] == "done", launched
    assert set(launched["urls"]) == {"8443", "8444", "8445", "8446"}
    assert all(url.startswith("https://127.0.0.1:") for url in launched["urls"].values())

    listed = json.loads(builder("--json", "status", "--target", "local").out)
    assert [(v["name"], v["state"], v["agent_state"]) for v in listed] == [("alpha", "running", "done")]
    again = builder("launch", "alpha", "--target", "local")
    assert again.code == 1 and "already running" in again.err

    destroyed = builder("--json", "destroy", "alpha", "--target", "local")
    assert destroyed.code == 0, destroyed.err
    disk = LocalInstance(local_platform, "alpha").data_disk
    assert json.loads(destroyed.out)["data_disk_state"] == "kept" and disk.exists()
    made = uuid_of(disk)
    assert made  # the agent made the platform's filesystem on the first boot

    second = builder("--json", "launch", "alpha", "--target", "local", "--wait", "--wait-timeout", "400")
    assert second.code == 0, second.err
    relaunched = json.loads(second.out)
    assert relaunched["agent_state"] == "done" and relaunched["instance_id"] != launched["instance_id"]
    assert builder("destroy", "alpha", "--target", "local").code == 0
    assert uuid_of(disk) == made  # the same filesystem: nothing was reformatted

    monkeypatch.setattr("sys.stdin", io.StringIO("alpha\n"))
    deleted = builder("destroy", "alpha", "--target", "local", "--delete-data")
    assert deleted.code == 0, deleted.err
    assert not disk.exists()


def test_no_local_image_is_a_clear_error(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'empty'}}}\n")
    result = builder("launch", "alpha", "--target", "local")
    assert result.code == 1
    assert "no local image of ai-platform yet" in result.err and "builder bake --target local" in result.err
