"""Where a local platform keeps its files: local.state_dir/<platform>/ (see builder/local/instances.py).

Below everything that reads or writes there (instances, the bake's image store, the owner's
credentials), so that none of them imports another for a path.
"""

from __future__ import annotations

from pathlib import Path

from builder.config.schema import PlatformConfig


def platform_dir(config: PlatformConfig) -> Path:
    return Path(config.local.state_dir).expanduser() / config.name
