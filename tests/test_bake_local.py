"""The real local bake (tests/local_bake.py, shared with the chain test): what it records, its bill
of materials, the cache on a second bake, a failing mirror. The image suite on a booted instance runs
in tests/test_chain_local.py, against the instance a user's launch made of it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO
from local_bake import BAKED_MODELS, needs_local_bake
from moto_server import free_port

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
    assert sorted(m["model"] for m in bom["models"]) == sorted(BAKED_MODELS)
    assert bom["input_hash"] == baked["result"]["input_hash"]
    assert "docker.io" in bom["apt_packages"] and "tailscale" not in bom["apt_packages"]
    assert bom["agent_version"]
    manifest = json.loads((Path(baked["result"]["image"]).parent / "packer-manifest.json").read_text())
    assert manifest["builds"][-1]["custom_data"]["input_hash"] == baked["result"]["input_hash"]


def test_unchanged_inputs_return_the_image_without_building(baked):
    # `cached` and the same disk say no build ran; bench/bake_cache.py measures how long the answer takes.
    result = subprocess.run(baked["command"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["cached"] is True and again["image"] == baked["result"]["image"]


def test_a_failed_bake_names_its_cause_and_keeps_the_current_image(baked, tmp_path):
    """A bake whose provisioning fails (a dead apt mirror) exits 1 naming the setting, keeps the image
    that was current and the failed bake's log, and drops its bulky payload.

    Packer's build here is a stand-in that replays what the real Packer printed when 10-apt.sh met a
    dead mirror (its machine-readable lines, as tests/test_bake_aws.py's failed bake prints them with
    the real Packer, the real script and a real build VM); `version`, `init` and `validate` are the
    real Packer's. A real failed local build would boot the base under TCG for the same lines: about
    three minutes on CI's critical path, for what the AWS bake's failure (on a VM it boots anyway)
    already shows of Packer and the script."""
    dead = f"http://10.0.2.2:{free_port()}/debian"
    config = tmp_path / "platform.yaml"
    config.write_text(baked["config"].read_text().replace("  mirrors:\n", f"  mirrors:\n    apt: {dead}\n"))
    source = "qemu.local"
    exited = "Script exited with non-zero exit status: 1.Allowed exit codes are: [0]"
    replay = "\n".join(
        [
            f"1796590557,,ui,say,==> {source}: Provisioning with shell script: image/provision/10-apt.sh",
            f"1796590644,,ui,error,==> {source}: apt-get update failed: {dead} cannot be reached "
            "(image.mirrors.apt sets a mirror)",
            f"1796590645,,ui,error,Build '{source}' errored after 1 minute 27 seconds: {exited}",
            f"1796590645,{source},error,{exited}",
        ]
    )
    packer = tmp_path / "packer"
    real = shutil.which("packer")
    packer.write_text(
        f'#!/bin/sh\nif [ "$1" = build ]; then\ncat <<\'EOF\'\n{replay}\nEOF\nexit 1\nfi\nexec {real} "$@"\n'
    )
    packer.chmod(0o755)
    bakes = baked["root"] / "state/ai-platform/bakes"
    before = set(bakes.iterdir())
    command = [baked["command"][0], "--config", str(config), *baked["command"][3:], "--force", "--packer", str(packer)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "image.mirrors.apt" in result.stderr and dead in result.stderr
    assert "non-zero exit status" in result.stderr  # the reason, not only the script's last words
    current = json.loads((baked["root"] / "state/ai-platform/images/current.json").read_text())
    assert current["disk"] == baked["result"]["image"], "a failed bake replaced the current image"
    [failed] = set(bakes.iterdir()) - before  # this bake's work folder, its log kept
    assert exited in (failed / "packer.log").read_text()
    assert not (failed / "payload").exists(), "a failed bake kept its payload"
