"""End to end: the firstboot agent boots for real in a qemu VM (TCG), on a Debian 12 image built here.

The image is the local target's Debian base (builder/local/debian_base.py) with the agent and the
image's units installed as the bake will install them (issue #6 replaces this with the baked image).
Stand-ins, each because the real one is not built yet: a .env contract of two secrets, and one stack
unit (`ai-platform-stack@probe.service`, a oneshot) for the stack of issue #3. The seed is a NoCloud
ISO whose user-data comes from builder's own renderer (builder/userdata.py), as a launch sends it.
A reporter unit in the test image prints the agent's status and the volume's state on the serial
console, then powers the VM off.

Three boots: a first boot on a blank data disk, a reboot of the same instance, and a second
instance on the same data disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import vm
from conftest import REPO
from imds_standin import ImdsStandIn

from builder.config.schema import PlatformConfig
from builder.local.debian_base import build_debian_base
from builder.userdata import instance_document, render_user_data
from firstboot.storage import volume_serial

VOLUME_ID = "vol-0123456789abcdef0"
GUEST_PACKAGES = ("python3-boto3",)  # the agent's only third-party need, for the AWS path
SERIAL = "vol0123456789abcdef0"
CACHE = Path(os.environ.get("AI_PLATFORM_TEST_CACHE", str(Path.home() / ".cache" / "ai-platform-builder")))

CONTRACT = {
    "version": 1,
    "variables": [
        {"name": "N8N_ENCRYPTION_KEY", "source": "generated", "bytes": 32, "immutable": True},
        {"name": "PLATFORM_HOSTNAME", "source": "instance:hostname"},
        {"name": "ANTHROPIC_API_KEY", "source": "provider:anthropic"},
    ],
}
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
REPORTER_UNIT = """\
[Unit]
Description=Test: report the firstboot result on the serial console, then power off
After=ai-platform-firstboot.service
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


@pytest.fixture(scope="module")
def test_image(tmp_path_factory):
    base = build_debian_base(CACHE / "images", extra_packages=GUEST_PACKAGES)
    work = tmp_path_factory.mktemp("vm-image")
    raw = work / "test-image.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(base.disk), str(raw)], check=True)
    mount = work / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(raw), str(mount)], check=True)
    try:
        install_agent(mount)
        (mount / "opt/ai-platform/env-contract.json").write_text(json.dumps(CONTRACT))
        (mount / "etc/systemd/system/ai-platform-stack@.service").write_text(STACK_STAND_IN)
        (mount / "etc/systemd/system/ai-platform-test-report.service").write_text(REPORTER_UNIT)
        reporter = mount / "usr/local/sbin/ai-platform-test-report"
        reporter.write_text(REPORTER)
        reporter.chmod(0o755)
        for unit in ("ai-platform-firstboot.service", "ai-platform-test-report.service"):
            subprocess.run(["systemctl", f"--root={mount}", "enable", unit], check=True, capture_output=True)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    return base, raw


def user_data(instance: str) -> str:
    """The seed's user-data, rendered by builder's own renderer for the local target."""
    config = PlatformConfig(version=1)
    document = instance_document(config, instance, "local", volume_id=VOLUME_ID, tailnet=False)  # none to reach
    document["services"] = ["probe"]  # the stand-in stack
    return render_user_data(config, document).mime


def boot_instance(
    test_image,
    work: Path,
    instance_id: str,
    data_disk: Path,
    overlay: Path | None = None,
    *,
    seed_user_data: str | None = None,
    serial: str = SERIAL,
    forwards: dict[str, int] | None = None,
):
    base, raw = test_image
    if overlay is None:
        overlay = work / f"{instance_id}.qcow2"
        vm.make_overlay(raw, overlay, backing_format="raw")
    seed = vm.make_seed(
        work / f"{instance_id}-seed.iso", instance_id, instance_id, seed_user_data or user_data("alpha")
    )
    log = work / f"{instance_id}-boot{len(list(work.glob(f'{instance_id}-boot*.log'))) + 1}.log"
    console = vm.boot(
        kernel=base.kernel,
        initrd=base.initrd,
        root=overlay,
        data_disk=data_disk,
        data_serial=serial,
        forwards=forwards,
        seed=seed,
        serial_log=log,
    )
    return vm.report(console), overlay


