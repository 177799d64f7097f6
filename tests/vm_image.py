"""The test image: the local target's Debian base with the agent and the image's files installed as
the bake will install them (issue #6 replaces it with the baked image), plus stand-ins for what is not
built yet: a .env contract, one stack unit template (`ai-platform-stack@.service`, a oneshot) for the
stacks of issue #3, and a reporter unit that prints the agent's result on the serial console and
powers off, only when the kernel command line asks for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import vm
from conftest import REPO

from builder.local.debian_base import BaseImage, build_debian_base

VOLUME_ID = "vol-0123456789abcdef0"
GUEST_PACKAGES = ("python3-boto3",)  # the agent's only third-party need, for the AWS path
SERIAL = "vol0123456789abcdef0"
CACHE = Path(os.environ.get("AI_PLATFORM_TEST_CACHE", str(Path.home() / ".cache" / "ai-platform-builder")))

# The image's real .env contract (the stacks themselves are stood in for by STACK_STAND_IN).
CONTRACT_FILE = REPO / "image/rootfs/opt/ai-platform/env-contract.json"
STACK_STAND_IN = """\
[Unit]
Description=Test stand-in for the stack %i (issue #3 builds the real ones)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
"""
REPORTER = f"""\
#!/usr/bin/python3
import hashlib, json, pathlib, subprocess
def run(*c):
    return subprocess.run(c, capture_output=True, text=True).stdout.strip()
status = pathlib.Path("/var/lib/ai-platform/status.json")
secrets = pathlib.Path("/mnt/data/platform/secrets.env")
env = pathlib.Path("/etc/ai-platform/stack.env")
report = {{
    "status": json.loads(status.read_text()) if status.exists() else None,
    "firstboot_unit": run("systemctl", "is-active", "ai-platform-firstboot.service"),
    "probe_stack": run("systemctl", "is-active", "ai-platform-stack@probe.service"),
    "mount": run("findmnt", "-no", "SOURCE,FSTYPE", "/mnt/data"),
    "data_uuid": run("blkid", "-s", "UUID", "-o", "value", "/dev/disk/by-id/virtio-{SERIAL}"),
    "secrets_sha256": hashlib.sha256(secrets.read_bytes()).hexdigest() if secrets.exists() else None,
    "env_mode": oct(env.stat().st_mode & 0o777),
    "env_names": sorted(l.split("=")[0] for l in env.read_text().splitlines() if "=" in l and l[0] != "#"),
}}
with open("/dev/ttyS0", "w") as console:
    console.write("\\n{vm.REPORT_BEGIN}\\n" + json.dumps(report) + "\\n{vm.REPORT_END}\\n")
"""
REPORTER_UNIT = f"""\
[Unit]
Description=Test: report the firstboot result on the serial console, then power off
After=ai-platform-firstboot.service
ConditionKernelCommandLine={vm.REPORT_KERNEL_ARG}
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ai-platform-test-report
ExecStartPost=/bin/systemctl poweroff --no-block
[Install]
WantedBy=multi-user.target
"""


def install_agent(mount: Path) -> None:
    """What the bake puts in the image for the agent: its code, a launcher, the image's files."""
    lib = mount / "opt/ai-platform/agent/lib"
    shutil.copytree(REPO / "firstboot", lib / "firstboot", ignore=shutil.ignore_patterns("__pycache__"))
    launcher = mount / "opt/ai-platform/agent/bin/firstboot"
    launcher.parent.mkdir(parents=True)
    launcher.write_text('#!/bin/sh\nPYTHONPATH=/opt/ai-platform/agent/lib exec /usr/bin/python3 -m firstboot "$@"\n')
    launcher.chmod(0o755)
    shutil.copytree(REPO / "image/rootfs", mount, dirs_exist_ok=True)


def build_test_image(work: Path) -> tuple[BaseImage, Path]:
    """The base (cached across runs) and, in `work`, a raw image with the agent installed."""
    base = build_debian_base(CACHE / "images", extra_packages=GUEST_PACKAGES)
    raw = work / "test-image.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(base.disk), str(raw)], check=True)
    mount = work / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(raw), str(mount)], check=True)
    try:
        install_agent(mount)
        shutil.copy(CONTRACT_FILE, mount / "opt/ai-platform/env-contract.json")
        (mount / "etc/systemd/system/ai-platform-stack@.service").write_text(STACK_STAND_IN)
        # The image holds the test's one stack, as a bake lays a stack in (the stand-in unit runs none).
        probe = mount / "opt/ai-platform/stacks/probe"
        probe.mkdir(parents=True, exist_ok=True)
        (probe / "compose.yaml").write_text("services: {}\n")
        (mount / "etc/systemd/system/ai-platform-test-report.service").write_text(REPORTER_UNIT)
        reporter = mount / "usr/local/sbin/ai-platform-test-report"
        reporter.write_text(REPORTER)
        reporter.chmod(0o755)
        for unit in ("ai-platform-firstboot.service", "ai-platform-test-report.service"):
            subprocess.run(["systemctl", f"--root={mount}", "enable", unit], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    return base, raw
