#!/bin/sh
# Every image of the lock, pulled by digest (from image.mirrors.registry when set), tagged as the
# stacks name it; /opt/ai-platform/stacks/images.env then names each by its local tag.
set -eu
python3 "$PAYLOAD/provision/pull-images.py" "$PAYLOAD/images.lock.json" /opt/ai-platform/stacks/images.env
