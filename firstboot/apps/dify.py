"""Dify: on its own edge port; its public URLs come from .env (DIFY_PUBLIC_URL, written by the agent)."""

from __future__ import annotations

from firstboot.apps.base import Instance, Rendered

SERVICE = "dify"
INDEX = ("Dify", None)


def render(instance: Instance) -> Rendered:
    return Rendered([])
