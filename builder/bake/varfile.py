"""The Packer var file, rendered from the platform config: the only way settings reach the template.

Precedence is the config's own (flags > BUILDER__* environment > platform.yaml > defaults);
Packer sees only the resolved values, so `builder config show` explains every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from builder.config.schema import PlatformConfig

if TYPE_CHECKING:
    from builder.bake.bake import BakePlan


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
        },
        "source_image": bake.base,
        "aws_region": config.aws.region,
        "aws_instance_type": config.aws.instance_type,
        "aws_ami_name": image.ami_name.replace("{platform}", config.name).replace("{build_id}", bake.build_id),
        "aws_base_ami_owner": image.base_ami_owner,
        "aws_base_ami_name_filter": image.base_ami_name_filter,
        "aws_root_volume_gib": image.root_volume_size_gib,
        "aws_kms_key_id": image.kms_key_id or "",
        "aws_copy_regions": list(image.copy_to_regions),
        "aws_region_kms_key_ids": dict(image.region_kms_key_ids),
        "aws_share_with_accounts": list(image.share_with_accounts),
        "local_accelerator": config.local.accelerator,
        "local_disk_size": f"{config.local.disk_size_gib}G",
    }
    variables.update(target_variables)
    return variables
