"""A Debian 12 base image for the local target, built here with mmdebstrap.

Ubuntu's archive is out of reach on machines like these, so a Debian 12 image with cloud-init
stands in for the Ubuntu 22.04 cloud image. The result is cached outside the repo, keyed by
everything that shapes it (packages, mirror, the customisations below): a second build with the
same inputs returns the cached image at once; a build from nothing must always still work.

Output: root.qcow2 (ext4, label "root", no partition table), vmlinuz and initrd.img to boot it
with `-kernel`/`-initrd` and `root=LABEL=root`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "dbus",
    "cloud-init",
    "openssh-server",
    "python3",
    "sudo",
    "iproute2",
    "netbase",
    "e2fsprogs",
    "ca-certificates",
    "openssl",
)
IMAGE_SIZE = "3G"

# Files the image needs so that cloud-init ends in "done" on Debian with a NoCloud seed (LAB.md).
FILES = {
    "etc/hostname": "ai-platform-base\n",
    "etc/fstab": "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n",
    "etc/systemd/network/80-dhcp.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
    "etc/cloud/cloud.cfg.d/90-datasource.cfg": "datasource_list: [ NoCloud, None ]\n",
    "etc/cloud/cloud.cfg.d/91-debian-local.cfg": "locale: C.UTF-8\nmanage_etc_hosts: true\n",
}
ENABLE_UNITS = ("systemd-networkd.service",)


class BaseImageError(Exception):
    pass


@dataclass(frozen=True)
class BaseImage:
    disk: Path
    kernel: Path
    initrd: Path

    def exists(self) -> bool:
        return self.disk.exists() and self.kernel.exists() and self.initrd.exists()


def cache_key(mirror: str = DEFAULT_MIRROR, extra_packages: tuple[str, ...] = ()) -> str:
    shape = {
        "suite": SUITE,
        "mirror": mirror,
        "packages": sorted({*PACKAGES, *extra_packages}),
        "files": FILES,
        "enable": ENABLE_UNITS,
        "size": IMAGE_SIZE,
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def build_debian_base(
    cache_dir: Path, mirror: str = DEFAULT_MIRROR, extra_packages: tuple[str, ...] = (), log=print
) -> BaseImage:
    """The cached base image for these inputs, built first if needed (about 2 minutes)."""
    key = cache_key(mirror, extra_packages)
    target = cache_dir / f"debian-12-{key}"
    image = BaseImage(target / "root.qcow2", target / "vmlinuz", target / "initrd.img")
    if image.exists():
        log(f"debian base image: cached at {target}")
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One build of a base at a time: a second bake (or test) on this host waits for the first one's
    # and uses it, instead of building it again and then finding its place taken.
    with open(cache_dir / f".debian-12-{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("debian base image: another build of it runs on this host; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            log(f"debian base image: built meanwhile at {target}")
            return image
        _build(target, mirror, extra_packages, log)
    log(f"debian base image: built at {target}")
    return image


def _build(target: Path, mirror: str, extra_packages: tuple[str, ...], log) -> None:
    cache_dir = target.parent
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        if shutil.which(tool) is None:
            raise BaseImageError(
                f"{tool} is missing: run scripts/setup (it installs mmdebstrap, e2fsprogs, qemu-utils)"
            )
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as work:
        rootfs = Path(work) / "rootfs"
        packages = ",".join(sorted({*PACKAGES, *extra_packages}))
        log(f"debian base image: mmdebstrap {SUITE} from {mirror}")
        _run(
            ["mmdebstrap", "--variant=apt", "--mode=root", f"--include={packages}", SUITE, str(rootfs), mirror],
            f"mmdebstrap could not build the root filesystem from {mirror} (the mirror setting is local.debian_mirror)",
        )
        for relative, text in FILES.items():
            path = rootfs / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for unit in ENABLE_UNITS:
            _run(["systemctl", f"--root={rootfs}", "enable", unit], f"could not enable {unit}")
        (rootfs / "etc/machine-id").write_text("")  # every boot of a copy is a new machine
        staging = Path(work) / "out"
        staging.mkdir()
        shutil.copyfile(_newest(rootfs / "boot", "vmlinuz-*"), staging / "vmlinuz")
        shutil.copyfile(_newest(rootfs / "boot", "initrd.img-*"), staging / "initrd.img")
        raw = Path(work) / "root.raw"
        log("debian base image: ext4 root filesystem and qcow2")
        _run(["truncate", "-s", IMAGE_SIZE, str(raw)], "truncate failed")
        _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw)], "mkfs.ext4 -d failed")
        _run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(staging / "root.qcow2")], "qemu-img failed")
        staging.rename(target)  # whole or absent: an interrupted build leaves no half image in the cache


def _newest(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if not found:
        raise BaseImageError(f"no {pattern} in {directory}: is linux-image-amd64 installed in the image?")
    return found[-1]


def _run(command: list[str], failure: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise BaseImageError(f"{failure}:\n{tail}")
