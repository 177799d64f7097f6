"""Platform instances on this machine, under qemu: the local target of launch, status and destroy.

Everything lives under local.state_dir/<platform>/:

    images/current.json       the image `builder bake --target local` produced (disk, kernel, initrd)
    data/<name>.img           each instance's data disk: kept across destroy and launch, like the EBS volume
    data/<name>.replaced-*    a data disk a restore swapped out: kept, never deleted (with its record)
    snapshots/<name>/         snapshots of the data disk (builder/local/data_snapshots.py)
    instances/<name>/         one running instance: root overlay, seed, console.log, state.json

qemu runs detached; its monitor socket sits in the temp dir (a UNIX socket path holds 107 bytes).

The data disk's serial is derived from the platform and instance name, EBS-shaped (vol + 17 hex), so
the agent finds the same disk for every launch of the same name, as it finds its volume on AWS.
Edge ports are forwarded from local.forward_address (loopback by default) only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder import owner_credentials
from builder.config.schema import EdgeService, PlatformConfig
from builder.errors import BuilderError
from builder.local import secrets as local_secrets
from builder.local.accelerator import resolve as resolve_accelerator
from builder.local.paths import platform_dir, private_dir, private_file
from builder.local.qemu import GUEST_ADDRESS, make_overlay, make_seed, qemu_command
from builder.userdata import hostname_for, instance_document, render_user_data

# The login cloud-init gives the keys of ssh.authorized_keys: the base distribution's default user.
DEFAULT_USERS = {"debian-12": "debian", "ubuntu-22.04": "ubuntu"}
# A clean shutdown stops the stacks in reverse start order: the rest side by side, then data (the
# longest chain is three: Clawdbot, the Signal API, data), each within its unit's TimeoutStopSec (90 s).
# The wait covers a longer chain (the owner's services with needs).
SHUTDOWN_WAIT_SECONDS = 600
SUMMARY = re.compile(r"ai-platform firstboot: (done|degraded|failed)\b[^\r\n]*")
HEALTH = re.compile(r"ai-platform health: [^\r\n]*")
BACKUP = re.compile(r"ai-platform backup: [^\r\n]*")
DISK = re.compile(r"ai-platform disk: [^\r\n]*")
CERTIFICATE = re.compile(r"ai-platform certificate: [^\r\n]*")
# The agent's line for each finished step (firstboot.framework) and each stack that became healthy
# (firstboot.services), on the console as on the journal.
STEP = re.compile(
    r"firstboot: (step (\S+): (ok in [\d.]+ s|failed after [\d.]+ s|already done)|healthy: \S+ after \d+ s)[^\r\n]*"
)


@dataclass(frozen=True)
class LocalImage:
    """A bootable local image: booted with `kernel` and `initrd` from outside (the Debian base has no
    boot loader), or by its own boot loader when they are None (the Ubuntu cloud image)."""

    disk: Path
    kernel: Path | None
    initrd: Path | None
    disk_format: str = "qcow2"

    def to_json(self) -> dict:
        def text(path: Path | None) -> str | None:
            return str(path) if path else None

        fields = {"disk": str(self.disk), "kernel": text(self.kernel), "initrd": text(self.initrd)}
        return {**fields, "disk_format": self.disk_format}

    def missing(self) -> Path | None:
        """The first file of this image that is gone, or None when it is whole."""
        return next((path for path in (self.disk, self.kernel, self.initrd) if path and not path.exists()), None)

    @classmethod
    def from_json(cls, fields: dict) -> LocalImage:
        def path(key: str) -> Path | None:
            return Path(fields[key]) if fields.get(key) else None

        return cls(Path(fields["disk"]), path("kernel"), path("initrd"), fields.get("disk_format", "qcow2"))


def register_image(config: PlatformConfig, image: LocalImage) -> Path:
    """Record the image new local instances boot (the local bake calls this)."""
    record = platform_dir(config) / "images" / "current.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(image.to_json(), indent=2))
    return record


def current_image(config: PlatformConfig) -> LocalImage:
    record = platform_dir(config) / "images" / "current.json"
    if not record.exists():
        raise BuilderError(f"no local image of {config.name} yet ({record}): run `builder bake --target local`")
    image = LocalImage.from_json(json.loads(record.read_text()))
    if image.missing():
        raise BuilderError(f"the local image names {image.missing()}, which is gone: bake it again")
    return image


def volume_id_for(config: PlatformConfig, name: str) -> str:
    return "vol-" + hashlib.sha256(f"{config.name}/{name}".encode()).hexdigest()[:17]


def edge_ports(config: PlatformConfig) -> list[int]:
    ports = [config.edge.port]
    for service in config.services.seed().values():
        if isinstance(service, EdgeService) and service.enabled:
            ports.append(service.edge_port)
    ports += [s.edge_port for _, s in sorted(config.services.custom.items()) if s.enabled and s.edge_port]
    return ports


@dataclass
class LocalInstance:
    config: PlatformConfig
    name: str

    @property
    def directory(self) -> Path:
        return platform_dir(self.config) / "instances" / self.name

    @property
    def data_disk(self) -> Path:
        return platform_dir(self.config) / "data" / f"{self.name}.img"

    @property
    def console(self) -> Path:
        return self.directory / "console.log"

    @property
    def monitor(self) -> Path:
        # A UNIX socket path holds at most 107 bytes: a short name in the temp dir, unique per instance dir.
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"ai-platform-{digest}.monitor"

    @property
    def qmp(self) -> Path:
        """qemu's JSON monitor (QMP), beside the human one: what a live snapshot of the data disk talks to."""
        return self.monitor.with_suffix(".qmp")

    def state(self) -> dict | None:
        path = self.directory / "state.json"
        return json.loads(path.read_text()) if path.exists() else None

    def running(self) -> bool:
        state = self.state()
        return bool(state) and _alive(state["pid"])

    def agent_report(self) -> tuple[str, str]:
        """The agent's last summary line on the console: (state, line), or ("booting", "")."""
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        lines = list(SUMMARY.finditer(text))
        return (lines[-1].group(1), lines[-1].group(0)) if lines else ("booting", "")

    def image_record(self) -> dict | None:
        """The image this instance was last started from (kept across destroy, for `upgrade`)."""
        path = self.directory / "image.json"
        return json.loads(path.read_text()) if path.exists() else None

    def launch(self, log: Callable[[str], None], image: LocalImage | None = None) -> dict:
        """Start the instance from `image` (default: the current one) on its data disk."""
        if self.running():
            raise BuilderError(f"{self.name} is already running (pid {self.state()['pid']}); destroy it first")
        from builder.bake.local_base import cache_dir

        image = image or current_image(self.config)
        settings = self.config.local
        # The disks hold the owner's secrets, databases and keys: 0600 in 0700 folders, from the
        # platform's folder down (made so here too for those an older builder left 0755/0644).
        private_dir(platform_dir(self.config))
        private_dir(self.directory)
        private_dir(self.data_disk.parent)
        if not self.data_disk.exists():
            descriptor = os.open(self.data_disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.truncate(settings.data_disk_size_gib * 1024**3)
            log(f"created data disk {self.data_disk} ({settings.data_disk_size_gib} GiB)")
        else:
            private_file(self.data_disk)
            log(f"reusing data disk {self.data_disk}")
        volume_id = volume_id_for(self.config, self.name)
        instance_id = f"local-{self.name}-{int(time.time())}"  # a new instance at every launch, as on EC2
        root = self.directory / "root.qcow2"
        root.unlink(missing_ok=True)
        private_file(make_overlay(image.disk, root, image.disk_format))
        ports = {_free_port(settings.forward_address): guest for guest in edge_ports(self.config)}
        # No tailnet can be reached from a local VM: its edge listens on the guest's NIC, where qemu
        # delivers the forwarded loopback ports, and its links and redirects name those ports.
        public = {"host": settings.forward_address, "ports": {str(guest): host for host, guest in ports.items()}}
        credentials = owner_credentials.ensure_local(self.config, self.name)
        rclone = local_secrets.rclone_config_path(self.config)  # Drive: only when its config is stored
        fw_cfg = {owner_credentials.FW_CFG_NAME: credentials}
        if rclone.exists() and self.config.services.gdrive.enabled:
            fw_cfg[local_secrets.RCLONE_FW_CFG] = rclone
        document = instance_document(
            self.config,
            self.name,
            "local",
            volume_id=volume_id,
            tailnet=False,
            edge_bind=[GUEST_ADDRESS],
            public=public,
            owner_credentials={"fw_cfg": owner_credentials.FW_CFG_NAME},
            gdrive_fw_cfg=local_secrets.RCLONE_FW_CFG if local_secrets.RCLONE_FW_CFG in fw_cfg else False,
        )
        seed = make_seed(
            self.directory / "seed.iso",
            instance_id,
            hostname_for(self.config, self.name),
            render_user_data(self.config, document).mime,
        )
        # SSH only where the config authorizes keys (as on AWS, where ssh_ingress_cidrs opens it).
        ssh_port = _free_port(settings.forward_address) if self.config.ssh.authorized_keys else None
        forwards = {**ports, **({ssh_port: 22} if ssh_port else {})}
        self.console.unlink(missing_ok=True)
        command = qemu_command(
            kernel=image.kernel,
            initrd=image.initrd,
            root=root,
            data_disk=self.data_disk,
            data_serial="vol" + volume_id[4:],
            seed=seed,
            serial_log=self.console,
            accelerator=resolve_accelerator(settings.accelerator, image.kernel, cache_dir(), log),
            cpus=settings.cpus,
            memory_mib=settings.memory_mib,
            host_forwards=forwards,
            forward_address=settings.forward_address,
            monitor=self.monitor,
            qmp=self.qmp,
            fw_cfg=fw_cfg,
        )
        with open(self.directory / "qemu.log", "wb") as qemu_log:
            process = subprocess.Popen(command, stdout=qemu_log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(1)
        if process.poll() is not None:
            raise BuilderError(f"qemu exited at once: {(self.directory / 'qemu.log').read_text().strip()[-500:]}")
        state = {
            "instance_id": instance_id,
            "pid": process.pid,
            "volume_id": volume_id,
            "ports": {str(guest): host for host, guest in ports.items()},
            "ssh_port": ssh_port,
            "ssh_user": DEFAULT_USERS[settings.base_image] if ssh_port else None,
            "launched_at": time.time(),
        }
        (self.directory / "state.json").write_text(json.dumps(state, indent=2))
        (self.directory / "image.json").write_text(json.dumps(image.to_json(), indent=2))
        log(f"started {instance_id} (qemu pid {process.pid}); console: {self.console}")
        return state

    def health(self) -> str:
        """The instance's last health line on the console (firstboot health), "-" before any."""
        return self._last_console_line(HEALTH)

    def backup(self) -> str:
        """The instance's last line on its on-volume backups (firstboot health), "-" before any."""
        return self._last_console_line(BACKUP)

    def disk(self) -> str:
        """The instance's last line on its data volume's room (firstboot health), "-" before any."""
        return self._last_console_line(DISK)

    def certificate(self) -> str:
        """The instance's last line on the edge's certificate (firstboot), "-" before any."""
        return self._last_console_line(CERTIFICATE)

    def _last_console_line(self, pattern: re.Pattern) -> str:
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        lines = pattern.findall(text)
        return lines[-1].strip() if lines else "-"

    def agent_steps(self) -> list[str]:
        """The agent's step lines on the console so far, in order."""
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        return [match.group(0) for match in STEP.finditer(text)]

    def wait(
        self,
        timeout: float,
        on_change: Callable[[str, str], None],
        poll: float = 2,
        on_step: Callable[[str], None] = lambda _line: None,
    ) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        seen, steps_seen = None, 0
        while True:
            steps = self.agent_steps()
            for line in steps[steps_seen:]:
                on_step(line)
            steps_seen = len(steps)
            state, line = self.agent_report()
            if (state, line) != seen:
                on_change(state, line)
                seen = (state, line)
            if state in ("done", "degraded", "failed"):
                return state, line
            if not self.running():
                raise BuilderError(f"{self.name} stopped before its agent reported; see {self.console}")
            if time.monotonic() >= deadline:
                raise BuilderError(f"{self.name} did not report within {timeout:g} s; see {self.console}")
            time.sleep(poll)

    def destroy(
        self, delete_data: bool, log: Callable[[str], None], shutdown_wait: float = SHUTDOWN_WAIT_SECONDS
    ) -> str:
        """Power the instance off (cleanly when the guest lets it); returns how: "clean", "forced"
        or "not running"."""
        state = self.state()
        how = "not running"
        if state and self.running():
            how = self._power_down(state["pid"], log, shutdown_wait)
        for leftover in ("root.qcow2", "seed.iso", "state.json"):
            (self.directory / leftover).unlink(missing_ok=True)
        self.monitor.unlink(missing_ok=True)
        self.qmp.unlink(missing_ok=True)
        if delete_data and self.data_disk.exists():
            self.data_disk.unlink()
            log(f"deleted data disk {self.data_disk}")
        if delete_data:  # the owner's logins go with the data they open
            owner_credentials.local_path(self.config, self.name).unlink(missing_ok=True)
        return how

    def _power_down(self, pid: int, log: Callable[[str], None], wait: float) -> str:
        """An ACPI power-off: the guest's systemd stops the stacks (compose down), unmounts the data
        disk and powers off. Only a guest that has not finished within `wait` is killed."""
        started = time.monotonic()
        try:
            with socket.socket(socket.AF_UNIX) as connection:
                connection.settimeout(30)
                connection.connect(str(self.monitor))
                # The command only counts once the monitor has greeted us and has run it: a command
                # sent before its prompt, on a connection closed at once, was lost (the guest ran on
                # and was killed 600 s later).
                _read_until(connection, b"(qemu) ")
                connection.sendall(b"system_powerdown\n")
                _read_until(connection, b"(qemu) ")
            log(f"asked {self.name} to shut down (stacks stop first; waiting up to {wait:g} s)")
        except OSError as exc:  # nobody can ask this guest to shut down: waiting would change nothing
            wait = 0
            log(f"the qemu monitor {self.monitor} did not answer ({exc})")
        next_note = 30.0
        while time.monotonic() - started < wait:
            if not _alive(pid):
                log(f"shut down cleanly in {time.monotonic() - started:.0f} s (pid {pid})")
                return "clean"
            if time.monotonic() - started >= next_note:
                log(f"still shutting down after {next_note:.0f} s")
                next_note += 30
            time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        _alive(pid)  # reap it
        log(f"FORCED: killed qemu (pid {pid}) after {wait:g} s without a clean shutdown; stacks may not have stopped")
        return "forced"


def _alive(pid: int) -> bool:
    """Whether qemu still runs; reaps it when this process started it (a zombie is not alive)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def _read_until(connection: socket.socket, marker: bytes) -> bytes:
    """Read from the monitor until `marker` (its prompt); OSError (a timeout too) when it never comes."""
    seen = b""
    while marker not in seen:
        chunk = connection.recv(4096)
        if not chunk:
            raise OSError("the monitor closed the connection")
        seen += chunk
    return seen
