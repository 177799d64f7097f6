#!/bin/sh
# The AWS bake test's provisioning (tests/test_bake_aws.py says why the real one runs only in the
# local bake): the bill of materials from what Packer hands every provisioning script, so the test
# still sees the source AMI, build id and input hash travel from builder through Packer to the image.
set -eu
mkdir -p /etc/ai-platform
printf '{"build_id": "%s", "input_hash": "%s", "source_image": "%s", "provisioning": "tests/standins/provision"}\n' \
    "$BUILD_ID" "$INPUT_HASH" "$SOURCE_IMAGE" >/etc/ai-platform/bom.json
