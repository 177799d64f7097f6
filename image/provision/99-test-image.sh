#!/bin/sh
# The image suite (testinfra, local backend) on the finished image: any failure fails the bake.
# pytest and testinfra are in a throwaway directory of the payload (85-test-with-docker.sh put them
# there through the agent venv's pip and Python: a venv of their own (ensurepip) and byte-compiling
# were most of this step's 150 s under TCG).
set -eu
agent=/opt/ai-platform/agent
site="$PAYLOAD/image-tests-site"
[ -d "$site" ] || "$agent/bin/pip" install --quiet --no-compile --no-cache-dir --no-index \
    --find-links "$PAYLOAD/wheelhouse" --target "$site" pytest pytest-testinfra
status=0
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// "$PAYLOAD/tests" || status=$?
rm -rf "$PAYLOAD"
exit $status
