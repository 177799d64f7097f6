"""The platform's secrets in SSM Parameter Store (SecureString), by the names the config gives them.

Values come from standard input or a hidden prompt, never from the command line (it would land in
shell history and the process list), and are never printed: `list` shows names and dates only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from builder.config.schema import PlatformConfig
from builder.errors import BuilderError


def secret_parameters(config: PlatformConfig) -> dict[str, str | None]:
    """Logical secret name -> SSM parameter name (None: not used by this config). Of the two tailnet
    credentials only the one in use is named: with an OAuth client the reusable key is not used."""
    oauth = config.tailscale.oauth_client_parameter
    return {
        "tailscale-auth-key": None if oauth else config.tailscale.auth_key_parameter,
        "tailscale-oauth-client": oauth,
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
        if name == "tailscale-auth-key":
            raise BuilderError(
                f"{name}: tailscale.oauth_client_parameter is set, so instances mint their own keys and read "
                "no reusable key; store the OAuth client with `builder secrets set-tailscale-oauth` "
                "(or remove tailscale.oauth_client_parameter to go back to a reusable key)"
            )
        if name == "tailscale-oauth-client":
            raise BuilderError(
                f"{name}: set tailscale.oauth_client_parameter first "
                "(for example /ai-platform/tailscale/oauth-client); nothing was stored"
            )
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


def tailnet_credential_parameter(config: PlatformConfig) -> str:
    """The one tailnet parameter an instance reads: the OAuth client when configured, else the reusable key."""
    return config.tailscale.oauth_client_parameter or config.tailscale.auth_key_parameter


# How tailscale tells an OAuth client secret from an auth key (tailscale/tailscale v1.102.3,
# feature/oauthkey/oauthkey.go); the agent's firstboot/tailscale_oauth.py checks the same.
OAUTH_SECRET_PREFIX = "tskey-client-"
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def oauth_client_value(client_id: str, secret: str) -> str:
    """The one-line SSM value the agent reads: {"client_id", "client_secret"}. Checked, never echoed."""
    secret = secret.strip()
    if not _CLIENT_ID.fullmatch(client_id):
        raise BuilderError(
            "--client-id: must be the OAuth client's id as Tailscale shows it (letters, digits, '_', '-'); "
            "nothing was stored"
        )
    if not secret.startswith(OAUTH_SECRET_PREFIX) or "\n" in secret or len(secret) > 512:
        raise BuilderError(
            f"the OAuth client secret must be one line starting {OAUTH_SECRET_PREFIX} (an auth key, tskey-auth-…, "
            "goes to `builder secrets set tailscale-auth-key`); nothing was stored"
        )
    return json.dumps({"client_id": client_id, "client_secret": secret}, separators=(",", ":"))
