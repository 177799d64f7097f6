"""AnythingLLM: on its own edge port (it cannot live under a sub-path); its settings come from .env."""

from __future__ import annotations

from firstboot.apps.base import Instance, Rendered

SERVICE = "anythingllm"
INDEX = ("AnythingLLM", None)


def render(instance: Instance) -> Rendered:
    return Rendered([])
