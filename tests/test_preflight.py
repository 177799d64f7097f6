"""`builder preflight --target aws` against the AWS API as moto models it (the real API is out of reach).

moto's default VPC is given the internet gateway route a real one has (tests/moto_server.py). Where
moto falls short, a check is fed a scripted client: Service Quotas (moto 5.2.5 answers only for
VPC quotas) and an instance type offered in no zone (moto offers every type it knows everywhere).
"""

from __future__ import annotations

import json

import pytest
from conftest import AWS_ZONE as ZONE

from builder.aws import preflight
from builder.aws.clients import AwsClients
from builder.config.schema import PlatformConfig

OWN_ACCOUNT = "123456789012"  # moto's
# moto's stock images include two of Canonical's (owner 099720109477, the default): the oldest
# Ubuntu it has stands in for the base.
BASE_FILTER = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*"


def config(**sections) -> PlatformConfig:
    image = {"base_ami_name_filter": BASE_FILTER, **sections.pop("image", {})}
    return PlatformConfig.model_validate(
        {"version": 1, "data_volume": {"availability_zone": ZONE}, "image": image, **sections}
    )


@pytest.fixture
def account(aws, baked):
    """A ready account: the Tailscale key stored (by `baked`), Canonical's AMIs (moto's stock)."""
    return aws


def check(name: str, cfg: PlatformConfig | None = None, clients: AwsClients | None = None) -> preflight.Check:
    cfg = cfg or config()
    return preflight.ALL[name](clients or AwsClients(cfg), cfg)


def main_route_table(ec2) -> dict:
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    return ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"][0]


def test_a_ready_account_passes_every_check_with_one_line_each(account, builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\nimage: {{base_ami_name_filter: '{BASE_FILTER}'}}\n"
    )
    result = builder("preflight")
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ok   credentials",
        "ok   subnet",
        "ok   VPC range",
        "ok   build SSH",
        "ok   instance type",
        "warn vCPU quota",  # moto has no EC2 quotas: a warning, never a stop
        "ok   SSM parameters",
        "ok   KMS keys",
        "ok   base AMI",
    ]
    assert lines[-1] == "preflight: ok (9 checks passed, 1 warning)"
    document = json.loads(builder("--json", "preflight").out)
    assert document["ok"] is True and len(document["checks"]) == 9


