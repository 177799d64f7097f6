"""One real local bake per test session, shared by every test that needs the baked image: the bake's
own checks (test_bake_local.py), the booted image suite and the whole chain (test_chain_local.py).

Packer 1.6.6's qemu builder (TCG) runs the whole provisioning on the Debian 12 base. Its sources run
on loopback (tests/bake_sources.py): Debian's docker-registry holding the runnable stand-ins of
tests/standins for every locked image (the real images cannot be pulled here), and an Ollama
registry stand-in for the models. The guest reaches both through qemu's user network (10.0.2.2 is
the host's loopback). Debian's archive is reached for real. Tailscale's repository is out of reach:
mirrors.tailscale_apt is none, and the image says so in its BOM; so is downloads.rclone.org:
mirrors.rclone is distribution (Debian's rclone).

The owner adds a service from the catalogue as a user does: `builder service add searxng`, then
`builder images lock` (against the loopback registry, holding its stand-in under the template's
repository and tag), then the bake. The chain test's first launch does not run it yet (its config
is the one from before the `service add`); its upgrade does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from bake_sources import ModelRegistry, Registry, stand_in_lock
from measured import say

from builder.config.schema import PlatformConfig

REPO = Path(__file__).resolve().parent.parent
MODELS = ["tinyllama:1b"]
ADDED_SERVICE = "searxng"  # from the catalogue (builder/service_templates.py), added before the bake
# What the image holds: the chat models and the default embedding model (ollama.embedding_model).
BAKED_MODELS = [*MODELS, PlatformConfig(version=1).ollama.embedding_model]
TOOLS = ("packer", "qemu-system-x86_64", "docker-registry", "mmdebstrap", "docker")

needs_local_bake = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (scripts/system-packages.txt) and a running dockerd",
)


def platform_yaml(root: Path, registry_port: int, models_port: int) -> str:
    """The bake's config; a launch of the baked image extends it (same name, state dir and models)."""
    return (
        # Stand-ins, not the real images, run in its instances: 4 GiB is enough (the default fits the real ones).
        f"version: 1\nlocal:\n  state_dir: {root / 'state'}\n  memory_mib: 4096\n  data_disk_size_gib: 4\n"
        f"ollama:\n  models: {json.dumps(MODELS)}\n"
        "image:\n  mirrors:\n"
        f"    registry: http://10.0.2.2:{registry_port}\n"
        f"    models: http://10.0.2.2:{models_port}\n"
        # The test's own registries, plain http on the host's loopback (no certificate to make): said so.
        "    allow_insecure_http: true\n"
        "    tailscale_apt: none\n"
        # downloads.rclone.org is out of reach here: Debian's rclone (1.60) stands in for the pinned one.
        "    rclone: distribution\n"
    )


def add_service(builder: str, config: Path, lock: Path, registry: Registry, models: ModelRegistry) -> None:
    """`builder service add` and `builder images lock`, as the owner runs them; the template's image
    is a stand-in pushed under its own repository and tag (no registry here holds the real one). The
    lock records the models from the same stand-in the guest fetches them from (host side: loopback)."""
    from standins.images import build_standins

    from builder import custom_services
    from builder.config.loader import load_config
    from builder.images import load_lock

    def run(*args: str) -> None:
        result = subprocess.run([builder, "--config", str(config), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"builder {' '.join(args)}: {result.stdout}{result.stderr}"

    run("service", "add", ADDED_SERVICE)
    [pin] = custom_services.pins(load_config(config).config, load_lock(lock))
    assert pin.digest is None  # the lock has not heard of it yet
    build_standins([pin])
    registry.push_local(pin.reference(with_digest=False), pin.repository.split("/", 1)[1], pin.tag)
    run(
        "images", "lock", "--lock", str(lock), "--registry", f"{pin.repository.split('/')[0]}={registry.url}",
        "--registry", f"registry.ollama.ai={models.url}",
    )  # fmt: skip


def bake(root: Path):
    """Bake once under `root`; yields what the tests read: the config, the lock, the command and
    builder's JSON result. The sources stay up until the session ends."""
    registry = Registry(root)
    models = ModelRegistry(BAKED_MODELS)
    builder = str(REPO / ".venv/bin/builder")
    try:
        lock = stand_in_lock(registry, REPO / "image/images.lock.json", root / "images.lock.json")
        config = root / "platform.yaml"
        before_service = platform_yaml(root, registry.port, models.port)
        config.write_text(before_service)
        add_service(builder, config, lock, registry, models)
        command = [builder, "--config", str(config), "--json", "bake", "--target", "local"]
        command += ["--lock", str(lock)]
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-5000:]
        say(f"local bake: {seconds:.0f} s")
        yield {
            "root": root,
            "config": config,
            "config_before_service": before_service,
            "lock": lock,
            "command": command,
            "result": json.loads(result.stdout),
            "seconds": seconds,
        }
    finally:
        registry.stop()
        models.stop()
