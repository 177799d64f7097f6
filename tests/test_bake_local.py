"""A real local bake: Packer 1.6.6's qemu builder (TCG) on the Debian 12 base, the whole provisioning,
the testinfra image suite inside the build, then the cache on a second bake.

Sources on loopback (tests/bake_sources.py): Debian's docker-registry holding small stand-ins for
every locked image (the real images cannot be pulled here), and an Ollama registry stand-in for
the models. The guest reaches both through qemu's user network (10.0.2.2 is the host's loopback).
Debian's archive is reached for real. Tailscale's repository is out of reach: mirrors.tailscale_apt
is none, and the image says so in its BOM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from bake_sources import ModelRegistry, Registry, stand_in_lock
from conftest import REPO
from moto_server import free_port

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("packer", "qemu-system-x86_64", "docker-registry", "mmdebstrap")),
    reason="needs packer, qemu, docker-registry and mmdebstrap (scripts/system-packages.txt)",
)
MODELS = ["tinyllama:1b"]


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    root = tmp_path_factory.mktemp("bake")
    registry = Registry(root)
    models = ModelRegistry(MODELS)
    try:
        lock = stand_in_lock(registry, REPO / "image/images.lock.json", root / "images.lock.json")
        config = root / "platform.yaml"
        config.write_text(
            f"version: 1\nlocal:\n  state_dir: {root / 'state'}\nollama:\n  models: {json.dumps(MODELS)}\n"
            "image:\n  mirrors:\n"
            f"    registry: http://10.0.2.2:{registry.port}\n"
            f"    models: http://10.0.2.2:{models.port}\n"
            "    tailscale_apt: none\n"
        )
        command = [str(REPO / ".venv/bin/builder"), "--config", str(config), "--json", "bake", "--target", "local"]
        command += ["--lock", str(lock)]
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-5000:]
        print(f"local bake: {seconds:.0f} s")
        yield {"root": root, "config": config, "lock": lock, "command": command, "result": json.loads(result.stdout)}
    finally:
        registry.stop()
        models.stop()


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
