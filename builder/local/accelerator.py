"""Which qemu accelerator a local VM gets: `local.accelerator: auto` is KVM where KVM really works, else TCG.

"Really works" is not "/dev/kvm exists": on some machines (these among them) /dev/kvm opens and a
boot sector even runs, yet a Linux kernel never prints its first line. So the probe boots the kernel
the VM will boot, with no root disk and `panic=-1`, under KVM with `-no-reboot`: a working KVM
reaches the kernel's "no root" panic in about a second and qemu exits; a broken one is killed at
the deadline. The answer is kept per host boot (and qemu binary), so only the first launch after a
reboot pays for the probe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROBE_SECONDS = 10.0  # TCG itself reaches the panic in about 7 s on 2 vCPUs; a working KVM in about 1 s
PANIC = "Kernel panic"


def resolve(
    setting: str,
    kernel: Path | None,
    cache: Path,
    log: Callable[[str], None],
    device: Path = Path("/dev/kvm"),
    probe_seconds: float = PROBE_SECONDS,
) -> str:
    """ "tcg" or "kvm" for `setting` ("auto", "tcg" or "kvm"); for auto, one line says when TCG is chosen."""
    if setting != "auto":
        return setting
    reason = kvm_unusable_reason(kernel, cache, device, probe_seconds)
    if reason is None:
        return "kvm"
    log(f"accelerator: TCG (slow emulation), because {reason}; local.accelerator: kvm forces KVM")
    return "tcg"


def kvm_unusable_reason(kernel: Path | None, cache: Path, device: Path, probe_seconds: float) -> str | None:
    if not (device.exists() and os.access(device, os.R_OK | os.W_OK)):
        return f"{device} is missing or not usable by this user"
    if kernel is None or not kernel.exists():
        return "there is no kernel outside the image to probe KVM with (an image with its own boot loader)"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return "qemu-system-x86_64 is not installed"
    key = f"{_boot_id()}:{qemu}:{os.stat(qemu).st_mtime_ns}"
    record = cache / "kvm-probe.json"
    try:
        remembered = json.loads(record.read_text())
        if remembered.get("key") == key:
            return remembered["reason"]
    except (OSError, ValueError, KeyError):
        pass
    reason = probe(qemu, kernel, probe_seconds)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"key": key, "reason": reason}))
    return reason


def probe(qemu: str, kernel: Path, seconds: float, accelerator: str = "kvm") -> str | None:
    """Boot `kernel` to its no-root panic under `accelerator`; None when it got there in time."""
    with tempfile.TemporaryDirectory(prefix="ai-platform-kvm-probe-") as work:
        console = Path(work) / "console.log"
        command = [qemu, "-accel", accelerator, "-nodefaults", "-display", "none", "-no-reboot", "-m", "256"]
        command += ["-kernel", str(kernel), "-append", "console=ttyS0 panic=-1", "-serial", f"file:{console}"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait()
            return f"KVM did not boot a kernel within {seconds:g} s (it hangs on this machine)"
        panicked = console.exists() and PANIC in console.read_text(errors="replace")
        if process.returncode == 0 and panicked:
            return None
        error = (process.stderr.read() if process.stderr else "").strip().splitlines()
        return f"qemu with KVM failed (exit {process.returncode}{': ' + error[-1] if error else ''})"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"
