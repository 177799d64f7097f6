"""Local qemu VMs for end-to-end tests: TCG only (KVM hangs on these machines), no network.

A VM boots the image's kernel and initrd directly, its root disk a copy-on-write overlay of the
image, a data disk with an EBS-shaped serial, and a NoCloud seed. It can reach nothing: user-mode
networking with restrict=on. Its serial console goes to a file that tests read.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPORT_BEGIN = "AI-PLATFORM-TEST-REPORT-BEGIN"
REPORT_END = "AI-PLATFORM-TEST-REPORT-END"


def make_seed(path: Path, instance_id: str, hostname: str, user_data: str) -> Path:
    """A NoCloud seed (an ISO labelled cidata), as cloud-localds makes it."""
    work = path.parent / f"{path.stem}-seed"
    work.mkdir(parents=True, exist_ok=True)
    (work / "user-data").write_text(user_data)
    (work / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
    subprocess.run(
        ["cloud-localds", str(path), str(work / "user-data"), str(work / "meta-data")], check=True, capture_output=True
    )
    return path


def make_overlay(base: Path, path: Path, backing_format: str = "qcow2") -> Path:
    """A copy-on-write disk over `base`: the instance's root disk; `base` never changes."""
    command = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", backing_format, str(path)]
    subprocess.run(command, check=True)
    return path


def boot(
    *,
    kernel: Path,
    initrd: Path,
    root: Path,
    data_disk: Path,
    data_serial: str,
    seed: Path,
    serial_log: Path,
    forwards: dict[str, int] | None = None,
    timeout: float = 600,
) -> str:
    """Boot until the guest powers itself off; return its serial console output.

    `forwards` maps a guest address ("10.0.2.100:80") to a port on the host's loopback: the only
    places the guest can reach. Each guest connection runs its own socat (a `tcp:` chardev would
    carry a single connection, opened when qemu starts).
    """
    netdev = "user,id=net0,restrict=on" + "".join(
        f",guestfwd=tcp:{guest}-cmd:socat STDIO TCP:127.0.0.1:{port}" for guest, port in (forwards or {}).items()
    )
    options = [
        ("-accel", "tcg"),
        ("-m", "2048"),
        ("-smp", "2"),
        ("-kernel", str(kernel)),
        ("-initrd", str(initrd)),
        ("-append", "root=LABEL=root rw console=ttyS0 systemd.show_status=false"),
        ("-drive", f"file={root},if=none,id=root,format=qcow2"),
        ("-device", "virtio-blk-pci,drive=root"),
        ("-drive", f"file={data_disk},if=none,id=data,format=raw"),
        ("-device", f"virtio-blk-pci,drive=data,serial={data_serial}"),
        ("-drive", f"file={seed},if=virtio,format=raw,readonly=on"),
        ("-netdev", netdev),
        ("-device", "virtio-net-pci,netdev=net0"),
        ("-serial", f"file:{serial_log}"),
    ]
    command = ["qemu-system-x86_64", "-nographic", "-nodefaults", "-no-reboot"]
    for option in options:
        command.extend(option)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the VM did not power off within {timeout:g} s; console:\n{_tail(serial_log)}") from None
    if result.returncode != 0:
        raise AssertionError(f"qemu failed ({result.returncode}): {result.stderr.strip()}")
    return serial_log.read_text(errors="replace")


def report(console: str) -> dict:
    """The JSON the test image's reporter unit prints between the markers."""
    if REPORT_BEGIN not in console:
        raise AssertionError(f"no report on the console:\n{console[-4000:]}")
    body = console.split(REPORT_BEGIN, 1)[1].split(REPORT_END, 1)[0]
    return json.loads(body.strip().replace("\r", ""))


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no console output)"
