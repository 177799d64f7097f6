"""The stacks' per-instance files: each enabled app's module (firstboot/apps/) renders its own, and
this writes them under /etc/ai-platform, each only when it changed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from firstboot.apps import MODULES
from firstboot.apps.base import Instance, StackConfigError
from firstboot.status import write_if_changed

__all__ = ["Instance", "StackConfigError", "enabled_modules", "write_stack_files"]


def enabled_modules(services) -> list:
    """The app modules this instance runs: those of its enabled services, and those always on."""
    return [module for module in MODULES if module.SERVICE is None or module.SERVICE in services]


def write_stack_files(etc_dir: Path, instance: Instance) -> tuple[list[str], list[str]]:
    """Render every enabled module's files and write them; returns (paths changed, warnings)."""
    modules = enabled_modules(instance.services)
    index = [(module.SERVICE, *module.INDEX) for module in modules if module.INDEX]
    index += [(name, service.title, service.path) for name, service in instance.custom.items()]
    instance = replace(instance, index=index)
    changed: list[str] = []
    warnings: list[str] = []
    for module in modules:
        rendered = module.render(instance)
        warnings += rendered.warnings
        for file in rendered.files:
            path = etc_dir / file.path
            if write_if_changed(path, file.text, file.mode):
                changed.append(str(path))
    return changed, warnings
