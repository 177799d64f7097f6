"""The owner's credentials: what only the owner may hold (the edge's owner password, the OpenClaw
gateway token, AnythingLLM's, Dify's and n8n's passwords, LiteLLM's master key and the LiteLLM key
the owner enters in Dify).

builder makes them at an instance's first launch and keeps them where it can show them again
(`builder credentials NAME`) and the instance's agent can read them at every boot, never in the
user-data: on AWS one SSM SecureString per instance (its role may read it, nothing else may write
it), locally a 0600 file in the state dir that qemu hands the VM through fw_cfg. Which credentials
exist, and their sizes, is the image's .env contract (source "owner").
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.local.paths import platform_dir
from builder.source_tree import ROOT

# builder's own copy of the image's contract: the checkout's, or the installed wheel's (source_tree).
CONTRACT = ROOT / "image/rootfs/opt/ai-platform/env-contract.json"
FW_CFG_NAME = "opt/ai-platform/owner-credentials"  # qemu wants user fw_cfg names under opt/


@dataclass(frozen=True)
class Credential:
    name: str
    bytes: int
    prefix: str
    description: str
    stacks: tuple[str, ...] = ()  # the stacks that read it (the contract's "stacks")


def owner_credentials(contract: Path = CONTRACT) -> list[Credential]:
    document = json.loads(contract.read_text(encoding="utf-8"))
    return [
        Credential(
            v["name"],
            int(v.get("bytes", 32)),
            v.get("prefix", ""),
            v.get("description", ""),
            tuple(v.get("stacks", ())),
        )
        for v in document["variables"]
        if v.get("source") == "owner"
    ]


def complete(existing: dict[str, str], token: Callable[[int], str] = secrets.token_hex) -> dict[str, str]:
    """`existing` with every credential the contract names; present ones never change."""
    values = dict(existing)
    for credential in owner_credentials():
        values.setdefault(credential.name, credential.prefix + token(credential.bytes))
    return values


def parameter_name(config: PlatformConfig, instance: str) -> str:
    return f"/{config.name}/instances/{instance}/owner-credentials"


def ensure_aws(
    ssm: Any, config: PlatformConfig, instance: str, log: Callable[[str], None], made: list[str] | None = None
) -> str:
    """The instance's SSM parameter, made (or completed) now if needed; returns its name. Its name is
    added to `made` when this call created it (a launch that fails removes what it made)."""
    name = parameter_name(config, instance)
    current = read_aws(ssm, config, instance)
    values = complete(current or {})
    if values != current:
        ssm.put_parameter(
            Name=name,
            Value=json.dumps(values, sort_keys=True),
            Type="SecureString",
            Overwrite=current is not None,
            Description=f"Owner credentials of {config.name}/{instance} (builder credentials {instance})",
        )
        log(f"owner credentials {'completed' if current else 'made'} in SSM {name}")
        if current is None and made is not None:
            made.append(name)
    return name


def read_aws(ssm: Any, config: PlatformConfig, instance: str) -> dict[str, str] | None:
    try:
        value = ssm.get_parameter(Name=parameter_name(config, instance), WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    return json.loads(value)


def delete_aws(ssm: Any, config: PlatformConfig, instance: str) -> bool:
    """Delete the instance's parameter; False when there was none."""
    try:
        ssm.delete_parameter(Name=parameter_name(config, instance))
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def local_path(config: PlatformConfig, instance: str) -> Path:
    return platform_dir(config) / "credentials" / f"{instance}.json"


def ensure_local(config: PlatformConfig, instance: str) -> Path:
    """The instance's credentials file (0600, in a 0700 folder), made or completed now if needed."""
    path = local_path(config, instance)
    current = read_local(config, instance)
    values = complete(current or {})
    if values != current:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(values, handle, sort_keys=True)
        partial.replace(path)
    return path


def read_local(config: PlatformConfig, instance: str) -> dict[str, str] | None:
    path = local_path(config, instance)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise BuilderError(f"{path}: not the JSON builder wrote; remove it to make new credentials") from None
