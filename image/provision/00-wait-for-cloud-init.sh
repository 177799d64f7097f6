#!/bin/sh
# Wait for cloud-init: when SSH first answers it may still be writing apt sources and users.
# cloud-init 22.4 (Debian 12) returns from `status --wait` at the first module error, so the
# marker file is what is waited for; then 0 and 2 (done, with recoverable errors) are done, 1 failed.
set -eu
deadline=$(($(date +%s) + 1200))
until [ -e /var/lib/cloud/instance/boot-finished ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "cloud-init did not finish within 20 minutes" >&2
        exit 1
    fi
    sleep 2
done
rc=0
cloud-init status >/dev/null 2>&1 || rc=$?
case $rc in
    0 | 2) echo "cloud-init done (status exit $rc)" ;;
    *)
        echo "cloud-init failed (status exit $rc):" >&2
        cloud-init status --long >&2 || true
        exit 1
        ;;
esac
