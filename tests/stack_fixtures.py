"""A test copy of the image's stack tree: the stacks, images.env, a .env and the agent's per-instance files.

Everything is rendered by the code the image runs (builder's images.env, the agent's .env and
stack files), with paths moved under a temporary directory through the variables the stack
wrapper reads (AI_PLATFORM_ROOT, AI_PLATFORM_ETC, AI_PLATFORM_DATA, AI_PLATFORM_MODELS).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

from builder import images
from firstboot import certificate, custom_services, env, redis_config, stack_config
from firstboot.instance_config import StackSettings

ROOTFS = REPO / "image" / "rootfs"
STACKS_DIR = ROOTFS / "opt/ai-platform/stacks"
CONTRACT_PATH = ROOTFS / "opt/ai-platform/env-contract.json"
WRAPPER = ROOTFS / "opt/ai-platform/bin/ai-platform-stack"
BACKUP = ROOTFS / "opt/ai-platform/bin/ai-platform-backup"
STACKS = sorted(p.parent.name for p in STACKS_DIR.glob("*/compose.yaml"))
APP_SERVICES = ["ollama", "litellm", "anythingllm", "clawdbot", "dify", "n8n", "signal_api"]


@dataclass
class StackTree:
    root: Path  # AI_PLATFORM_ROOT
    etc: Path  # AI_PLATFORM_ETC
    data: Path  # AI_PLATFORM_DATA
    models: Path

    def environ(self) -> dict[str, str]:
        return {
            **os.environ,
            "AI_PLATFORM_ROOT": str(self.root),
            "AI_PLATFORM_ETC": str(self.etc),
            "AI_PLATFORM_DATA": str(self.data),
            "AI_PLATFORM_MODELS": str(self.models),
            # The data folder sits on this machine's own disk, whose fullness is not the platform's:
            # ai-platform-backup's reserve is tested on a filesystem of its own (tests/test_backup_script.py).
            "AI_PLATFORM_BACKUP_RESERVE_PERCENT": "0",
        }

    def stack(self, action: str, name: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.root / "bin/ai-platform-stack"), action, name],
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def env_values(self) -> dict[str, str]:
        return env.read_env_file(self.etc / "stack.env")

    def share_data(self) -> None:
        """Make the data folder a shared mount, as /mnt/data is on a systemd host (its root is shared):
        the apps' rslave bind of the Drive mount needs it. Here the root is private. Undone by
        unshare_data()."""
        subprocess.run(["mount", "--bind", str(self.data), str(self.data)], check=True)
        subprocess.run(["mount", "--make-rshared", str(self.data)], check=True)

    def unshare_data(self) -> None:
        subprocess.run(["umount", "--recursive", "--lazy", str(self.data)], check=False)


def make_tree(base: Path, services=APP_SERVICES, settings: StackSettings | None = None, config=None) -> StackTree:
    """The tree; with a platform `config`, its own services (services.custom) laid in as the bake does
    (and run: they join `services`)."""
    tree = StackTree(base / "opt", base / "etc", base / "data", base / "models")
    rootfs = ROOTFS
    pins = images.load_lock()
    if config is not None:
        from builder import custom_services as laid_in

        rootfs = base / "rootfs"
        shutil.copytree(ROOTFS, rootfs, symlinks=True)
        services = [*services, *laid_in.write_into(rootfs, config)]
        pins += laid_in.pins(config, pins)
    shutil.copytree(rootfs / "opt/ai-platform", tree.root, symlinks=True)
    tree.data.mkdir(parents=True)
    tree.models.mkdir(parents=True)
    # Stand-ins are local images: they cannot carry the real images' digests, so tags only.
    (tree.root / "stacks/images.env").write_text(images.render_images_env(pins, with_digests=False))
    contract = env.load_contract(rootfs / "opt/ai-platform/env-contract.json")
    generated = {v.name: v.prefix + secrets.token_hex(v.bytes) for v in contract if v.source in ("generated", "owner")}
    settings = settings or StackSettings(edge_bind=("127.0.0.1",))
    values = env.build_env(
        contract,
        generated,
        {},
        {
            "hostname": "ai-platform-test",
            "public_url_n8n": "https://127.0.0.1:8446",
            "public_url_dify": "https://127.0.0.1:8445",
            "ollama_keep_alive": settings.keep_alive,
            "ollama_context_length": str(settings.context_length),
            "gdrive_read_only": "true",
        },
    )
    env.write_env(tree.etc / "stack.env", values)
    redis_config.write(tree.etc, values["REDIS_PASSWORD"])
    manifest = custom_services.load_manifest(tree.root / "stacks")
    instance = stack_config.Instance(
        settings,
        list(services),
        values,
        tailnet=False,
        stacks_dir=tree.root / "stacks",
        custom={name: manifest[name] for name in services if name in manifest},
    )
    stack_config.write_stack_files(tree.etc, instance)
    # The edge's certificate and hsts.conf, made as the agent makes them without a tailnet (self-signed).
    wanted = certificate.Wanted("ai-platform-test", public_host="127.0.0.1")
    certificate.install(None, wanted, tree.etc / "tls", base / "volume-tls", lambda warning: None)
    return tree


def compose_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
