"""A machine for the agent's tests: every path of `agent.Paths` under one temporary directory.

The data disk is a real sparse image file that blkid and mkfs.ext4 work on; /sys/block is laid
out file for file as the kernel shows a virtio disk (no disk can be hot-plugged into this test
machine). systemd as PID 1 cannot run inside the test process: `SystemdStandIn` records what the
agent asks of it. The VM boot test runs the real systemd.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from firstboot import agent, storage
from firstboot.platform import Platform

# The .env contract the image ships (issue #3's stacks read every variable of it).
OWNER_FW_CFG = "opt/ai-platform/owner-credentials"
OWNER = {
    v["name"]: v.get("prefix", "") + f"owner-{v['name'].lower()}"
    for v in json.loads((Path(__file__).parents[1] / "image/rootfs/opt/ai-platform/env-contract.json").read_text())[
        "variables"
    ]
    if v["source"] == "owner"
}
CONTRACT = json.loads((Path(__file__).parents[1] / "image/rootfs/opt/ai-platform/env-contract.json").read_text())


class SystemdStandIn:
    """Records what the agent asks; a started target's stack units turn active after `polls_to_active`
    looks, except those named in `failing` (failed), `stuck` (activating for ever) or `stranded`
    (inactive until started on their own: their start job failed on a dependency)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.polls_to_active = 2
        self.failing: set[str] = set()
        self.stuck: set[str] = set()
        self.stranded: set[str] = set()
        self.condition_unmet: set[str] = set()
        self._looks: dict[str, int] = {}
        self.waited_for: dict[str, bool] = {}

    def daemon_reload(self) -> None:
        self.calls.append(("daemon-reload",))

    def start(self, unit: str, wait: bool = True) -> None:
        self.calls.append(("start", unit))
        self.waited_for[unit] = wait

    def stop(self, unit: str) -> None:
        self.calls.append(("stop", unit))

    def restart(self, unit: str) -> None:
        self.calls.append(("restart", unit))

    def condition_failed(self, unit: str) -> bool:
        return unit in self.condition_unmet

    def job_queued(self, unit: str) -> bool:
        return False  # a stranded unit has none; the others are never inactive once the target started

    def show(self, unit: str, name: str) -> str:
        return ""  # no unit has a recorded activation: firstboot/platform_resume.py leaves them be

    def active_state(self, unit: str) -> str:
        if ("start", "ai-platform.target") not in self.calls:
            return "inactive"
        if unit in self.failing:
            return "failed"
        if unit in self.condition_unmet:
            return "inactive"
        if unit in self.stranded and ("start", unit) not in self.calls:
            return "inactive"
        self._looks[unit] = self._looks.get(unit, 0) + 1
        if unit in self.stuck or self._looks[unit] < self.polls_to_active:
            return "activating"
        return "active"


class Machine:
    def __init__(self, root: Path, disk_dir: Path | None = None, data_dir: Path | None = None):
        self.root = root
        self.disk_dir = disk_dir or root / "disks"
        self.systemd = SystemdStandIn()
        self.edge_reloads = 0  # the certificate changed while the edge ran (docker exec … nginx -s reload)
        self.paths = agent.Paths(
            instance_config=root / "etc/ai-platform/instance.json",
            cloud_init_data=root / "run/cloud-init/instance-data.json",
            state_dir=root / "var/lib/ai-platform",
            sys_block=root / "sys/block",
            dev_dir=self.disk_dir,
            systemd_dir=root / "etc/systemd/system",
            data_mount=data_dir or root / "mnt/data",
            env_contract=root / "opt/ai-platform/env-contract.json",
            env_file=root / "etc/ai-platform/stack.env",
            tls_dir=root / "etc/ai-platform/tls",
            tailscale_state=root / "var/lib/tailscale",
            etc_dir=root / "etc/ai-platform",
            stacks_dir=Path(__file__).parents[1] / "image/rootfs/opt/ai-platform/stacks",
            fw_cfg_dir=root / "sys/firmware/qemu_fw_cfg/by_name",
        )
        self.paths.env_contract.parent.mkdir(parents=True, exist_ok=True)
        self.paths.env_contract.write_text(json.dumps(CONTRACT))
        self.paths.data_mount.mkdir(parents=True, exist_ok=True)
        self.owner_credentials(OWNER)

    def settings(self, **overrides) -> agent.Settings:
        values = {
            "paths": self.paths,
            "device_timeout": 2,
            "imds_deadline": 5,
            "attach_timeout": 10,
            "services_timeout": 2,
            "poll_interval": 0.01,
            "make_platform": lambda config: Platform(config, systemd=self.systemd),
            "edge_reload": self._reload_edge,
        }
        values.update(overrides)
        return agent.Settings(**values)

    def _reload_edge(self) -> str:
        self.edge_reloads += 1
        return "the edge reloaded (stand-in)"

    def disk(self, volume_id: str, name: str = "vdb", size: int = 64 * 1024 * 1024) -> Path:
        """A data disk with the serial EBS would show for `volume_id`."""
        device = self.disk_dir / name
        if not device.exists():
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            with open(device, "wb") as handle:
                handle.truncate(size)
        entry = self.paths.sys_block / name
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "serial").write_text(storage.volume_serial(volume_id) + "\n")
        return device

    def instance_config(self, **fields) -> None:
        document = {
            "version": 1,
            "platform": "ai-platform",
            "instance": "alpha",
            "target": "local",
            "region": "us-east-1",
            "data_volume": {"id": "vol-0123456789abcdef0"},
            "tailscale": None,
            "providers": {},
            "services": ["data", "ollama", "litellm"],
            "owner_credentials": {"fw_cfg": OWNER_FW_CFG},
        }
        document.update(fields)
        self.paths.instance_config.parent.mkdir(parents=True, exist_ok=True)
        self.paths.instance_config.write_text(json.dumps(document))

    def owner_credentials(self, values: dict[str, str]) -> None:
        """What qemu's fw_cfg shows the guest: the owner's credentials builder made."""
        raw = self.paths.fw_cfg_dir / OWNER_FW_CFG / "raw"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(values))

    def cloud_init(self, instance_id: str) -> None:
        self.paths.cloud_init_data.parent.mkdir(parents=True, exist_ok=True)
        self.paths.cloud_init_data.write_text(
            json.dumps({"v1": {"instance_id": instance_id, "availability_zone": None, "region": None}})
        )

    def status(self) -> dict:
        return json.loads(self.paths.status.read_text())

    def env(self) -> dict[str, str]:
        lines = self.paths.env_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def secrets(self) -> str:
        return (self.paths.data_mount / "platform" / "secrets.env").read_text()


def filesystem_uuid(device: Path) -> str | None:
    result = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(device)], capture_output=True, text=True)
    return result.stdout.strip() or None
