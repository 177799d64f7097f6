"""Redis's password, handed over in a file instead of on its command line.

`redis-server --requirepass X` shows X in /proc/<pid>/cmdline, which every user of the host can
read. The data stack instead starts `redis-server /usr/local/etc/redis/redis.conf`, a bind mount
of the file written here at every boot: in a folder only root enters (0700), the file itself 0400
and owned by the image's `redis` user, which reads it after the image's entrypoint drops root
(docker-library/redis 6.2/alpine: `adduser -S -G redis -u 999 redis`; its docker-entrypoint.sh
`exec gosu redis "$0" "$@"` when the command is redis-server).
"""

from __future__ import annotations

import os
from pathlib import Path

from firstboot.status import write_if_changed

# Under /etc/ai-platform; the data stack's compose file mounts it (AI_PLATFORM_ETC/redis/redis.conf).
RELATIVE_PATH = Path("redis/redis.conf")
REDIS_UID = 999  # the `redis` user of the pinned image (see above)


def render(password: str) -> str:
    if not password or any(character.isspace() or character in "\"'\\" for character in password):
        # Generated secrets are hex (env.py); anything else would need quoting in Redis's config syntax.
        raise ValueError("REDIS_PASSWORD must be non-empty, without spaces, quotes or backslashes")
    return f"# Written by the firstboot agent at every boot (the password: REDIS_PASSWORD).\nrequirepass {password}\n"


def write(etc_dir: Path, password: str) -> bool:
    """Write the config if it changed; True when it did. Its folder is made 0700 every time."""
    path = etc_dir / RELATIVE_PATH
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    changed = write_if_changed(path, render(password), 0o400)
    if os.geteuid() == 0:
        os.chown(path, REDIS_UID, 0)
    return changed
