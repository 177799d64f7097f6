"""boto3 clients for the platform config: its profile and region, standard retries.

AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL are honoured by boto3 itself (the config layers
already fold the first two in), so a moto server needs no flag of ours.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from builder.config.schema import PlatformConfig

# Standard mode retries throttling and dropped connections with backoff; tests that play a dead
# network set fewer attempts here.
RETRIES = {"mode": "standard", "max_attempts": 8}


class AwsClients:
    def __init__(self, config: PlatformConfig):
        self.config = config

    @cached_property
    def session(self) -> Any:
        import boto3

        return boto3.Session(profile_name=self.config.aws.profile, region_name=self.config.aws.region)

    def client(self, service: str, region: str | None = None) -> Any:
        """`region`: another than aws.region (a KMS key of a region the AMI is copied to)."""
        from botocore.config import Config

        return self.session.client(service, region_name=region, config=Config(retries=dict(RETRIES)))

    @cached_property
    def ec2(self) -> Any:
        return self.client("ec2")

    @cached_property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @cached_property
    def iam(self) -> Any:
        return self.client("iam")

    @cached_property
    def dlm(self) -> Any:
        """Amazon Data Lifecycle Manager (the platform's snapshot policy)."""
        return self.client("dlm")

    @cached_property
    def sts(self) -> Any:
        return self.client("sts")

    @cached_property
    def account_id(self) -> str:
        return self.sts.get_caller_identity()["Account"]
