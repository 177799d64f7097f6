"""Booting test VMs to completion with builder's own qemu command (builder/local/qemu.py).

The test image's reporter unit prints a JSON report between markers on the serial console and
powers the VM off; it runs only when the kernel command line asks for it (REPORT_KERNEL_ARG).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from builder.local.qemu import make_overlay, make_seed, qemu_command

__all__ = ["REPORT_KERNEL_ARG", "boot", "make_overlay", "make_seed", "report"]

REPORT_BEGIN = "AI-PLATFORM-TEST-REPORT-BEGIN"
REPORT_END = "AI-PLATFORM-TEST-REPORT-END"
REPORT_KERNEL_ARG = "ai-platform.test-report"


def boot(*, serial_log: Path, timeout: float = 600, **disks_and_network) -> str:
    """Boot until the guest powers itself off; return its serial console output."""
    command = qemu_command(serial_log=serial_log, kernel_args=REPORT_KERNEL_ARG, no_reboot=True, **disks_and_network)
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
