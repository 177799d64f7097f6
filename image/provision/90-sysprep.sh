#!/bin/sh
# Sysprep: nothing that identifies this build machine may reach an instance.
set -eu
# Docker: no containers, no runtime state (images stay).
docker ps -aq | xargs -r docker rm -f >/dev/null
systemctl stop docker.service docker.socket
rm -rf /var/lib/docker/network/files /var/lib/docker/containers/* /var/lib/docker/runtimes 2>/dev/null || true
# Tailscale: every instance made from an image with state here would share one node key.
systemctl stop tailscaled.service 2>/dev/null || true
rm -rf /var/lib/tailscale/* 2>/dev/null || true
# Identity: an empty machine-id (systemd makes a new one at first boot), no SSH host keys, no build
# host name (an instance booted as "ai-platform-bake" until cloud-init renamed it).
truncate -s 0 /etc/machine-id
echo localhost >/etc/hostname
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
# cloud-init runs again, as on a new instance.
cloud-init clean --logs
# No build user can log in: keys removed, passwords locked.
for keys in /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys; do
    [ -e "$keys" ] && rm -f "$keys"
done
for user in packer ubuntu; do
    id "$user" >/dev/null 2>&1 && passwd -l "$user" >/dev/null
done
# (The build user keeps sudo until the end: the image suite and the shutdown still need it; the
# local source's shutdown command deletes that user, and cloud-init rewrites its sudoers file.)
# The bake's own settings and caches (10-apt.sh paused initramfs rebuilds).
if [ -f /etc/initramfs-tools/update-initramfs.conf ]; then
    sed -i 's/^update_initramfs=.*/update_initramfs=yes/' /etc/initramfs-tools/update-initramfs.conf
fi
if dpkg -s man-db >/dev/null 2>&1; then
    echo "man-db man-db/auto-update boolean true" | debconf-set-selections
fi
rm -f /etc/needrestart/conf.d/90-ai-platform-bake.conf
apt-get clean
rm -rf /var/lib/apt/lists/*
# Logs: empty files (services keep their open handles), journal rotated away.
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
find /var/log -type f -exec truncate -s 0 {} +
