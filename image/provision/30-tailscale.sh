#!/bin/sh
# Tailscale from its apt repository (image.mirrors.tailscale_apt: a mirror of it, or "none" to leave
# it out, for a local image that never joins a tailnet).
set -eu
export DEBIAN_FRONTEND=noninteractive
repo=${TAILSCALE_APT:-https://pkgs.tailscale.com/stable}
if [ "$repo" = "none" ]; then
    echo "tailscale: left out (image.mirrors.tailscale_apt is none)"
    exit 0
fi
# shellcheck source=/dev/null
. /etc/os-release
keyring=/usr/share/keyrings/tailscale-archive-keyring.gpg
if ! curl -fsSL "$repo/$ID/$VERSION_CODENAME.noarmor.gpg" -o "$keyring"; then
    echo "tailscale: $repo/$ID/$VERSION_CODENAME.noarmor.gpg cannot be fetched (set image.mirrors.tailscale_apt)" >&2
    exit 1
fi
echo "deb [signed-by=$keyring] $repo/$ID $VERSION_CODENAME main" >/etc/apt/sources.list.d/tailscale.list
apt-get -o DPkg::Lock::Timeout=600 -q update
apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends tailscale
systemctl enable tailscaled.service
