"""`builder resize NAME --size GIB`: the data volume (AWS) or data disk (local) grown, never shrunk.

AWS runs against moto, which carries a modification out at once (state `completed`); the waiting
through `modifying` to `optimizing`, a `failed` one and one still in progress are played with
botocore's Stubber (each request checked against the EC2 model), since moto has no such states.
Local disks are real sparse files grown by qemu-img, and a running instance's qemu is real: the
data disk on a virtio disk as launch gives it (so qemu holds the image's lock) and the QMP socket,
its CPU never started (-S: no guest boots; the guest's part, growing the filesystem, is
tests/test_firstboot_data_growth.py's).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import boto3
import pytest
from botocore.stub import Stubber
from conftest import AWS_ZONE

from builder.aws import names
from builder.aws import resize as aws_resize
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.local.instances import LocalInstance
from builder.local.qmp import Qmp

GIB = 1024**3


# --- AWS, on moto ----------------------------------------------------------------------------


def data_volume(ec2, size: int, volume_type: str = "gp3", attach: bool = True) -> tuple[str, str | None]:
    """alpha's data volume as `launch` tags it, attached to a running instance unless not `attach`."""
    volume = ec2.create_volume(
        AvailabilityZone=AWS_ZONE,
        Size=size,
        VolumeType=volume_type,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": names.tags("ai-platform", "alpha", **{names.ROLE_TAG: names.DATA_ROLE})}
        ],
    )["VolumeId"]
    if not attach:
        return volume, None
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": AWS_ZONE})[
        "Instances"
    ][0]["InstanceId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    return volume, instance


def size_of(ec2, volume: str) -> int:
    return ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Size"]


def modifications(ec2, volume: str) -> list:
    return ec2.describe_volumes_modifications(VolumeIds=[volume])["VolumesModifications"]


@pytest.fixture
def platform_yaml(tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\n")


def test_resize_grows_the_attached_volume_online_and_says_who_grows_the_filesystem(aws, builder, platform_yaml):
    ec2 = aws.client("ec2")
    volume, instance = data_volume(ec2, 8)
    result = builder("resize", "alpha", "--size", "20")
    assert result.code == 0, result.err
    assert size_of(ec2, volume) == 20
    assert f"data volume {volume} grown from 8 to 20 GiB (EBS modification completed" in result.out
    assert f"the agent on {instance} grows the filesystem online within a minute" in result.out
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Attachments"][0]["InstanceId"] == instance

    again = builder("--json", "resize", "alpha", "--size", "20")  # the same size: nothing to do, said
    assert again.code == 0, again.err
    assert json.loads(again.out)["resized"] is False
    assert len(modifications(ec2, volume)) == 1


def test_a_detached_volume_grows_and_its_filesystem_waits_for_the_next_boot(aws, builder, platform_yaml):
    ec2 = aws.client("ec2")
    volume, _ = data_volume(ec2, 8, attach=False)
    result = builder("--json", "resize", "alpha", "--size", "9")
    assert result.code == 0, result.err
    said = json.loads(result.out)
    assert (said["data_volume"], said["from_gib"], said["to_gib"], said["attached_to"]) == (volume, 8, 9, None)
    assert said["modification_state"] == "completed" and "at the next boot" in said["filesystem"]
    assert size_of(ec2, volume) == 9


@pytest.mark.parametrize(
    ("volume_type", "size", "said"),
    [
        ("gp3", "4", "--size: vol-"),  # smaller than its 8 GiB
        ("gp2", "20000", "--size: a gp2 volume holds 1 to 16384 GiB; 20000 GiB is outside that"),
        ("standard", "2000", "--size: a standard volume holds 1 to 1024 GiB"),
        ("gp3", "0", "--size: 0 GiB is not a size EBS allows (whole GiB, 1 to 65536)"),
        ("gp3", "-3", "--size: -3 GiB is not a size EBS allows"),
    ],
)
def test_a_size_the_volume_cannot_take_is_refused_and_changes_nothing(
    aws, builder, platform_yaml, volume_type, size, said
):
    ec2 = aws.client("ec2")
    volume, _ = data_volume(ec2, 8, volume_type, attach=False)
    result = builder("resize", "alpha", "--size", size)
    assert result.code == 1, result.err
    assert said in result.err and "Traceback" not in result.err
    assert size_of(ec2, volume) == 8 and modifications(ec2, volume) == []


def test_shrinking_says_the_volume_only_grows(aws, builder, platform_yaml):
    volume, _ = data_volume(aws.client("ec2"), 8, attach=False)
    result = builder("resize", "alpha", "--size", "4")
    assert result.code == 1
    assert f"--size: {volume} is 8 GiB and a volume only grows" in result.err
    assert "give 8 GiB or more. Nothing was changed." in result.err


def test_an_unknown_instance_and_a_size_that_is_no_number_are_refused(aws, builder, platform_yaml):
    data_volume(aws.client("ec2"), 8, attach=False)
    unknown = builder("resize", "beta", "--size", "20")
    assert unknown.code == 1
    assert "ai-platform/beta has no data volume" in unknown.err and "`builder status`" in unknown.err
    words = builder("resize", "alpha", "--size", "lots")
    assert words.code == 2 and "--size" in words.err and "'lots' is not a valid integer" in words.err


# --- AWS: the modification's states, played with Stubber (moto completes a modification at once) --


@pytest.fixture
def stubbed():
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ec2) as stub:
        yield ec2, stub
        stub.assert_no_pending_responses()


VOLUME = "vol-0123456789abcdef0"
PLAN = aws_resize.ResizePlan("ai-platform", "alpha", VOLUME, "gp3", 8, 20, "i-0123456789abcdef0")


def modification(state: str, target: int = 20, **extra) -> dict:
    return {"VolumesModifications": [{"VolumeId": VOLUME, "ModificationState": state, "TargetSize": target, **extra}]}


def test_the_wait_lasts_until_the_new_size_is_usable_at_optimizing(stubbed):
    ec2, stub = stubbed
    stub.add_response("modify_volume", {}, {"VolumeId": VOLUME, "Size": 20})
    for state in ("modifying", "modifying", "optimizing"):
        stub.add_response("describe_volumes_modifications", modification(state), {"VolumeIds": [VOLUME]})
    slept, lines = [], []
    state = aws_resize.resize(ec2, PLAN, lines.append, sleep=slept.append, clock=lambda: 0)
    assert state == "optimizing" and slept == [aws_resize.POLL_SECONDS] * 2
    assert "waiting for it to reach optimizing" in lines[0]


def test_a_failed_modification_says_the_volume_keeps_its_size_and_data(stubbed):
    ec2, stub = stubbed
    stub.add_response("modify_volume", {}, {"VolumeId": VOLUME, "Size": 20})
    failed = modification("failed", StatusMessage="Internal error")
    stub.add_response("describe_volumes_modifications", failed, {"VolumeIds": [VOLUME]})
    with pytest.raises(BuilderError, match=r"could not grow vol-\w+: Internal error; it keeps 8 GiB and its data"):
        aws_resize.resize(ec2, PLAN, lambda _line: None, sleep=lambda _s: None)


def test_a_modification_that_outlasts_the_wait_says_ebs_goes_on(stubbed):
    ec2, stub = stubbed
    stub.add_response("modify_volume", {}, {"VolumeId": VOLUME, "Size": 20})
    stub.add_response("describe_volumes_modifications", modification("modifying"), {"VolumeIds": [VOLUME]})
    stub.add_response("describe_volumes_modifications", modification("modifying"), {"VolumeIds": [VOLUME]})
    now = iter([0, 0, 700])
    with pytest.raises(BuilderError, match="still modifying after 600 s; EBS goes on with it"):
        aws_resize.resize(ec2, PLAN, lambda _line: None, sleep=lambda _s: None, clock=lambda: next(now))


def volume_answer(size: int = 8) -> dict:
    tags = names.tags("ai-platform", "alpha", **{names.ROLE_TAG: names.DATA_ROLE})
    return {"Volumes": [{"VolumeId": VOLUME, "VolumeType": "gp3", "Size": size, "Tags": tags, "Attachments": []}]}


def test_a_volume_still_being_modified_is_refused_before_anything_changes(stubbed):
    ec2, stub = stubbed
    stub.add_response("describe_volumes", volume_answer())
    stub.add_response("describe_volumes_modifications", modification("optimizing", 10, Progress=40))
    with pytest.raises(BuilderError, match=r"still being modified \(optimizing, 40 %\); EBS takes a new modification"):
        aws_resize.plan_resize(ec2, "ai-platform", "alpha", 20)


def test_a_volume_never_modified_is_what_aws_answers_with_an_error(stubbed):
    """AWS answers DescribeVolumesModifications for a volume never modified with an error code."""
    ec2, stub = stubbed
    stub.add_response("describe_volumes", volume_answer())
    stub.add_client_error("describe_volumes_modifications", "InvalidVolumeModification.NotFound")
    plan = aws_resize.plan_resize(ec2, "ai-platform", "alpha", 20)
    assert (plan.current_gib, plan.target_gib, plan.needed) == (8, 20, True)


# --- local: a real disk file and a real qemu ----------------------------------------------------


@pytest.fixture
def instance(tmp_path, platform_yaml):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "state")}})
    made = LocalInstance(config, "alpha")
    made.directory.mkdir(parents=True)
    made.data_disk.parent.mkdir(parents=True)
    with open(made.data_disk, "wb") as handle:
        handle.truncate(1 * GIB)
        handle.seek(4096)
        handle.write(b"the data")
    return made


