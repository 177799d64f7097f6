#!/bin/sh
# The image suite (testinfra, local backend) on the finished image: any failure fails the bake.
# pytest and testinfra are the ones 85-test-with-docker.sh installed into the payload, through the
# agent venv's pip and Python (a venv of their own, ensurepip, and byte-compiling were most of
# this step's 150 s under TCG); they go with the payload.
set -eu
agent=/opt/ai-platform/agent
site="$PAYLOAD/image-tests-site"
status=0
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// "$PAYLOAD/tests" || status=$?
rm -rf "$PAYLOAD"
exit $status
