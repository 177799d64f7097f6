"""Ollama: nothing per instance (its models are baked, its settings come from .env); no index entry,
as only the other apps talk to it."""

from __future__ import annotations

from firstboot.apps.base import Instance, Rendered

SERVICE = "ollama"
INDEX = None


def render(instance: Instance) -> Rendered:
    return Rendered([])
