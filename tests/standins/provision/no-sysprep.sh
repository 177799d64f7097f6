#!/bin/sh
# The AWS bake test's last step (tests/test_bake_aws.py): nothing was provisioned, so there is
# nothing to sysprep and no image suite to run; the local bake runs both on the real provisioning.
echo "sysprep and the image suite: not run (the AWS bake test's stand-in provisioning)"
