#!/bin/sh
# Non-interactive apt for the rest of the bake: nothing may ask a question or hold the lock.
set -eu
export DEBIAN_FRONTEND=noninteractive
# needrestart (Ubuntu 22.04) would ask which services to restart: restart them, never ask.
mkdir -p /etc/needrestart/conf.d
echo "\$nrconf{restart} = 'a';" >/etc/needrestart/conf.d/90-ai-platform-bake.conf
# unattended-upgrades and the apt timers must not take the dpkg lock under us.
systemctl stop unattended-upgrades.service apt-daily.timer apt-daily-upgrade.timer \
    apt-daily.service apt-daily-upgrade.service 2>/dev/null || true
if [ -n "${APT_MIRROR:-}" ]; then
    # Point every archive at the mirror (image.mirrors.apt).
    for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$list" ] || continue
        sed -i -E "s#https?://(deb\.debian\.org|[a-z0-9.-]*archive\.ubuntu\.com|security\.ubuntu\.com|security\.debian\.org)#${APT_MIRROR%/}#g" "$list"
    done
fi
# No initramfs rebuilds during the bake: no kernel is installed here, only package hooks (fuse3)
# trigger them, and under TCG one rebuild takes minutes. 90-sysprep.sh turns them back on.
if [ -f /etc/initramfs-tools/update-initramfs.conf ]; then
    sed -i 's/^update_initramfs=.*/update_initramfs=no/' /etc/initramfs-tools/update-initramfs.conf
fi
# man-db reindexes every manual page after each install: minutes on a slow disk, for pages nobody
# reads on a server. 90-sysprep.sh turns it back on.
if command -v debconf-set-selections >/dev/null && dpkg -s man-db >/dev/null 2>&1; then
    echo "man-db man-db/auto-update boolean false" | debconf-set-selections
fi
# --force-unsafe-io: dpkg skips its fsync per file (as Debian's own container images do); a bake that
# dies halfway is thrown away, and the image is synced when the build machine shuts down.
# Acquire::Languages=none: no Translation-* lists (package descriptions in other languages, which
# nothing here reads): 6 of the 15 MB apt fetched for Debian, and their parsing, under emulation.
apt() { apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Languages=none -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io -q "$@"; }
# --error-on=any: an archive that cannot be fetched is an error, not a warning (apt >= 2.1.16).
if ! apt update --error-on=any; then
    echo "apt-get update failed: ${APT_MIRROR:-the image archives} cannot be reached (image.mirrors.apt sets a mirror)" >&2
    exit 1
fi
# No service starts from a package's install script (policy-rc.d says no, as in Debian's container
# images): under TCG the first dockerd start alone took minutes, and 20-docker.sh starts it once,
# configured. Removed again even when the install fails.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
packages=$(grep -v '^#' "$PAYLOAD/provision/apt-packages.txt")
# The GPU image's base (AWS's Deep Learning Base AMI) brings Docker's own docker-ce, which the NVIDIA
# Container Toolkit was set up with there; the distribution's docker.io would conflict with it.
if [ "${GPU_IMAGE:-false}" = true ] && command -v dockerd >/dev/null; then
    packages=$(printf '%s\n' "$packages" | grep -vx docker.io)
fi
# shellcheck disable=SC2086 # one word per package
apt install -y --no-install-recommends $packages
