#!/bin/sh
# The image suite's tests that need the Docker daemon running (marker docker_running), before
# sysprep stops it: the baked images as the stacks run them, LiteLLM keeping its books with no
# network among them. Any failure fails the bake. pytest and testinfra go into the payload, where
# 99-test-image.sh finds them again (and removes them with the payload).
set -eu
agent=/opt/ai-platform/agent
site="$PAYLOAD/image-tests-site"
"$agent/bin/pip" install --quiet --no-compile --no-cache-dir --no-index --find-links "$PAYLOAD/wheelhouse" \
    --target "$site" pytest pytest-testinfra
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// --docker-running -m docker_running "$PAYLOAD/tests"
