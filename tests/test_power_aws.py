"""aws.schedule as the instance group's scheduled actions, and `builder start`/`builder stop`, on
moto (it has Auto Scaling's scheduled actions, and its groups launch and terminate instances).
Launches go through builder/aws/launch.py in-process (no preflight: it is not what is tested)."""

from __future__ import annotations

import json

from conftest import AWS_ZONE as ZONE

from builder.aws.clients import AwsClients
from builder.aws.instances import data_volume
from builder.aws.launch import launch, plan_launch
from builder.config.schema import PlatformConfig

GROUP = "ai-platform-alpha"
BERLIN = {"timezone": "Europe/Berlin", "start": "0 8 * * 1-5", "stop": "0 20 * * 1-5"}
BERLIN_YAML = "aws: {schedule: {timezone: Europe/Berlin, start: '0 8 * * 1-5', stop: '0 20 * * 1-5'}}\n"


def config(schedule: dict | None) -> PlatformConfig:
    aws = {"schedule": schedule} if schedule else {}
    return PlatformConfig.model_validate({"version": 1, "data_volume": {"availability_zone": ZONE}, "aws": aws})


def launched(cfg: PlatformConfig) -> list[str]:
    clients = AwsClients(cfg)
    plan = plan_launch(clients, cfg, "alpha")
    launch(clients, cfg, plan, log=lambda _line: None)
    return plan.actions()


def scheduled(aws) -> dict:
    actions = aws.client("autoscaling").describe_scheduled_actions(AutoScalingGroupName=GROUP)
    return {
        a["ScheduledActionName"]: (a["Recurrence"], a.get("TimeZone"), a["MinSize"], a["MaxSize"], a["DesiredCapacity"])
        for a in actions["ScheduledUpdateGroupActions"]
    }


def the_group(aws) -> dict:
    return aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]


def live(aws) -> list[str]:
    return [i["InstanceId"] for i in the_group(aws)["Instances"] if i["LifecycleState"] == "InService"]


def test_launch_makes_the_groups_scheduled_actions_match_the_schedule_as_it_changes_and_goes(aws, baked):
    actions = launched(config(BERLIN))
    assert f"put scheduled action {GROUP}-start: one instance at '0 8 * * 1-5' (Europe/Berlin)" in actions
    assert scheduled(aws) == {
        f"{GROUP}-start": ("0 8 * * 1-5", "Europe/Berlin", 1, 1, 1),
        f"{GROUP}-stop": ("0 20 * * 1-5", "Europe/Berlin", 0, 0, 0),
    }
    scaling = aws.client("autoscaling")
    scaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=0, MaxSize=0, DesiredCapacity=0)
    earlier = {**BERLIN, "stop": "30 18 * * 1-5"}  # evenings off earlier
    actions = launched(config(earlier))
    assert f"keep scheduled action {GROUP}-start (as configured)" in actions
    changed = f"put scheduled action {GROUP}-stop: no instance (data volume kept) at '30 18 * * 1-5' (Europe/Berlin)"
    assert changed in actions
    assert scheduled(aws)[f"{GROUP}-stop"] == ("30 18 * * 1-5", "Europe/Berlin", 0, 0, 0)
    scaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=0, MaxSize=0, DesiredCapacity=0)
    actions = launched(config(None))  # no schedule: always on, and nothing of the old one left
    assert f"delete scheduled action {GROUP}-stop (no longer in aws.schedule)" in actions
    assert scheduled(aws) == {}


def test_stop_then_start_keeps_the_data_volume_and_brings_the_group_back(aws, baked, builder, tmp_path):
    launched(config(BERLIN))
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n{BERLIN_YAML}")
    ec2 = aws.client("ec2")
    [first] = live(aws)
    volume = data_volume(ec2, "ai-platform", "alpha")["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=first, Device="/dev/sdf")  # as the agent has it

    dry = builder("stop", "alpha", "--dry-run")
    assert dry.code == 0, dry.err
    assert f"terminate {first}; keep data volume {volume}" in dry.out
    assert the_group(aws)["DesiredCapacity"] == 1 and live(aws) == [first]

    stopped = builder("stop", "alpha")
    assert stopped.code == 0, stopped.err
    assert f"{first}: terminated" in stopped.err and f"{volume}: available" in stopped.err
    assert "aws.schedule starts it again at its next start time: " in stopped.out
    assert "08:00 Europe/Berlin" in stopped.out
    group = the_group(aws)
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 0, 0)
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["State"] == "available"
    assert builder("stop", "alpha").out.startswith("ai-platform/alpha already is stopped")

    status = builder("status", "alpha")
    assert "keeps 0, has 0 (stopped: by `builder stop` or aws.schedule, `builder start NAME` starts it" in status.out
    assert "schedule: start '0 8 * * 1-5', stop '0 20 * * 1-5' (Europe/Berlin); next: " in status.out

    started = builder("--json", "start", "alpha")
    assert started.code == 0, started.err
    assert json.loads(started.out)["data_volume"] == volume
    group = the_group(aws)
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 1, 1)
    assert live(aws) and live(aws) != [first]


def test_start_and_stop_of_an_instance_never_launched_say_how_to_launch_it(aws, builder, tmp_path):
    (tmp_path / "platform.yaml").write_text("version: 1\n")
    for command in ("start", "stop"):
        result = builder(command, "alpha")
        assert result.code == 1
        assert "has no auto scaling group ai-platform-alpha" in result.err and "`builder launch alpha`" in result.err


def test_start_and_stop_on_the_local_target_name_what_does_it_there(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\n")
    stop = builder("stop", "alpha", "--target", "local")
    assert stop.code == 1 and "`builder destroy alpha --target local` powers it off" in stop.err
    start = builder("start", "alpha", "--target", "local")
    assert start.code == 1 and "`builder launch alpha --target local` boots it again" in start.err
    assert not (tmp_path / "state").exists()


def test_a_stop_that_does_not_finish_in_time_says_what_is_left_and_how_to_bring_it_back(aws, baked):
    """The data volume held by another instance (not the group's) never becomes available: the
    wait ends at its deadline, naming the volume's state; the group keeps no instance."""
    from builder.aws import power
    from builder.errors import BuilderError

    cfg = config(None)
    launched(cfg)
    ec2 = aws.client("ec2")
    volume = data_volume(ec2, "ai-platform", "alpha")["VolumeId"]
    other = ec2.run_instances(ImageId=baked, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": ZONE})
    holder = other["Instances"][0]["InstanceId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=holder, Device="/dev/sdf")
    plan = power.plan_power(AwsClients(cfg), cfg, "alpha", "stop")
    ticks = iter(range(0, 10_000, 100))
    lines: list[str] = []
    try:
        power.stop(
            aws.client("autoscaling"),
            ec2,
            plan,
            lines.append,
            timeout=250,
            clock=lambda: next(ticks),
            sleep=lambda _s: None,
        )
    except BuilderError as error:
        said = str(error)
    else:
        raise AssertionError("the stop did not time out")
    assert f"data volume {volume} in-use, attached to {holder}" in said
    assert "`builder start alpha` brings it back" in said
    assert f"{plan.live[0]}: terminated" in lines
    assert the_group(aws)["DesiredCapacity"] == 0
