"""A moto server on 127.0.0.1, for tests that drive the AWS API through boto3.

The AWS API itself cannot be reached from here: moto stands in for it (and only for it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        """`env` adds to the server's environment (MOTO_AMIS_PATH: the AMIs it starts with)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        patched = Path(__file__).with_name("moto_patched.py")  # moto_server with one fix (see there)
        self._log = open(log_dir / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, str(patched), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.url}/moto-api/", timeout=1)
                self.route_default_vpc_out()
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.url} within 30 s")

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        self.route_default_vpc_out()

    def route_default_vpc_out(self, region: str = "us-east-1") -> None:
        """A real default VPC has an internet gateway and a 0.0.0.0/0 route to it in its main route
        table, and its subnets give public IPs; moto's has no gateway, which `preflight` would refuse."""
        ec2 = self.client("ec2", region)
        [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc["VpcId"])
        [main] = ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
        )["RouteTables"]
        ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._log.close()


def make_tagged_ami(ec2, source_image: str, name: str, tags: dict[str, str]) -> str:
    """An AMI as a bake leaves one: made from an instance of `source_image`, tagged, the instance gone."""
    instance = ec2.run_instances(ImageId=source_image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
    ec2.create_tags(Resources=[image], Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())])
    ec2.terminate_instances(InstanceIds=[instance])
    return image


def agent_attaches(ec2, instance_id: str, platform: str = "ai-platform", instance: str = "alpha"):
    """The agent's storage step, its own code (firstboot.volume), for an instance moto runs: moto
    runs no agent. The zone is the instance's, as the agent reads it from its metadata."""
    from firstboot.volume import ensure_attached

    described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return ensure_attached(
        ec2,
        instance_id=instance_id,
        platform=platform,
        instance_name=instance,
        availability_zone=described["Placement"]["AvailabilityZone"],
        timeout=5,
        poll_interval=0,
    )


def play_agent(ec2, instance_id: str, state: str, failed_at: str | None = None) -> tuple[str, str]:
    """moto runs no agent: its storage step (its own code) attaches the data volume to the group's
    new instance, and its report (its own code) tags the instance: done, or failed at a step."""
    from builder.aws.instances import AGENT_STEPS
    from firstboot.report import publish_status_tags
    from firstboot.status import Status, StepRecord

    agent_attaches(ec2, instance_id)
    error = {"step": failed_at, "message": "it broke"} if failed_at else None
    status = Status(steps=[StepRecord(step, "ok") for step in AGENT_STEPS], state=state, first_error=error)
    publish_status_tags(ec2, instance_id, status)
    return state, status.summary()


def image_of(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["ImageId"]


def tags_of(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def launched_on_moto(aws, baked):
    """Instance alpha launched from `baked` (its group, template and data volume), and a newer AMI."""
    from builder.aws.clients import AwsClients
    from builder.aws.launch import launch, plan_launch
    from builder.config.schema import PlatformConfig

    ec2 = aws.client("ec2")
    config = PlatformConfig.model_validate({"version": 1, "data_volume": {"availability_zone": "us-east-1a"}})
    clients = AwsClients(config)
    launch(clients, config, plan_launch(clients, config, "alpha", baked), log=lambda line: None)
    newer = make_tagged_ami(ec2, baked, "ai-platform-build-2", {"ai-platform:platform": "ai-platform"})
    return ec2, clients, config, newer
