#!/bin/sh
# The firstboot agent in its own venv, from the wheelhouse built on the build host (no index here).
set -eu
python3 -m venv /opt/ai-platform/agent
/opt/ai-platform/agent/bin/pip install --quiet --no-index --find-links "$PAYLOAD/wheelhouse" boto3
# The project's wheel without its dependencies: the agent needs only the standard library and boto3.
/opt/ai-platform/agent/bin/pip install --quiet --no-index --no-deps "$PAYLOAD"/wheelhouse/ai_platform_builder-*.whl
# The command the units start (ai-platform-firstboot.service, ai-platform-health.service): the wheel
# installs no console script for the agent (it would land on every user's PATH), so the venv gets a
# launcher of its own, running the package as a module.
printf '#!/bin/sh\nexec /opt/ai-platform/agent/bin/python -m firstboot "$@"\n' >/opt/ai-platform/agent/bin/firstboot
chmod 0755 /opt/ai-platform/agent/bin/firstboot
/opt/ai-platform/agent/bin/firstboot --help >/dev/null
