#!/bin/sh
# The firstboot agent in its own venv, from the wheelhouse built on the build host (no index here).
set -eu
python3 -m venv /opt/ai-platform/agent
/opt/ai-platform/agent/bin/pip install --quiet --no-index --find-links "$PAYLOAD/wheelhouse" boto3
# The project's wheel without its dependencies: the agent needs only the standard library and boto3.
/opt/ai-platform/agent/bin/pip install --quiet --no-index --no-deps "$PAYLOAD"/wheelhouse/ai_platform_builder-*.whl
/opt/ai-platform/agent/bin/firstboot --help >/dev/null
