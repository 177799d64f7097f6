"""The types every app module shares: what it renders from and what it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from firstboot.custom_services import CustomService
from firstboot.instance_config import StackSettings


class StackConfigError(Exception):
    pass


@dataclass(frozen=True)
class Instance:
    """What every module renders from."""

    settings: StackSettings
    services: Sequence[str]
    env: Mapping[str, str]  # the stacks' .env as written this boot
    providers_with_keys: Sequence[str] = ()
    tailscale_ip: str = ""
    tailnet: bool = True
    # The names and addresses clients reach this node by (MagicDNS name, host name).
    node_names: Sequence[str] = ()
    stacks_dir: Path = Path("/opt/ai-platform/stacks")  # the image's stack folders (templates)
    # The index page's entries, (title, path under the main port, or None: the app's own port), of
    # the enabled apps in index order: each app module's INDEX.
    index: Sequence[tuple[str, str, str | None]] = ()
    # The owner's own services this instance runs (services.custom), as the image's manifest has them.
    custom: Mapping[str, CustomService] = field(default_factory=dict)


@dataclass(frozen=True)
class File:
    path: str  # under /etc/ai-platform
    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class Rendered:
    files: list[File]
    warnings: list[str] = field(default_factory=list)
