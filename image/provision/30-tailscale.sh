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
# The key is not checked against a fingerprint: Tailscale publishes none (its installer,
# scripts/installer.sh, trusts what pkgs.tailscale.com serves; tailscale/tailscale issues #13284
# and #15898 ask for one and are open). Only third parties quote one, and a pin is not invented
# here. What protects it: TLS to pkgs.tailscale.com, and image.mirrors.allow_insecure_http, without
# which a mirror of it must be https.
if ! curl -fsSL "$repo/$ID/$VERSION_CODENAME.noarmor.gpg" -o "$keyring"; then
    echo "tailscale: $repo/$ID/$VERSION_CODENAME.noarmor.gpg cannot be fetched (set image.mirrors.tailscale_apt)" >&2
    exit 1
fi
echo "deb [signed-by=$keyring] $repo/$ID $VERSION_CODENAME main" >/etc/apt/sources.list.d/tailscale.list
apt-get -o DPkg::Lock::Timeout=600 -q update
apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends tailscale
systemctl enable tailscaled.service
