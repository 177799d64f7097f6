#!/bin/sh
# The image suite (testinfra, local backend) on the finished image: any failure fails the bake.
# pytest and testinfra go into a throwaway directory, through the agent venv's pip and Python: a
# venv of their own (ensurepip) and byte-compiling were most of this step's 150 s under TCG.
set -eu
agent=/opt/ai-platform/agent
site=$(mktemp -d /tmp/image-tests.XXXXXX)
"$agent/bin/pip" install --quiet --no-compile --no-cache-dir --no-index --find-links "$PAYLOAD/wheelhouse" \
    --target "$site" pytest pytest-testinfra
status=0
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// "$PAYLOAD/tests" || status=$?
rm -rf "$site" "$PAYLOAD"
exit $status
