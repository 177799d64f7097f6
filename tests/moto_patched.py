"""moto_server with one fix, as `python moto_patched.py -H HOST -p PORT`.

moto 5.2.5's CreateLaunchTemplateVersion keeps the version's UserData as a plain string, where
CreateLaunchTemplate parses it; its Auto Scaling then fails an assertion (HTTP 500) when a group
launches from version 2 or later. EC2 itself takes both alike. The fix parses the version's
UserData the same way; nothing else of moto changes.
"""

from __future__ import annotations

import sys

from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import parse_user_data
from moto.server import main

_create_version = LaunchTemplates.create_launch_template_version


def _create_version_with_parsed_user_data(self):
    data = self._get_param("LaunchTemplateData", {})
    if data.get("UserData") is not None:
        parsed = parse_user_data(self._get_param("LaunchTemplateData.UserData"))
        original = self._get_param

        def get_param(name, default=None):
            if name == "LaunchTemplateData":
                return {**data, "UserData": parsed}
            return original(name, default)

        self._get_param = get_param
    return _create_version(self)


LaunchTemplates.create_launch_template_version = _create_version_with_parsed_user_data

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
