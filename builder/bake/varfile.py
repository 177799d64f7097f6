"""The Packer var file, rendered from the platform config: the only way settings reach the template.

Precedence is the config's own (flags > BUILDER__* environment > platform.yaml > defaults);
Packer sees only the resolved values, so `builder config show` explains every one of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from builder.bake.bake_plan import BakePlan
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError


def render_var_file(config: PlatformConfig, bake: BakePlan, work: Path, target_variables: dict) -> dict:
    image = config.image
    variables = {
        "platform": config.name,
        "build_id": bake.build_id,
        "input_hash": bake.input_hash,
        "payload_dir": str(work / "payload"),
        "output_dir": str(work / "output"),
        "mirrors": {
            "apt": image.mirrors.apt or "",
            "registry": image.mirrors.registry or "",
            "models": image.mirrors.models or "",
            "tailscale_apt": image.mirrors.tailscale_apt,
            "rclone": image.mirrors.rclone,
        },
        "source_image": bake.base,
        # The GPU image's provisioning (image/provision/25-nvidia.sh) runs only when this is true.
        "gpu_image": bake.variant == "gpu",
        "aws_region": config.aws.region,
        "aws_instance_type": config.aws.instance_type,
        "aws_ami_name": image.ami_name.replace("{platform}", config.name).replace("{build_id}", bake.build_id),
        # Packer 1.6.6 checks every source's settings even under -only=qemu.local: never empty.
        "aws_source_ami": bake.base if bake.target == "aws" else "unused-by-a-local-bake",
        "aws_root_volume_gib": image.root_volume_size_gib,
        "aws_kms_key_id": image.kms_key_id or "",
        "aws_encrypt_boot": image.encrypted,
        "aws_subnet_id": config.aws.subnet_id or "",
        "aws_copy_regions": list(image.copy_to_regions),
        "aws_region_kms_key_ids": dict(image.region_kms_key_ids),
        "aws_share_with_accounts": list(image.share_with_accounts),
        # "auto" is resolved by probing where the local base is prepared (bake/local_base.py); until
        # then the template gets the choice that works everywhere.
        "local_accelerator": "tcg" if config.local.accelerator == "auto" else config.local.accelerator,
        "local_disk_size": f"{config.local.disk_size_gib}G",
    }
    variables.update(target_variables)
    return variables


# How Packer reaches the build machine, never what goes into the image: so they may be set per bake
# (`--packer-var`) without being part of the input hash.
CONNECTION_VARIABLES = (
    "aws_ssh_host",
    "aws_ssh_port",
    "aws_ssh_username",
    "aws_ssh_keypair_name",
    "aws_ssh_private_key_file",
)


def connection_overrides(items: Iterable[str]) -> dict:
    """`NAME=VALUE` pairs for the connection variables; VALUE is JSON when it parses (a port), else text."""
    overrides = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or name not in CONNECTION_VARIABLES:
            raise BuilderError(
                f"--packer-var {item!r}: expected NAME=VALUE with NAME one of {', '.join(CONNECTION_VARIABLES)} "
                "(how Packer reaches the build machine; everything else comes from the platform config)"
            )
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    return overrides


def aws_endpoint_variables(environ: Mapping[str, str] = os.environ) -> dict:
    """The EC2 endpoint boto3 uses (AWS_ENDPOINT_URL_EC2, then AWS_ENDPOINT_URL), for Packer too.

    Another endpoint is not AWS (a moto server in the tests): the checks that need AWS itself
    (credentials through STS, the metadata service, the region list) are skipped with it."""
    endpoint = environ.get("AWS_ENDPOINT_URL_EC2") or environ.get("AWS_ENDPOINT_URL") or ""
    return {"aws_ec2_endpoint": endpoint, "aws_offline": bool(endpoint)}
