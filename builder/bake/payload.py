"""What the provisioning installs, laid out on the build host so the image needs no index of its own.

payload/
  rootfs/            image/rootfs, copied as it lands on disk, with the owner's own services
                     (services.custom) laid in by builder/custom_services.py and OpenClaw's
                     plugins by builder/bake/openclaw_plugins.py
  images.env         the stacks' image references, from the lock (by digest)
  images.lock.json   the lock itself (the BOM and the image tests read it)
  models.txt         the Ollama models to bake, one NAME:TAG per line
  wheelhouse/        the agent's wheel and boto3's, for a venv made with --no-index (image.mirrors.wheels)
  docker-compose     the Compose v2 plugin binary the build host runs
  tests/             the image's testinfra suite
  provision/         the provisioning's Python helpers (images, models, bill of materials)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from builder import custom_services, images
from builder.bake import openclaw_plugins
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.source_tree import ROOT, copy_tree

REPO_ROOT = ROOT
COMPOSE_PLUGIN_PLACES = (
    Path.home() / ".docker/cli-plugins/docker-compose",
    Path("/usr/local/lib/docker/cli-plugins/docker-compose"),
    Path("/usr/libexec/docker/cli-plugins/docker-compose"),
)


APT_PACKAGES_FILE = REPO_ROOT / "image" / "provision" / "apt-packages.txt"


def apt_packages() -> tuple[str, ...]:
    """What 10-apt.sh installs from the distribution's archive (image/provision/apt-packages.txt)."""
    lines = APT_PACKAGES_FILE.read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


AGENT_WHEELS_FILE = REPO_ROOT / "image" / "provision" / "agent-wheels.txt"


def wheel_pins() -> list[str]:
    """The agent venv's third-party wheels, pinned exactly (image/provision/agent-wheels.txt): an
    installed builder needs no pytest of its own to bake an image whose suite runs on pytest."""
    lines = AGENT_WHEELS_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def compose_plugin() -> Path | None:
    return next((place for place in COMPOSE_PLUGIN_PLACES if place.exists()), None)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file read 1 MiB at a time (base disks and binaries are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_host_inputs() -> dict:
    """What the build host adds to the image besides the repo's files: part of the input hash."""
    plugin = compose_plugin()
    return {"wheels": wheel_pins(), "compose_plugin": file_sha256(plugin) if plugin else None}


def baked_lock_document(config: PlatformConfig, lock: Path) -> dict:
    """The lock the image gets: the lock's images, and the owner's own services' images joining them
    (their digests as `builder images lock` left them)."""
    return images.with_custom_pins(
        json.loads(lock.read_text(encoding="utf-8")), custom_services.pins(config, images.load_lock(lock))
    )


def baked_pins(config: PlatformConfig, lock: Path) -> list[images.Pin]:
    """Every image the bake would pull, the owner's services' included: what its digest check covers."""
    return images.pins_of(baked_lock_document(config, lock), lock)


def prepare_payload(config: PlatformConfig, work: Path, allow_unresolved: bool, lock: Path | None = None) -> Path:
    payload = work / "payload"
    payload.mkdir()
    shutil.copytree(REPO_ROOT / "image" / "rootfs", payload / "rootfs", symlinks=True)
    custom_services.write_into(payload / "rootfs", config)
    openclaw_plugins.write_into(payload / "rootfs")  # the Signal channel: fetched here, never on an instance
    lock = lock or images.LOCK_PATH
    document = baked_lock_document(config, lock)
    pins = images.pins_of(document, lock)
    (payload / "images.env").write_text(images.render_images_env(pins, allow_unresolved=allow_unresolved))
    images.write_lock_document(payload / "images.lock.json", document)
    (payload / "models.txt").write_text("".join(f"{model}\n" for model in config.ollama.baked))
    build_wheelhouse(payload / "wheelhouse", config.image.mirrors.wheels)
    plugin = compose_plugin()
    if plugin is None:
        raise BuilderError(
            "the Docker Compose v2 plugin is not on this machine (scripts/setup installs it): the image gets "
            f"the build host's copy. Looked in: {', '.join(map(str, COMPOSE_PLUGIN_PLACES))}"
        )
    shutil.copy(plugin, payload / "docker-compose")
    shutil.copytree(REPO_ROOT / "image" / "tests", payload / "tests")
    (payload / "provision").mkdir()
    for helper in (REPO_ROOT / "image" / "provision").glob("*.py"):
        shutil.copy(helper, payload / "provision" / helper.name)
    shutil.copy(APT_PACKAGES_FILE, payload / "provision")
    shutil.copy(REPO_ROOT / "image" / "provision" / "rclone.env", payload / "provision")
    return payload


def build_wheelhouse(wheelhouse: Path, mirror: str | None = None) -> None:
    """The agent (this project, no dependencies), boto3 and the image suite's pytest and testinfra,
    at the versions tested here, as wheels. `mirror` is image.mirrors.wheels: an index URL or a
    directory of wheels (which must also hold setuptools, the agent's build backend)."""
    source = []
    if mirror and mirror.startswith("/"):
        if not Path(mirror).is_dir():
            raise BuilderError(f"image.mirrors.wheels: {mirror} is not a directory of wheels")
        source = ["--no-index", "--find-links", mirror]
    elif mirror:
        source = ["--index-url", mirror]
    # The agent's wheel is this project's, built from a copy of its tree: an installed builder's
    # copy sits in site-packages, where a build must not write (nor in a checkout's tree).
    with tempfile.TemporaryDirectory(prefix="ai-platform-agent-source-") as scratch:
        project = copy_tree(Path(scratch) / "project")
        for arguments in (["--no-deps", str(project)], wheel_pins()):
            result = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", *source, "--wheel-dir", str(wheelhouse), *arguments],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                where = mirror or "pip's index (PIP_INDEX_URL, pip.conf)"
                shown = " ".join(arguments).replace(str(project), "builder's own tree")
                raise BuilderError(
                    f"building the agent's wheelhouse from {where} failed (pip wheel {shown}); "
                    f"image.mirrors.wheels sets another source:\n{result.stderr.strip()[-2000:]}"
                )


def new_ssh_key(path: Path, comment: str) -> str:
    """An ed25519 key pair without passphrase at `path` (and `path`.pub); returns the public key."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def sudo_user_data(user: str, public_key: str) -> str:
    """Cloud-config that creates `user` with password-less sudo, logging in with `public_key` only."""
    return (
        "#cloud-config\n"
        "users:\n"
        f"  - name: {user}\n"
        "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        "    shell: /bin/bash\n"
        f"    ssh_authorized_keys: [{public_key}]\n"
    )


def prepare_local_seed(work: Path) -> dict:
    """A NoCloud seed that creates the build user with a key made for this bake only."""
    seed = work / "seed"
    seed.mkdir()
    key = seed / "id_ed25519"
    (seed / "user-data").write_text(sudo_user_data("packer", new_ssh_key(key, "ai-platform-bake")))
    (seed / "meta-data").write_text(f"instance-id: bake-{work.name}\nlocal-hostname: ai-platform-bake\n")
    return {
        "local_seed_files": [str(seed / "user-data"), str(seed / "meta-data")],
        "ssh_private_key_file": str(key),
    }
