"""OpenClaw's plugins in the image (image/openclaw-plugins.json): the Signal channel is a plugin of its
own since 2026.x (@openclaw/signal), not part of OpenClaw's package, and an instance must not fetch it.

The build host fetches each npm tarball once (cached), checks it against the integrity the npm
registry publishes, and unpacks it where the clawdbot stack mounts it into OpenClaw's container
(/opt/ai-platform/stacks/clawdbot/plugins/ID → /opt/openclaw-plugins/ID, `plugins.load.paths`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from builder.errors import BuilderError
from builder.source_tree import ROOT

PINS = ROOT / "image" / "openclaw-plugins.json"
PLUGINS_DIR = Path("opt/ai-platform/stacks/clawdbot/plugins")  # under the rootfs
CONTAINER_DIR = "/opt/openclaw-plugins"  # where the clawdbot stack mounts it


def pins(path: Path = PINS) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["plugins"]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ai-platform-builder" / "npm-tarballs"


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise BuilderError(f"{what}: integrity {integrity!r} is not sha256/384/512 (Subresource Integrity form)")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise BuilderError(f"{what}: the tarball's {algorithm} is {actual}, the pin says {expected}; nothing was baked")


def fetch(pin: dict, session=None, timeout: float = 120) -> bytes:
    """The pinned tarball, from the cache or the registry, checked."""
    what = f"{pin['package']}@{pin['version']}"
    cached = cache_dir() / f"{pin['id']}-{pin['version']}.tgz"
    if cached.exists():
        data = cached.read_bytes()
        check_integrity(data, pin["integrity"], f"{what} (cached {cached})")
        return data
    import requests

    session = session or requests.Session()
    try:
        response = session.get(pin["tarball"], timeout=timeout)
    except requests.RequestException as exc:
        raise BuilderError(f"{what}: {pin['tarball']} cannot be fetched ({exc.__class__.__name__})") from None
    if response.status_code != 200:
        raise BuilderError(f"{what}: {pin['tarball']} answered HTTP {response.status_code}")
    check_integrity(response.content, pin["integrity"], what)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own: two bakes on one host may fetch the same tarball at once.
    with tempfile.NamedTemporaryFile(dir=cached.parent, prefix=f".{cached.name}.", delete=False) as temporary:
        temporary.write(response.content)
    Path(temporary.name).replace(cached)
    return response.content


def unpack(data: bytes, target: Path) -> None:
    """npm's tarball layout (package/…) into `target`; no member may leave it."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            if path.parts[:1] != ("package",) or ".." in path.parts or not (member.isfile() or member.isdir()):
                continue
            destination = target.joinpath(*path.parts[1:])
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.extractfile(member).read())
            destination.chmod(0o755 if member.mode & 0o111 else 0o644)


def write_into(rootfs: Path, session=None) -> list[str]:
    """Every pinned plugin into the rootfs copy; returns their ids."""
    done = []
    for pin in pins():
        unpack(fetch(pin, session), rootfs / PLUGINS_DIR / pin["id"])
        done.append(pin["id"])
    return done