def test_first_boot_reboot_and_a_second_instance_on_the_same_volume(test_image, tmp_path):
    data_disk = tmp_path / "data.img"
    with open(data_disk, "wb") as handle:
        handle.truncate(1024**3)

    first, overlay = boot_instance(test_image, tmp_path, "local-a", data_disk)
    assert first["status"]["state"] == "done", first
    assert first["status"]["instance_id"] == "local-a"
    assert first["firstboot_unit"] == "active"
    assert first["probe_stack"] == "active"
    source, fstype = first["mount"].split()
    assert source.startswith("/dev/vd") and fstype == "ext4", first["mount"]
    assert first["env_mode"] == "0o600"
    storage = next(s for s in first["status"]["steps"] if s["name"] == "storage")
    assert "new filesystem made" in storage["detail"]

    again, _ = boot_instance(test_image, tmp_path, "local-a", data_disk, overlay=overlay)
    assert again["status"]["state"] == "done", again
    assert "existing filesystem kept" in next(s for s in again["status"]["steps"] if s["name"] == "storage")["detail"]
    assert again["data_uuid"] == first["data_uuid"]
    assert again["secrets_sha256"] == first["secrets_sha256"]

    second, _ = boot_instance(test_image, tmp_path, "local-b", data_disk)
    assert second["status"]["state"] == "done", second
    assert second["status"]["instance_id"] == "local-b"
    assert second["data_uuid"] == first["data_uuid"]
    assert second["secrets_sha256"] == first["secrets_sha256"]


ANTHROPIC_KEY = "sk-ant-api03-vm-test-example-0123456789"


def test_the_aws_path_with_metadata_and_apis_reached_only_through_loopback(test_image, tmp_path, moto):
    """IMDSv2 (stand-in) and EC2/SSM (moto) on the host's loopback, forwarded into a guest that reaches nothing else."""
    ec2 = moto.client("ec2")
    instance_id = ec2.run_instances(
        ImageId=ec2.describe_images()["Images"][0]["ImageId"],
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": "us-east-1a"},
    )["Instances"][0]["InstanceId"]
    tags = [
        {"Key": "ai-platform:platform", "Value": "ai-platform"},
        {"Key": "ai-platform:instance", "Value": "alpha"},
        {"Key": "ai-platform:role", "Value": "data"},
    ]
    volume_id = ec2.create_volume(
        AvailabilityZone="us-east-1a", Size=1, TagSpecifications=[{"ResourceType": "volume", "Tags": tags}]
    )["VolumeId"]
    moto.client("ssm").put_parameter(Name="/ai-platform/providers/anthropic", Value=ANTHROPIC_KEY, Type="SecureString")
    imds = ImdsStandIn(instance_id, "us-east-1a", "us-east-1")
    try:
        config = PlatformConfig.model_validate(
            {"version": 1, "providers": {"anthropic_api_key_parameter": "/ai-platform/providers/anthropic"}}
        )
        document = instance_document(
            config, "alpha", "aws", endpoints={"imds": "http://10.0.2.100", "aws": "http://10.0.2.101"}, tailnet=False
        )
        document["services"] = ["probe"]
        data_disk = tmp_path / "data.img"
        with open(data_disk, "wb") as handle:
            handle.truncate(1024**3)
        result, _ = boot_instance(
            test_image,
            tmp_path,
            "i-guest",
            data_disk,
            seed_user_data=render_user_data(config, document).mime,
            serial=volume_serial(volume_id),
            forwards={"10.0.2.100:80": imds.port, "10.0.2.101:80": moto.port},
        )
    finally:
        imds.stop()

    assert result["status"]["state"] == "done", result
    assert result["status"]["instance_id"] == instance_id
    assert "ANTHROPIC_API_KEY" in result["env_names"]
    attachments = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    assert [a["InstanceId"] for a in attachments] == [instance_id]
    instance_tags = {
        t["Key"]: t["Value"]
        for t in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
    }
    assert instance_tags["ai-platform:status"] == "done"
    console = "".join(p.read_text(errors="replace") for p in tmp_path.glob("i-guest-boot*.log"))
    assert ANTHROPIC_KEY not in console
