"""The platform's secrets in SSM Parameter Store (SecureString), by the names the config gives them.

Values come from standard input or a hidden prompt, never from the command line (it would land in
shell history and the process list), and are never printed: `list` shows names and dates only.
"""

from __future__ import annotations

from typing import Any

from builder.config.schema import PlatformConfig
from builder.errors import BuilderError


def secret_parameters(config: PlatformConfig) -> dict[str, str | None]:
    """Logical secret name -> SSM parameter name (None: that provider is off in the config)."""
    return {
        "tailscale-auth-key": config.tailscale.auth_key_parameter,
        "anthropic-api-key": config.providers.anthropic_api_key_parameter,
        "openai-api-key": config.providers.openai_api_key_parameter,
        "rclone-config": config.services.gdrive.rclone_config_parameter if config.services.gdrive.enabled else None,
    }


OPTIONAL_SECRETS = ("rclone-config",)  # without it the platform runs; Drive stays off
MULTILINE_SECRETS = ("rclone-config",)  # a file, not one line
SSM_STANDARD_LIMIT, SSM_ADVANCED_LIMIT = 4096, 8192  # bytes of a parameter's value per tier


def parameter_for(config: PlatformConfig, name: str) -> str:
    parameters = secret_parameters(config)
    if name not in parameters:
        raise BuilderError(f"no secret {name!r}; the secrets are: {', '.join(parameters)}")
    parameter = parameters[name]
    if parameter is None:
        if name == "rclone-config":
            raise BuilderError(f"{name}: services.gdrive is disabled; enable it first")
        key = "providers." + name.replace("-", "_").replace("_api_key", "_api_key_parameter")
        raise BuilderError(f"{name}: the config names no SSM parameter for it; set {key} first")
    return parameter


def secret_request(parameter: str, value: str, kms_key: str | None = None, multiline: bool = False) -> dict:
    """The put_parameter arguments that store `value`, checked as SSM would (nothing is sent)."""
    if multiline:
        value = value.strip() + "\n"
        if len(value.encode()) > SSM_ADVANCED_LIMIT:
            raise BuilderError(f"the file is over {SSM_ADVANCED_LIMIT} bytes, SSM's limit (nothing was stored)")
    elif not value.strip() or "\n" in value.strip():  # a bare newline (`echo | ...`) is empty too
        raise BuilderError("the secret must be one non-empty line (nothing was stored)")
    else:
        value = value.strip()
    arguments = {"Name": parameter, "Value": value, "Type": "SecureString", "Overwrite": True}
    if len(value.encode()) > SSM_STANDARD_LIMIT:
        arguments["Tier"] = "Advanced"  # 4 KB is the standard tier's limit
    if kms_key:
        arguments["KeyId"] = kms_key
    return arguments


def put_secret(ssm: Any, parameter: str, value: str, kms_key: str | None = None, multiline: bool = False) -> int:
    return ssm.put_parameter(**secret_request(parameter, value, kms_key, multiline))["Version"]


def stored_parameter(ssm: Any, parameter: str) -> dict | None:
    """What SSM holds under that name (version, type, tier, date; never the value), or None."""
    found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [parameter]}])["Parameters"]
    return found[0] if found else None


def list_secrets(ssm: Any, config: PlatformConfig) -> list[dict]:
    rows = []
    for name, parameter in secret_parameters(config).items():
        row = {"secret": name, "parameter": parameter, "stored": False, "last_modified": None, "version": None}
        found = stored_parameter(ssm, parameter) if parameter else None
        if found:
            row.update(stored=True, last_modified=str(found["LastModifiedDate"]), version=found["Version"])
        rows.append(row)
    return rows
