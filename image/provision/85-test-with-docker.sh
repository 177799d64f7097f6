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
# Lynis's full audit (82-harden.sh's score) where it runs at native speed: an AWS build instance
# (PACKER_BUILDER_TYPE, which Packer sets, on a machine whose firmware says Amazon EC2). Here,
# before sysprep, sshd still has its host keys and Docker runs, as on an instance. Under emulation
# (the local bake, and CI's AWS bake test, where qemu plays the build instance) it would take over
# 20 minutes: skipped there, saying so.
lynis=off
if [ "${PACKER_BUILDER_TYPE:-}" = amazon-ebs ]; then
    if [ "$(cat "${DMI_SYS_VENDOR_FILE:-/sys/class/dmi/id/sys_vendor}" 2>/dev/null)" = "Amazon EC2" ]; then
        lynis=full
    else
        echo "85-test-with-docker: Lynis's audit skipped: this amazon-ebs build machine is not an EC2 instance (emulated)"
    fi
fi
status=0
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$agent/bin/python" -m pytest -p no:cacheprovider -q \
    --hosts=local:// --docker-running --lynis "$lynis" -m "docker_running or lynis" "$PAYLOAD/tests" || status=$?
if [ "$lynis" = full ] && [ -f /var/log/lynis-report.dat ]; then
    # The score and what Lynis still suggests, in the bake's log (--debug shows it).
    grep -E '^(hardening_index|warning\[\]|suggestion\[\])=' /var/log/lynis-report.dat || true
fi
exit $status
