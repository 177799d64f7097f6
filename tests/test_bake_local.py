"""The real local bake (tests/local_bake.py, shared with the chain test): what it records, its bill
of materials, the cache on a second bake, a failing mirror. The image suite on a booted instance runs
in tests/test_chain_local.py, against the instance a user's launch made of it."""

from __future__ import annotations

import json
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
