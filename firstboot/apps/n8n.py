"""n8n: on its own edge port; its editor and webhook URLs come from .env (N8N_PUBLIC_URL)."""

from __future__ import annotations

from firstboot.apps.base import Instance, Rendered

SERVICE = "n8n"
INDEX = ("n8n", None)


def render(instance: Instance) -> Rendered:
    return Rendered([])
