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
# Lynis's full audit (82-harden.sh's score) where it runs at native speed: the AWS build instance
# (PACKER_BUILDER_TYPE, which Packer sets). Here, before sysprep, sshd still has its host keys and
# Docker runs, as on an instance. Under TCG it would take 35 minutes: CI's booted instance runs
# the focused audit instead (--lynis focused).
lynis=off
[ "${PACKER_BUILDER_TYPE:-}" = amazon-ebs ] && lynis=full
status=0
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// --docker-running --lynis "$lynis" -m "docker_running or lynis" "$PAYLOAD/tests" || status=$?
if [ "$lynis" = full ] && [ -f /var/log/lynis-report.dat ]; then
    # The score and what Lynis still suggests, in the bake's log (--debug shows it).
    grep -E '^(hardening_index|warning\[\]|suggestion\[\])=' /var/log/lynis-report.dat || true
fi
exit $status
