"""The real local bake (tests/local_bake.py, shared with the chain test): what it records, its bill
of materials, the image suite on a booted instance, the cache on a second bake, a failing mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from local_bake import MODELS, needs_local_bake
from moto_server import free_port

from builder.bake.payload import new_ssh_key, sudo_user_data
from builder.local.qemu import make_overlay, make_seed, qemu_command

pytestmark = needs_local_bake


@pytest.fixture(scope="module")
def baked(local_bake):
    return local_bake


def test_the_bake_records_a_current_local_image(baked):
    result = baked["result"]
    assert result["cached"] is False
    disk = Path(result["image"])
    assert disk.exists() and disk.name == "root.qcow2"
    current = json.loads((baked["root"] / "state/ai-platform/images/current.json").read_text())
    assert current["disk"] == str(disk)
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True, text=True).stdout
    )
    assert info["format"] == "qcow2"


def test_the_bill_of_materials_has_every_image_and_model_digest(baked):
    bom = json.loads((Path(baked["result"]["image"]).parent / "bom.json").read_text())
    lock = json.loads(baked["lock"].read_text())["images"]
    by_reference = {image["reference"]: image for image in bom["images"]}
    for pin in lock:
        image = by_reference[f"{pin['repository']}:{pin['tag']}"]
        assert image["locked_digest"] == pin["digest"]
        assert any(d.endswith("@" + pin["digest"]) for d in image["repo_digests"])
    assert [m["model"] for m in bom["models"]] == MODELS
    assert bom["input_hash"] == baked["result"]["input_hash"]
    assert "docker.io" in bom["apt_packages"] and "tailscale" not in bom["apt_packages"]
    assert bom["agent_version"]
    manifest = json.loads((Path(baked["result"]["image"]).parent / "packer-manifest.json").read_text())
    assert manifest["builds"][-1]["custom_data"]["input_hash"] == baked["result"]["input_hash"]


def test_the_image_suite_passes_on_a_booted_instance(baked, tmp_path):
    """The image's own testinfra suite, `--booted`, over SSH (paramiko) against an instance of the baked
    image booted the way `builder launch --target local` boots one (its qemu command, a data disk),
    with a seed that only adds a test user: the first boot must turn the sysprepped image into a
    machine (machine-id, host keys) with Docker and every image intact and no trace of the build."""
    image = json.loads((baked["root"] / "state/ai-platform/images/current.json").read_text())
    key = tmp_path / "id_ed25519"
    user_data = sudo_user_data("tester", new_ssh_key(key, "ai-platform-test"))
    data = tmp_path / "data.img"
    data.write_bytes(b"")
    os.truncate(data, 1 << 30)
    port = free_port()
    command = qemu_command(
        kernel=Path(image["kernel"]),
        initrd=Path(image["initrd"]),
        root=make_overlay(Path(image["disk"]), tmp_path / "root.qcow2"),
        data_disk=data,
        data_serial="vol0a1b2c3d4e5f60718",
        seed=make_seed(tmp_path / "seed.iso", "i-booted-suite", "booted-suite", user_data),
        serial_log=tmp_path / "console.log",
        host_forwards={port: 22},
    )
    vm = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_login(port, key, tmp_path / "console.log")
        testinfra = [f"--hosts=paramiko://tester@127.0.0.1:{port}", f"--ssh-identity-file={key}", "--sudo"]
        suite = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--booted", *testinfra, "image/tests"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        vm.kill()
        vm.wait(30)
    assert suite.returncode == 0, suite.stdout[-6000:]
    print(suite.stdout.strip().splitlines()[-1])


def wait_for_login(port: int, key: Path, console: Path, timeout: float = 600) -> None:
    """SSH answers before cloud-init has added the user's key: wait for a login, not for the port."""
    deadline = time.monotonic() + timeout
    command = ["ssh", "-q", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "tester@127.0.0.1", "true"]
    while time.monotonic() < deadline:
        if subprocess.run(command, capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(3)
    raise AssertionError(f"no SSH login within {timeout:g} s; console:\n{console.read_text(errors='replace')[-3000:]}")


def test_unchanged_inputs_return_the_image_without_building(baked):
    # `cached` and the same disk say no build ran; bench/bake_cache.py measures how long the answer takes.
    result = subprocess.run(baked["command"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["cached"] is True and again["image"] == baked["result"]["image"]


def test_an_unreachable_mirror_fails_naming_it_and_leaves_no_image(baked, tmp_path):
    """The apt mirror is dead: the bake stops at apt with the URL and the setting to change (the first
    fetch of the provisioning, so the test pays for one boot, not a whole bake)."""
    dead = f"http://10.0.2.2:{free_port()}/debian"
    config = tmp_path / "platform.yaml"
    config.write_text(baked["config"].read_text().replace("  mirrors:\n", f"  mirrors:\n    apt: {dead}\n"))
    command = [baked["command"][0], "--config", str(config), *baked["command"][3:], "--force"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 1
    assert "image.mirrors.apt" in result.stderr and dead in result.stderr
    current = json.loads((baked["root"] / "state/ai-platform/images/current.json").read_text())
    assert current["disk"] == baked["result"]["image"], "a failed bake replaced the current image"
    leftovers = subprocess.run(["pgrep", "-f", "qemu-system-x86_64.*packer"], capture_output=True, text=True)
    assert leftovers.stdout == "", "a failed bake left its VM running"
