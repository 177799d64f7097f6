"""Plan and launch 20 platform instances against a moto server; user-data sizes of two configs.

moto stands in for the AWS API, so the times measure the builder's own work plus local HTTP round
trips, not EC2's provisioning. Run: .venv/bin/python bench/launch_moto.py [--instances N]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from moto_server import MotoServer

from builder.aws import names
from builder.aws.clients import AwsClients
from builder.aws.launch import launch, plan_launch
from builder.config.schema import PlatformConfig
from builder.userdata import instance_document, render_user_data


def user_data_sizes() -> dict[str, tuple[int, bool]]:
    default = PlatformConfig(version=1)
    keys = [
        "ssh-ed25519 " + base64.b64encode(hashlib.sha256(bytes([i])).digest() + bytes(19)).decode() + f" admin{i}"
        for i in range(10)
    ]
    largest = PlatformConfig.model_validate(
        {
            "version": 1,
            "name": "research-platform-eu",
            "ssh": {"authorized_keys": keys},
            "tailscale": {
                "tags": [f"tag:team-{i}" for i in range(8)],
                "hostname_pattern": "{platform}-{instance}-node",
            },
            "providers": {
                "anthropic_api_key_parameter": "/research-platform-eu/providers/anthropic/api-key",
                "openai_api_key_parameter": "/research-platform-eu/providers/openai/api-key",
            },
        }
    )
    sizes = {}
    for label, config, instance in (("default", default, "alpha"), ("largest sensible", largest, "gpu-worker-07")):
        user_data = render_user_data(config, instance_document(config, instance, "aws"))
        sizes[label] = (len(user_data.payload), user_data.compressed)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    count = parser.parse_args().instances
    with tempfile.TemporaryDirectory() as directory:
        server = MotoServer(Path(directory))
        try:
            os.environ.update(AWS_ENDPOINT_URL=server.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
            ec2 = server.client("ec2")
            source = ec2.run_instances(ImageId=ec2.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1)
            image = ec2.create_image(InstanceId=source["Instances"][0]["InstanceId"], Name="bench")["ImageId"]
            ec2.create_tags(Resources=[image], Tags=[{"Key": names.PLATFORM_TAG, "Value": "ai-platform"}])
            config = PlatformConfig.model_validate({"version": 1, "data_volume": {"availability_zone": "us-east-1a"}})
            clients = AwsClients(config)
            plans, launches = [], []
            started = time.perf_counter()
            for index in range(count):
                name = f"bench-{index:02d}"
                t0 = time.perf_counter()
                plan = plan_launch(clients, config, name)
                t1 = time.perf_counter()
                launch(clients, config, plan, log=lambda _line: None)
                t2 = time.perf_counter()
                plans.append(t1 - t0)
                launches.append(t2 - t1)
            total = time.perf_counter() - started
        finally:
            server.stop()
    print(f"{count} instances against moto: {total:.2f} s in all")
    print(f"  plan   median {statistics.median(plans) * 1000:7.1f} ms  max {max(plans) * 1000:7.1f} ms")
    print(f"  launch median {statistics.median(launches) * 1000:7.1f} ms  max {max(launches) * 1000:7.1f} ms")
    for label, (size, compressed) in user_data_sizes().items():
        print(f"user-data, {label} config: {size} bytes of 16384{' (gzip)' if compressed else ''}")


if __name__ == "__main__":
    main()