def test_a_failing_account_exits_1_with_the_summary_and_names_the_check_in_json(account, builder, tmp_path):
    ec2 = account.client("ec2")
    ec2.delete_route(RouteTableId=main_route_table(ec2)["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\nimage: {{base_ami_name_filter: '{BASE_FILTER}'}}\n"
    )
    result = builder("preflight")
    assert result.code == 1, result.out + result.err
    lines = result.out.splitlines()
    assert lines[-1] == "preflight: FAILED: 1 of 9 checks failed, 2 warnings"
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL subnet:") and "has no default route" in failed[0]

    answer = builder("--json", "preflight")
    assert answer.code == 1
    document = json.loads(answer.out)
    assert document["ok"] is False
    assert [c["name"] for c in document["checks"] if c["status"] == "fail"] == ["subnet"]
    assert "NAT gateway" in next(c for c in document["checks"] if c["name"] == "subnet")["fix"]


def test_no_credentials_is_one_failure_and_nothing_else_is_tried(aws, monkeypatch, tmp_path):
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cfg = config()
    [only] = preflight.run(AwsClients(cfg), cfg)
    assert (only.name, only.status) == ("credentials", "fail")
    assert "Unable to locate credentials" in only.detail and "AWS_PROFILE" in only.fix


def test_without_credentials_the_summary_says_one_failed_and_the_rest_did_not_run(aws, builder, monkeypatch, tmp_path):
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = builder("preflight")
    assert result.code == 1
    assert result.out.splitlines()[-1] == (
        "preflight: FAILED: 1 of 1 check failed; 8 other checks not run (without credentials they only repeat that)"
    )


@pytest.mark.parametrize(
    ("statuses", "planned", "line"),
    [
        (["ok"], 1, "preflight: ok (1 check passed)"),
        (["ok", "warn"], 2, "preflight: ok (2 checks passed, 1 warning)"),
        (
            ["fail", "fail", "ok", "fail", "warn", "warn", "fail", "ok"],
            8,
            "preflight: FAILED: 4 of 8 checks failed, 2 warnings",
        ),
        (["ok", "fail"], 2, "preflight: FAILED: 1 of 2 checks failed"),
        (
            ["fail"],
            2,
            "preflight: FAILED: 1 of 1 check failed; 1 other check not run (without credentials they only repeat that)",
        ),
    ],
)
def test_the_summary_counts_the_failed_checks_in_words(statuses, planned, line):
    checks = [preflight.Check(f"check {i}", status, "detail") for i, status in enumerate(statuses)]
    assert preflight.summary(checks, planned) == line


def test_a_vpc_overlapping_the_platforms_docker_network_is_warned_about(account):
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.1.0/24", AvailabilityZone=ZONE)["Subnet"]["SubnetId"]
    cfg = PlatformConfig.model_validate({"version": 1, "aws": {"subnet_id": subnet}})
    found = preflight.vpc_range(AwsClients(cfg), cfg)
    assert found.status == "warn", found
    assert "172.20.0.0/16 overlaps the platform's Docker network" in found.detail
    assert "172.20.0.2 is the edge's fixed address" in found.detail and "leave out 172.20.0.0/16" in found.fix
    assert check("VPC range").status == "ok"  # the default VPC, 172.31.0.0/16


def test_a_subnet_without_a_way_out_fails_with_the_fix(account):
    ec2 = account.client("ec2")
    table = main_route_table(ec2)
    ec2.delete_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    found = check("subnet")
    assert found.status == "fail" and "has no default route" in found.detail
    assert "NAT gateway" in found.fix


def test_an_internet_gateway_without_public_ips_fails_and_a_nat_gateway_passes(account):
    ec2 = account.client("ec2")
    [subnet] = ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": [ZONE]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    found = check("subnet")
    assert found.status == "fail" and "gives instances no public IP" in found.detail
    assert f"--subnet-id {subnet['SubnetId']} --map-public-ip-on-launch" in found.fix

    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    table = main_route_table(ec2)
    ec2.replace_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
    found = check("subnet")
    assert found.status == "ok" and f"out through {nat}" in found.detail


def behind_a_nat_gateway(ec2) -> str:
    """The zone's default subnet, its 0.0.0.0/0 through a NAT gateway and no public IPs: a private subnet."""
    [subnet] = ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": [ZONE]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    ec2.replace_route(
        RouteTableId=main_route_table(ec2)["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat
    )
    return nat


def test_a_private_subnet_fails_the_bake_for_packers_ssh_but_passes_a_launch(account, builder, tmp_path):
    nat = behind_a_nat_gateway(account.client("ec2"))
    found = check("build SSH")
    assert found.status == "fail"
    assert f"goes out through {nat}, not an internet gateway" in found.detail
    assert "Packer's SSH cannot reach the build instance" in found.detail
    assert "bake in a public subnet" in found.fix and "--set aws.subnet_id=" in found.fix

    cfg = config()
    launch = preflight.run(AwsClients(cfg), cfg, preflight.FOR_LAUNCH)
    assert "build SSH" not in [c.name for c in launch]
    assert [c.name for c in launch if c.status == "fail"] == []  # the instance only needs a way out

    (tmp_path / "platform.yaml").write_text(
        f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\nimage: {{base_ami_name_filter: '{BASE_FILTER}'}}\n"
    )
    baked_now = builder("bake", "--target", "aws", "--dry-run")
    assert baked_now.code == 1 and "FAIL build SSH:" in baked_now.err
    # Told where to connect (the tests' local VM, a forwarded port), Packer never uses the instance's address.
    directed = builder("bake", "--target", "aws", "--dry-run", "--packer-var", "aws_ssh_host=10.0.0.9")
    assert "bake stopped before changing anything" not in directed.err, directed.err


def test_a_public_subnet_passes_build_ssh_and_a_broken_one_is_left_to_the_subnet_check(account):
    assert check("build SSH").status == "ok"
    ec2 = account.client("ec2")
    ec2.delete_route(RouteTableId=main_route_table(ec2)["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    found = check("build SSH")
    assert found.status == "warn" and "see the subnet check" in found.detail


def test_a_configured_subnet_that_does_not_exist_fails(account):
    found = check("subnet", config(aws={"subnet_id": "subnet-0123456789abcdef0"}))
    assert found.status == "fail" and "does not exist" in found.detail


def test_a_xen_type_fails_and_a_type_not_offered_in_the_zone_fails(account):
    found = check("instance type", config(aws={"instance_type": "t2.micro"}))
    assert found.status == "fail" and "runs on Xen" in found.detail

    class NotOffered:
        """moto offers every type in every zone: a zone without it is scripted."""

        def __init__(self, ec2):
            self.ec2 = ec2

        def describe_instance_type_offerings(self, **_):
            return {"InstanceTypeOfferings": []}

    cfg = config()
    clients = AwsClients(cfg)
    clients.__dict__["ec2"] = NotOffered(clients.ec2)
    found = check("instance type", cfg, clients)
    assert found.status == "fail" and f"m6i.2xlarge is not offered in {ZONE}" in found.detail


class ScriptedQuotas:
    """Service Quotas as EC2's quotas read: moto answers only for VPC quotas."""

    def __init__(self, standard: float):
        self.quotas = [
            {
                "QuotaCode": "L-1216C47A",
                "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                "Value": standard,
            },
            {"QuotaCode": "L-DB2E81BA", "QuotaName": "Running On-Demand G and VT instances", "Value": 0.0},
        ]

    def get_paginator(self, _name):
        quotas = self.quotas

        class Pages:
            def paginate(self, ServiceCode):
                assert ServiceCode == "ec2"
                return [{"Quotas": quotas}]

        return Pages()


def with_quotas(cfg, quotas) -> AwsClients:
    clients = AwsClients(cfg)
    real = clients.client
    clients.client = lambda service: quotas if service == "service-quotas" else real(service)
    return clients


def test_vcpu_quota_counts_the_family_already_running(account):
    ec2 = account.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.4xlarge")  # 16 vCPUs, standard
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge")  # another quota
    cfg = config()  # m6i.2xlarge: 8 vCPUs

    enough = check("vCPU quota", cfg, with_quotas(cfg, ScriptedQuotas(standard=32)))
    assert enough.status == "ok" and "16 of 32 vCPUs in use, m6i.2xlarge needs 8" in enough.detail

    short = check("vCPU quota", cfg, with_quotas(cfg, ScriptedQuotas(standard=20)))
    assert short.status == "fail" and "16 of 20 vCPUs in use" in short.detail and "L-1216C47A" in short.fix

    gpu = config(aws={"instance_type": "g5.xlarge"})
    assert (
        "Running On-Demand G and VT instances" in check("vCPU quota", gpu, with_quotas(gpu, ScriptedQuotas(32))).detail
    )


def test_missing_ssm_parameters_are_named(account):
    found = check("SSM parameters", config(providers={"anthropic_api_key_parameter": "/ai-platform/providers/claude"}))
    assert found.status == "fail" and "/ai-platform/providers/claude not found" in found.detail
    assert "/ai-platform/tailscale/auth-key" not in found.detail  # stored by the fixture


def test_kms_a_disabled_key_and_an_ami_key_that_auto_scaling_may_not_use_fail(account):
    kms = account.client("kms")
    data_key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=data_key)
    image_key = kms.create_key()["KeyMetadata"]["KeyId"]
    cfg = config(
        data_volume={"availability_zone": ZONE, "kms_key_id": data_key},
        image={"kms_key_id": image_key},
    )
    found = check("KMS keys", cfg)
    assert found.status == "fail"
    assert f"data_volume.kms_key_id {data_key} is Disabled" in found.detail
    assert f"image.kms_key_id {image_key}: its key policy and grants do not name AWSServiceRoleForAutoScaling" in (
        found.detail
    )

    kms.enable_key(KeyId=data_key)
    role = f"arn:aws:iam::{OWN_ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    kms.create_grant(KeyId=image_key, GranteePrincipal=role, Operations=["Decrypt", "CreateGrant"])
    assert check("KMS keys", cfg).status == "ok"


class AwsManagedKms:
    """KMS as AWS answers for an AWS-managed key (KeyManager AWS): moto calls even aws/ebs CUSTOMER."""

    def __init__(self, kms, managed: set[str]):
        self.kms, self.managed = kms, managed

    def describe_key(self, KeyId):
        answer = self.kms.describe_key(KeyId=KeyId)
        if KeyId in self.managed:
            answer["KeyMetadata"]["KeyManager"] = "AWS"
        return answer

    def __getattr__(self, name):
        return getattr(self.kms, name)


def with_aws_managed(cfg, managed: set[str]) -> AwsClients:
    clients = AwsClients(cfg)
    real = clients.client
    clients.client = lambda service, region=None: (
        AwsManagedKms(real(service, region), managed) if service == "kms" else real(service, region)
    )
    return clients


def test_kms_a_shared_ami_under_an_aws_managed_key_fails_by_what_kms_says_not_its_name(account):
    """`config validate` refuses only the alias aws/ebs; the same key by its id or ARN is caught here."""
    home, copy = account.client("kms"), account.client("kms", "eu-west-1")
    role = f"arn:aws:iam::{OWN_ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    image_key = home.create_key()["KeyMetadata"]["KeyId"]
    home.create_grant(KeyId=image_key, GranteePrincipal=role, Operations=["Decrypt"])
    copy_key = copy.create_key()["KeyMetadata"]["KeyId"]
    image = {"kms_key_id": image_key, "copy_to_regions": ["eu-west-1"], "region_kms_key_ids": {"eu-west-1": copy_key}}
    shared = config(image={**image, "share_with_accounts": ["210987654321"]})

    found = check("KMS keys", shared, with_aws_managed(shared, {image_key, copy_key}))
    assert found.status == "fail"
    assert f"image.kms_key_id {image_key} is AWS-managed, and image.share_with_accounts is set" in found.detail
    assert f"image.region_kms_key_ids.eu-west-1 {copy_key} is AWS-managed" in found.detail
    assert "customer-managed key of us-east-1 whose key policy lets 210987654321 use it" in found.fix
    assert "customer-managed key of eu-west-1" in found.fix

    private = config(image=image)  # not shared: an AWS-managed key will do
    assert check("KMS keys", private, with_aws_managed(private, {image_key, copy_key})).status == "ok"
    assert check("KMS keys", shared).status == "ok"  # customer-managed keys (moto's own answer)


def test_kms_a_secure_parameters_key_that_is_disabled_or_being_deleted_fails(account):
    kms, ssm = account.client("kms"), account.client("ssm")
    disabled = kms.create_key()["KeyMetadata"]["KeyId"]
    ssm.put_parameter(
        Name="/ai-platform/tailscale/auth-key", Value="tskey-test", Type="SecureString", KeyId=disabled, Overwrite=True
    )
    cfg = config(providers={"anthropic_api_key_parameter": "/ai-platform/providers/claude"})
    assert check("KMS keys", cfg).status == "ok"
    assert f"SSM parameter /ai-platform/tailscale/auth-key {disabled} enabled" in check("KMS keys", cfg).detail

    kms.disable_key(KeyId=disabled)
    going = kms.create_key()["KeyMetadata"]["KeyId"]
    ssm.put_parameter(Name="/ai-platform/providers/claude", Value="sk-x", Type="SecureString", KeyId=going)
    kms.schedule_key_deletion(KeyId=going, PendingWindowInDays=7)
    found = check("KMS keys", cfg)
    assert found.status == "fail"
    assert f"SSM parameter /ai-platform/tailscale/auth-key {disabled} is Disabled" in found.detail
    assert f"SSM parameter /ai-platform/providers/claude {going} is PendingDeletion" in found.detail


def test_kms_a_copy_regions_key_is_looked_up_in_that_region_and_must_be_enabled(account):
    here = account.client("kms").create_key()["KeyMetadata"]["KeyId"]  # us-east-1's, not eu-west-1's
    there = account.client("kms", "eu-west-1")
    disabled = there.create_key()["KeyMetadata"]["KeyId"]
    there.disable_key(KeyId=disabled)
    cfg = config(
        image={
            "copy_to_regions": ["eu-west-1", "eu-central-1"],
            "region_kms_key_ids": {"eu-west-1": here, "eu-central-1": disabled},
        }
    )
    found = check("KMS keys", cfg)
    assert found.status == "fail"
    assert f"image.region_kms_key_ids.eu-west-1 {here}: NotFoundException" in found.detail
    assert "check image.region_kms_key_ids.eu-west-1 (a key of eu-west-1)" in found.fix
    # A key of eu-west-1 named for eu-central-1 is not found there either; one of its own must be enabled.
    assert f"image.region_kms_key_ids.eu-central-1 {disabled}: NotFoundException" in found.detail

    ours = account.client("kms", "eu-central-1").create_key()["KeyMetadata"]["KeyId"]
    cfg = config(image={"copy_to_regions": ["eu-west-1"], "region_kms_key_ids": {"eu-west-1": disabled}})
    assert f"image.region_kms_key_ids.eu-west-1 {disabled} is Disabled" in check("KMS keys", cfg).detail
    cfg = config(image={"copy_to_regions": ["eu-central-1"], "region_kms_key_ids": {"eu-central-1": ours}})
    assert check("KMS keys", cfg).status == "ok"


def test_no_base_ami_fails_with_the_settings_to_change(account):
    found = check("base AMI", config(image={"base_ami_name_filter": "no-such-image-*"}))
    assert found.status == "fail" and "no AMI of owner" in found.detail and "image.base_ami_name_filter" in found.fix


def test_launch_and_bake_run_their_checks_first_and_change_nothing(aws, baked, builder, tmp_path):
    ec2 = aws.client("ec2")
    table = main_route_table(ec2)
    ec2.delete_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")

    launched = builder("launch", "alpha")
    assert launched.code == 1
    assert "launch stopped before changing anything; the account lacks:" in launched.err
    assert "FAIL subnet:" in launched.err and "has no default route" in launched.err
    assert ec2.describe_volumes()["Volumes"] == [] or all(
        tag["Key"] != "ai-platform:instance" for v in ec2.describe_volumes()["Volumes"] for tag in v.get("Tags", [])
    )
    assert aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []

    baked_now = builder("bake", "--target", "aws", "--dry-run")
    assert baked_now.code == 1 and "bake stopped before changing anything" in baked_now.err


def test_upgrade_runs_its_checks_before_the_instance_stops(aws, baked, builder, tmp_path):
    """An upgrade ends the instance before it starts the next: a start the account cannot make
    would leave the platform down, so it is refused while the instance still runs."""
    from moto_server import make_tagged_ami

    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    assert builder("launch", "alpha").code == 0
    ec2 = aws.client("ec2")
    running = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    newer = make_tagged_ami(ec2, baked, "ai-platform-build-2", {"ai-platform:platform": "ai-platform"})
    ec2.delete_route(RouteTableId=main_route_table(ec2)["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")

    upgraded = builder("upgrade", "alpha", "--ami", newer, "--wait-timeout", "5")
    assert upgraded.code == 1
    assert "upgrade stopped before changing anything; the account lacks:" in upgraded.err
    assert "FAIL subnet:" in upgraded.err
    states = {
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert [states[instance] for instance in running] == ["running"]
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"]
    assert len(versions) == 1
