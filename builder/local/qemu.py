"""qemu for the local target: the command that boots an image, its seed and its disks.

TCG unless the config says KVM (KVM hangs on some machines, these among them). The root disk is a
copy-on-write overlay of the image; the data disk carries an EBS-shaped serial so the agent finds
it as it does on AWS; networking is user-mode with restrict=on: the guest reaches nothing, except
loopback services forwarded in (`guest_forwards`) and edge ports forwarded out (`host_forwards`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# The address qemu's user-mode network gives the guest (its built-in DHCP server starts at .15):
# host forwards (hostfwd) arrive there, so the edge must listen on it.
GUEST_ADDRESS = "10.0.2.15"
# The data disk's drive id: its name on qemu's monitors (a live snapshot backs it up by this name).
DATA_DRIVE = "data"


def make_seed(path: Path, instance_id: str, hostname: str, user_data: str) -> Path:
    """A NoCloud seed (an ISO labelled cidata), made by cloud-localds."""
    work = path.parent / f"{path.stem}-seed"
    work.mkdir(parents=True, exist_ok=True)
    (work / "user-data").write_text(user_data)
    (work / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
    subprocess.run(
        ["cloud-localds", str(path), str(work / "user-data"), str(work / "meta-data")], check=True, capture_output=True
    )
    return path


def make_overlay(base: Path, path: Path, backing_format: str = "qcow2") -> Path:
    """A copy-on-write disk over `base`: an instance's root disk; `base` never changes."""
    command = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", backing_format, str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path


def qemu_command(
    *,
    kernel: Path | None,
    initrd: Path | None,
    root: Path,
    data_disk: Path,
    data_serial: str,
    seed: Path,
    serial_log: Path,
    accelerator: str = "tcg",
    cpus: int = 2,
    memory_mib: int = 2048,
    guest_forwards: dict[str, int] | None = None,
    host_forwards: dict[int, int] | None = None,
    forward_address: str = "127.0.0.1",
    kernel_args: str = "",
    no_reboot: bool = False,
    monitor: Path | None = None,
    qmp: Path | None = None,
    fw_cfg: dict[str, Path] | None = None,
) -> list[str]:
    """`kernel`/`initrd`: booted from outside with `kernel_args`; None: the root disk's boot loader.
    `guest_forwards`: guest "ip:port" -> a port on the host's loopback (one socat per connection; a
    tcp chardev would carry a single connection). `host_forwards`: host port -> guest port."""
    if kernel is None and kernel_args:
        raise ValueError("kernel_args need a kernel booted from outside")
    netdev = "user,id=net0,restrict=on"
    netdev += "".join(
        f",guestfwd=tcp:{guest}-cmd:socat STDIO TCP:127.0.0.1:{port}" for guest, port in (guest_forwards or {}).items()
    )
    netdev += "".join(
        f",hostfwd=tcp:{forward_address}:{host}-:{guest}" for host, guest in (host_forwards or {}).items()
    )
    boot = []
    if kernel is not None:
        boot = [
            ("-kernel", str(kernel)),
            ("-initrd", str(initrd)),
            ("-append", f"root=LABEL=root rw console=ttyS0 systemd.show_status=false {kernel_args}".strip()),
        ]
    options = [
        ("-accel", accelerator),
        ("-m", str(memory_mib)),
        ("-smp", str(cpus)),
        *boot,
        ("-drive", f"file={root},if=none,id=root,format=qcow2"),
        # Booted from outside, the kernel holds boot index 0; otherwise the root disk's boot loader does.
        ("-device", "virtio-blk-pci,drive=root" + (",bootindex=0" if kernel is None else "")),
        ("-drive", f"file={data_disk},if=none,id={DATA_DRIVE},format=raw"),
        ("-device", f"virtio-blk-pci,drive={DATA_DRIVE},serial={data_serial}"),
        ("-drive", f"file={seed},if=virtio,format=raw,readonly=on"),
        ("-netdev", netdev),
        ("-device", "virtio-net-pci,netdev=net0"),
        # The host's entropy for the guest's kernel: without it, under TCG, a boot could spin for
        # minutes in the kernel's jitter entropy before its random pool was ready (a soft lockup in
        # systemd-random-seed, seen in CI).
        ("-object", "rng-random,id=rng0,filename=/dev/urandom"),
        ("-device", "virtio-rng-pci,rng=rng0"),
        ("-serial", f"file:{serial_log}"),
    ]
    if monitor is not None:
        options.append(("-monitor", f"unix:{monitor},server,nowait"))
    if qmp is not None:  # the JSON monitor: block jobs a program follows (a live snapshot of the data disk)
        options.append(("-qmp", f"unix:{qmp},server=on,wait=off"))
    # Files for the guest outside its disks and seed (the owner's credentials): root reads them at
    # /sys/firmware/qemu_fw_cfg/by_name/NAME/raw. Never in the seed, which is user-data.
    options += [("-fw_cfg", f"name={name},file={path}") for name, path in (fw_cfg or {}).items()]
    command = ["qemu-system-x86_64", "-nographic", "-nodefaults"] + (["-no-reboot"] if no_reboot else [])
    for option in options:
        command.extend(option)
    return command
