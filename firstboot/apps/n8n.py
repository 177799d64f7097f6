"""n8n: on its own edge port; its editor and webhook URLs come from .env (N8N_PUBLIC_URL).

It also gets a ready credential for the gateway: "LiteLLM" of n8n's OpenAI type (openAiApi: apiKey
and url, read in n8n-nodes-base 2.37.10) at http://litellm:4000/v1 with n8n's own virtual key, so a
workflow's OpenAI node reaches every model (auto, local, smart, embed) with no hand step. The stack's
post-start imports it at every start (`n8n import:credentials`, an upsert on its id: the owner's own
credentials are never touched; this one is kept as rendered).
"""

from __future__ import annotations

import json

from firstboot.apps.base import File, Instance, Rendered, StackConfigError

SERVICE = "n8n"
INDEX = ("n8n", None)
CREDENTIALS = "n8n/credentials.json"  # holds a key: 0600, read by the post-start as root
CREDENTIAL_ID = "aiPlatformLiteLLM"
GATEWAY_URL = "http://litellm:4000/v1"
KEY_VARIABLE = "LITELLM_KEY_N8N"


def gateway_credential(key: str) -> dict:
    """As `n8n export:credentials --decrypted` writes one; import encrypts `data` with N8N_ENCRYPTION_KEY."""
    return {
        "id": CREDENTIAL_ID,
        "name": "LiteLLM (ai-platform)",
        "type": "openAiApi",
        "data": {"apiKey": key, "url": GATEWAY_URL},
    }


def render(instance: Instance) -> Rendered:
    key = instance.env.get(KEY_VARIABLE)
    if not key:
        raise StackConfigError(f"{KEY_VARIABLE} is missing from the .env: n8n's gateway credential needs it")
    text = json.dumps([gateway_credential(key)], indent=2) + "\n"
    return Rendered([File(CREDENTIALS, text, mode=0o600)])
