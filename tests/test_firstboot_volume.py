"""Attaching the data volume, against the EC2 API as moto models it (the real API is out of reach)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from firstboot import volume
from firstboot.framework import TransientError
from firstboot.platform import Patient

ZONE = "us-east-1a"


def launch(ec2, zone=ZONE):
    image = ec2.describe_images()["Images"][0]["ImageId"]
    return ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", Placement={"AvailabilityZone": zone}
    )["Instances"][0]["InstanceId"]


def data_volume(ec2, name="alpha", zone=ZONE, platform="ai-platform"):
    tags = {volume.PLATFORM_TAG: platform, volume.INSTANCE_TAG: name, volume.ROLE_TAG: volume.DATA_ROLE}
    return ec2.create_volume(
        AvailabilityZone=zone,
        Size=10,
        VolumeType="gp3",
        Encrypted=True,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["VolumeId"]


def attach(ec2, instance_id, **kwargs):
    arguments = {"platform": "ai-platform", "instance_name": "alpha", "availability_zone": ZONE, "poll_interval": 0}
    arguments.update(kwargs)
    return volume.ensure_attached(ec2, instance_id=instance_id, **arguments)


def test_attaches_the_tagged_volume_then_finds_it_attached(moto):
    ec2 = moto.client("ec2")
    instance_id = launch(ec2)
    volume_id = data_volume(ec2)
    data_volume(ec2, name="beta")  # another instance's volume: not ours

    first = attach(ec2, instance_id)
    second = attach(ec2, instance_id)

    assert (first.volume_id, first.attached_now) == (volume_id, True)
    assert (second.volume_id, second.attached_now) == (volume_id, False)
    attachments = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    assert [(a["InstanceId"], a["Device"]) for a in attachments] == [(instance_id, "/dev/sdf")]


def test_a_volume_attached_elsewhere_is_waited_for_then_reported_never_detached(moto):
    ec2 = moto.client("ec2")
    other, me = launch(ec2), launch(ec2)
    volume_id = data_volume(ec2)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=other, Device="/dev/sdf")
    now, lines = [0.0], []

    def sleep(seconds):
        now[0] += max(seconds, 1)

    with pytest.raises(
        volume.VolumeError, match=f"{volume_id} is still attached to {other} after 60 s; it is never force-detached"
    ):
        attach(ec2, me, timeout=60, clock=lambda: now[0], sleep=sleep, log=lines.append)
    assert now[0] >= 60 and lines == [f"{volume_id} is attached to {other}: waiting for it to let go"]
    attachments = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    assert [a["InstanceId"] for a in attachments] == [other]


def test_no_volume_in_this_zone(moto):
    ec2 = moto.client("ec2")
    instance_id = launch(ec2)
    data_volume(ec2, zone="us-east-1b")
    with pytest.raises(volume.VolumeError, match="no data volume of ai-platform/alpha in us-east-1a"):
        attach(ec2, instance_id)


def test_two_tagged_volumes_are_refused_and_neither_touched(moto):
    ec2 = moto.client("ec2")
    instance_id = launch(ec2)
    ids = sorted([data_volume(ec2), data_volume(ec2)])
    with pytest.raises(volume.VolumeError, match=f"more than one .*{ids[0]}, {ids[1]}"):
        attach(ec2, instance_id)
    for state in ec2.describe_volumes(VolumeIds=ids)["Volumes"]:
        assert state["State"] == "available"


class StuckEc2:
    """Wraps a moto client so the attachment never completes: moto attaches instantly, AWS does not."""

    def __init__(self, ec2):
        self.ec2 = ec2

    def describe_volumes(self, **kwargs):
        response = self.ec2.describe_volumes(**kwargs)
        for found in response["Volumes"]:
            for attachment in found.get("Attachments", []):
                attachment["State"] = "attaching"
        return response

    def attach_volume(self, **kwargs):
        return self.ec2.attach_volume(**kwargs)


def test_an_attachment_that_never_completes_fails_at_the_deadline(moto):
    ec2 = moto.client("ec2")
    instance_id = launch(ec2)
    data_volume(ec2)
    now = [0.0]

    def sleep(seconds):
        now[0] += max(seconds, 1)

    with pytest.raises(volume.VolumeError, match=r"not attached to .* within 60 s"):
        attach(StuckEc2(ec2), instance_id, timeout=60, clock=lambda: now[0], sleep=sleep)


def test_a_replaced_instances_volume_is_taken_over_once_the_old_instance_lets_go(moto):
    """An Auto Scaling group of one replaces its instance while the old one still shuts down: the
    new instance's agent waits, then attaches the volume as soon as termination has detached it."""
    ec2 = moto.client("ec2")
    old, new = launch(ec2), launch(ec2)
    volume_id = data_volume(ec2)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=old, Device="/dev/sdf")
    looks = []

    def sleep(_seconds):
        looks.append(1)
        if len(looks) == 3:  # the old instance is terminated: EC2 detaches its volumes
            ec2.terminate_instances(InstanceIds=[old])

    attached = attach(ec2, new, sleep=sleep)
    assert (attached.volume_id, attached.attached_now) == (volume_id, True)
    attachments = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"]
    assert [a["InstanceId"] for a in attachments] == [new]


class ThrottledEc2:
    """A moto client behind the agent's Patient, whose calls are throttled (RequestLimitExceeded, as EC2
    answers once botocore's own retries are spent) while `throttled` is set."""

    def __init__(self, ec2):
        self.ec2, self.throttled, self.calls = ec2, True, []

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append(name)
            if self.throttled:
                error = {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}
                raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 503}}, name)
            return getattr(self.ec2, name)(**kwargs)

        return call


def test_a_throttled_ec2_is_looked_at_again_until_it_answers(moto):
    ec2 = moto.client("ec2")
    instance_id, volume_id = launch(ec2), data_volume(ec2)
    throttled, now, lines = ThrottledEc2(ec2), [0.0], []

    def sleep(seconds):
        now[0] += seconds
        throttled.throttled = now[0] < 30  # throttled for the first half minute

    attached = attach(
        Patient(throttled),
        instance_id,
        poll_interval=5,
        timeout=300,
        clock=lambda: now[0],
        sleep=sleep,
        log=lines.append,
    )
    assert (attached.volume_id, attached.attached_now) == (volume_id, True)
    assert throttled.calls[:6] == ["describe_volumes"] * 6 and "attach_volume" in throttled.calls
    assert lines == [  # once, not every look
        "EC2 did not answer (describe_volumes failed for a passing reason (RequestLimitExceeded: Request limit "
        "exceeded.)): trying again"
    ]


def test_throttling_past_the_wait_is_a_passing_failure_but_a_volume_held_past_it_is_not(moto):
    ec2 = moto.client("ec2")
    other, me = launch(ec2), launch(ec2)
    volume_id = data_volume(ec2)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    throttled = ThrottledEc2(ec2)
    with pytest.raises(TransientError, match="describe_volumes failed for a passing reason"):
        attach(Patient(throttled), me, poll_interval=5, timeout=60, clock=lambda: now[0], sleep=sleep)
    assert 60 <= now[0] <= 65

    ec2.attach_volume(VolumeId=volume_id, InstanceId=other, Device="/dev/sdf")
    throttled.throttled, now[0] = False, 0.0
    with pytest.raises(volume.VolumeError, match=f"still attached to {other} after 60 s") as raised:
        attach(Patient(throttled), me, poll_interval=5, timeout=60, clock=lambda: now[0], sleep=sleep)
    assert not isinstance(raised.value, TransientError)  # the agent reports it at once: a person must choose
