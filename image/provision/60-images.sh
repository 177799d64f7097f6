#!/bin/sh
# Every image of the lock, pulled by digest (from image.mirrors.registry when set), tagged as the
# stacks name it; /opt/ai-platform/stacks/images.env then names each by its local tag.
set -eu
python3 "$PAYLOAD/provision/pull-images.py" "$PAYLOAD/images.lock.json" /opt/ai-platform/stacks/images.env
# A daemon that holds images but cannot run a container (no AppArmor parser, a broken runtime) fails
# the bake here, not the first boot: one container from the edge's image, with no network.
# shellcheck source=/dev/null
. /opt/ai-platform/stacks/images.env
docker run --rm --network none --entrypoint nginx "$NGINX_IMAGE" -v
