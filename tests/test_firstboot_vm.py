"""End to end: the firstboot agent boots for real in a qemu VM (TCG), on a Debian 12 image built here.

The image and its stand-ins are described in tests/vm_image.py. The seed is a NoCloud ISO whose
user-data comes from builder's own renderer (builder/userdata.py), as a launch sends it.

The AWS path with its APIs behind loopback forwards: a first boot on a blank data disk, then a
reboot of the same instance (its volume already attached, its filesystem kept). The local path,
and a second instance on the same disk, run on the baked image in tests/test_chain_local.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import vm
from imds_standin import ImdsStandIn
from vm_image import SERIAL

from builder import owner_credentials
from builder.config.schema import PlatformConfig
from builder.userdata import instance_document, render_user_data
from firstboot.storage import volume_serial


def owner_file(work: Path) -> dict[str, Path]:
    """The owner's credentials as a local launch hands them to the VM (qemu's fw_cfg)."""
    path = work / "owner-credentials.json"
    path.write_text(json.dumps(owner_credentials.complete({})))
    return {owner_credentials.FW_CFG_NAME: path}


def boot_instance(
    test_image,
    work: Path,
    instance_id: str,
    data_disk: Path,
    overlay: Path | None = None,
    *,
    seed_user_data: str,
    serial: str = SERIAL,
    forwards: dict[str, int] | None = None,
):
    base, raw = test_image
    if overlay is None:
        overlay = work / f"{instance_id}.qcow2"
        vm.make_overlay(raw, overlay, backing_format="raw")
    seed = vm.make_seed(work / f"{instance_id}-seed.iso", instance_id, instance_id, seed_user_data)
    log = work / f"{instance_id}-boot{len(list(work.glob(f'{instance_id}-boot*.log'))) + 1}.log"
    console = vm.boot(
        kernel=base.kernel,
        initrd=base.initrd,
        root=overlay,
        data_disk=data_disk,
        data_serial=serial,
        guest_forwards=forwards,
        seed=seed,
        serial_log=log,
        fw_cfg=owner_file(work),
    )
    return vm.report(console), overlay


ANTHROPIC_KEY = "sk-ant-api03-vm-test-example-0123456789"


def test_the_aws_path_first_boot_and_reboot_with_apis_reached_only_through_loopback(test_image, tmp_path, moto):
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
    # What `builder launch` makes before the instance boots: the owner's credentials in SSM.
    owner_credentials.ensure_aws(moto.client("ssm"), PlatformConfig(version=1), "alpha", lambda _line: None)
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
        boot = {
            "seed_user_data": render_user_data(config, document).mime,
            "serial": volume_serial(volume_id),
            "forwards": {"10.0.2.100:80": imds.port, "10.0.2.101:80": moto.port},
        }
        result, overlay = boot_instance(test_image, tmp_path, "i-guest", data_disk, **boot)
        # A reboot of the same instance: its volume is attached to it already, its filesystem kept.
        again, _ = boot_instance(test_image, tmp_path, "i-guest", data_disk, overlay, **boot)
    finally:
        imds.stop()

    assert result["status"]["state"] == "done", result
    assert result["status"]["instance_id"] == instance_id
    assert result["firstboot_unit"] == "active" and result["probe_stack"] == "active"
    source, fstype = result["mount"].split()
    assert source.startswith("/dev/vd") and fstype == "ext4", result["mount"]
    assert result["env_mode"] == "0o600"
    assert "new filesystem made" in next(s for s in result["status"]["steps"] if s["name"] == "storage")["detail"]
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

    assert again["status"]["state"] == "done", again
    assert "existing filesystem kept" in next(s for s in again["status"]["steps"] if s["name"] == "storage")["detail"]
    assert again["secrets_sha256"] == result["secrets_sha256"] and result["secrets_sha256"]
