"""The Ubuntu 22.04 cloud image as the local base, where it can be reached: downloaded once, verified
against the sha256 in the config, cached by that digest.

The image boots itself (its own boot loader), unlike the Debian 12 base, which is booted with its
kernel and initrd from outside. A download is verified before it enters the cache: a wrong or cut
file never becomes a base.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests

from builder.errors import BuilderError

CHUNK = 1 << 20


def cached_path(cache_dir: Path, sha256: str) -> Path:
    return cache_dir / f"ubuntu-22.04-{sha256[:16]}" / "root.qcow2"


def fetch_ubuntu_base(cache_dir: Path, url: str, sha256: str, log: Callable[[str], None] = print) -> Path:
    """The cloud image at `url` with digest `sha256`, from the cache or downloaded and verified first."""
    target = cached_path(cache_dir, sha256)
    if target.exists():
        log(f"ubuntu base image: cached at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"ubuntu base image: downloading {url}")
    try:
        response = requests.get(url, stream=True, timeout=(10, 60))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise BuilderError(
            f"local.ubuntu_image_url {url} cannot be fetched ({exc.__class__.__name__}): point it at a reachable "
            "copy, or use local.base_image: debian-12 (built here from Debian's archive)"
        ) from None
    size = int(response.headers.get("Content-Length") or 0)
    digest = hashlib.sha256()
    received = reported = 0
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    try:
        with response, os.fdopen(descriptor, "wb") as out:
            try:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if size and received * 10 // size > reported:
                        reported = received * 10 // size
                        log(f"ubuntu base image: {received >> 20} of {size >> 20} MiB")
            except requests.RequestException as exc:
                raise BuilderError(
                    f"local.ubuntu_image_url {url}: the download broke off after {received >> 20} MiB "
                    f"({exc.__class__.__name__}); nothing was kept, run the bake again"
                ) from None
        if digest.hexdigest() != sha256:
            raise BuilderError(
                f"local.ubuntu_image_url {url} has sha256 {digest.hexdigest()}, not local.ubuntu_image_sha256 "
                f"{sha256}: nothing was kept. Take the digest from the image's SHA256SUMS."
            )
        os.replace(partial, target)  # whole and verified, or not in the cache at all
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    log(f"ubuntu base image: verified, cached at {target}")
    return target