def qemu_holding(instance: LocalInstance) -> subprocess.Popen:
    command = [
        "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-S", "-nodefaults", "-display", "none",
        "-drive", f"file={instance.data_disk},if=none,id=data,format=raw",
        "-device", "virtio-blk-pci,drive=data",
        "-qmp", f"unix:{instance.qmp},server=on,wait=off",
    ]  # fmt: skip
    qemu = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # The QMP socket is made while qemu parses its options, before it opens (and locks) the drive:
    # CI's loaded machine once ran the resize in between. Its greeting comes from the main loop,
    # once every device is up: waited for, the disk is held.
    deadline = time.monotonic() + 60
    while True:
        assert qemu.poll() is None, qemu.stderr.read()
        assert time.monotonic() < deadline, "qemu's QMP never greeted"
        try:
            with socket.socket(socket.AF_UNIX) as connection:
                connection.settimeout(10)
                connection.connect(str(instance.qmp))
                if b"QMP" in connection.recv(4096):
                    return qemu
        except OSError:
            pass
        time.sleep(0.05)


@pytest.fixture
def running(instance):
    """The instance's qemu, holding its data disk and answering on its QMP socket (no guest)."""
    qemu = qemu_holding(instance)
    (instance.directory / "state.json").write_text(json.dumps({"instance_id": "local-alpha-1", "pid": qemu.pid}))
    yield qemu
    qemu.terminate()
    qemu.wait(30)
    instance.qmp.unlink(missing_ok=True)


