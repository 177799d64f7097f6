#!/bin/sh
# The stacks, units and scripts exactly as image/rootfs holds them; the stacks' image references.
set -eu
cp -a "$PAYLOAD/rootfs/." /
install -m 0644 "$PAYLOAD/images.lock.json" /opt/ai-platform/images.lock.json
# rclone's mount is readable by the containers' users only with allow_other.
grep -qx user_allow_other /etc/fuse.conf 2>/dev/null || echo user_allow_other >>/etc/fuse.conf
systemctl daemon-reload
systemctl enable ai-platform-firstboot.service ai-platform-backup.timer ai-platform-health.timer \
    ai-platform-certificate.timer ai-platform-readahead.service
