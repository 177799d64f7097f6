#!/bin/sh
# rclone for the Google Drive mount: the release pinned in rclone.env from downloads.rclone.org
# (image.mirrors.rclone: a mirror of it), checked against its sha256, at /usr/local/bin/rclone. With
# image.mirrors.rclone "distribution", the distribution's package instead (older: for bakes that
# reach only an archive), linked there and said in the bake's log.
set -eu
# shellcheck source=/dev/null
. "$PAYLOAD/provision/rclone.env"
mirror=${RCLONE_MIRROR:-https://downloads.rclone.org}
if [ "$mirror" = "distribution" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends rclone
    ln -sf /usr/bin/rclone /usr/local/bin/rclone
    install -D -m 0644 "$PAYLOAD/provision/rclone.env" /opt/ai-platform/rclone.env  # what the image suite checks
    echo "rclone: the distribution's $(rclone version | head -n 1) (image.mirrors.rclone is distribution)"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="${mirror%/}/$RCLONE_VERSION/$RCLONE_FILE"
if ! curl -fsSL --retry 3 -o "$work/$RCLONE_FILE" "$url"; then
    echo "rclone: $url cannot be fetched (set image.mirrors.rclone to a mirror, or to distribution)" >&2
    exit 1
fi
if ! echo "$RCLONE_SHA256  $work/$RCLONE_FILE" | sha256sum -c - >/dev/null; then
    echo "rclone: $url is not the pinned release (sha256 $(sha256sum "$work/$RCLONE_FILE" | cut -d' ' -f1), pinned $RCLONE_SHA256)" >&2
    exit 1
fi
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$work/$RCLONE_FILE" "$work"
install -m 0755 "$work/${RCLONE_FILE%.zip}/rclone" /usr/local/bin/rclone
install -D -m 0644 "$PAYLOAD/provision/rclone.env" /opt/ai-platform/rclone.env  # what the image suite checks
echo "rclone: $(/usr/local/bin/rclone version | head -n 1) from $url (sha256 verified)"