def data_at(disk, offset: int = 4096) -> bytes:
    with open(disk, "rb") as handle:
        handle.seek(offset)
        return handle.read(8)


def test_a_stopped_instances_disk_grows_sparse_and_its_next_launch_grows_the_filesystem(builder, instance):
    result = builder("resize", "alpha", "--target", "local", "--size", "3")
    assert result.code == 0, result.err
    assert instance.data_disk.stat().st_size == 3 * GIB
    assert instance.data_disk.stat().st_blocks * 512 < GIB  # still sparse
    assert data_at(instance.data_disk) == b"the data"
    assert "grown to 3 GiB" in result.out and "at its next launch, before it mounts it" in result.out


def test_a_running_instances_disk_grows_through_qemu_which_sees_the_new_size(builder, instance, running):
    result = builder("--json", "resize", "alpha", "--target", "local", "--size", "2")
    assert result.code == 0, result.err
    said = json.loads(result.out)
    assert (said["running"], said["from_gib"], said["to_gib"], said["resized"]) == (True, 1, 2, True)
    assert instance.data_disk.stat().st_size == 2 * GIB
    with Qmp(instance.qmp) as qmp:  # what the guest's virtio disk is told
        [drive] = [block for block in qmp.execute("query-block") if block["device"] == "data"]
    assert drive["inserted"]["image"]["virtual-size"] == 2 * GIB
    assert data_at(instance.data_disk) == b"the data"
    assert running.poll() is None


def test_a_disk_some_qemu_still_holds_is_not_grown_behind_its_back(builder, instance):
    """No state says it runs (a qemu started by hand, or a state file lost): qemu-img's lock refuses."""
    qemu = qemu_holding(instance)
    try:
        result = builder("resize", "alpha", "--target", "local", "--size", "2")
    finally:
        qemu.terminate()
        qemu.wait(30)
    assert result.code == 1
    assert "qemu-img could not grow" in result.err and "it is as it was" in result.err
    assert instance.data_disk.stat().st_size == GIB


@pytest.mark.parametrize(
    ("size", "said"),
    [
        ("0", "--size: 0 GiB is not a size a data disk takes"),
        ("70000", "--size: 70000 GiB is not a size"),
    ],
)
def test_local_sizes_out_of_range_are_refused(builder, instance, size, said):
    result = builder("resize", "alpha", "--target", "local", "--size", size)
    assert result.code == 1 and said in result.err
    assert instance.data_disk.stat().st_size == GIB


def test_a_local_disk_never_shrinks_and_an_unknown_instance_is_named(builder, instance, tmp_path):
    with open(instance.data_disk, "r+b") as handle:
        handle.truncate(GIB + 1)  # a disk not a whole number of GiB: the smallest size it takes is rounded up
    smaller = builder("resize", "alpha", "--target", "local", "--size", "1")
    assert smaller.code == 1
    assert "only grows (the data is on it); give 2 GiB or more. Nothing was changed." in smaller.err
    assert instance.data_disk.stat().st_size == GIB + 1
    unknown = builder("resize", "beta", "--target", "local", "--size", "2")
    assert unknown.code == 1 and "beta has no data disk" in unknown.err
    assert not (tmp_path / "state" / "ai-platform" / "data" / "beta.img").exists()
