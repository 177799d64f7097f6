#!/bin/sh
# The image suite (testinfra, local backend) on the finished image: any failure fails the bake.
set -eu
venv=$(mktemp -d /tmp/image-tests.XXXXXX)
python3 -m venv "$venv"
# --no-compile: a throwaway venv; byte-compiling every file of it took most of this step under TCG.
"$venv/bin/pip" install --quiet --no-compile --no-index --find-links "$PAYLOAD/wheelhouse" pytest pytest-testinfra
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -q --hosts=local:// "$PAYLOAD/tests" || status=$?
rm -rf "$venv" "$PAYLOAD"
exit $status
