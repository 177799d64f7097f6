"""`packer` for tests/test_bake_aws.py: the real Packer, with the template's provisioning scripts
replaced for `packer build` by those named in AI_PLATFORM_TEST_PROVISIONING (comma-separated, paths
from the repository's root) and the sysprep and image-suite step left out. `version`, `init` and
`validate` see the template as builder renders it. The test's docstring says why. `builder bake
--packer` takes one executable: the test writes a launcher that runs this file with the real
Packer's path in AI_PLATFORM_REAL_PACKER.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The two lists of scripts in packer.pkr.hcl: the provisioning (10-apt.sh …) and the last step
# (90-sysprep.sh, 99-test-image.sh). A template of another shape fails here, loudly.
PROVISIONING = re.compile(r'scripts = \[\n(\s+"image/provision/10-apt\.sh",\n.*?)\s*\]', re.DOTALL)
LAST_STEP = re.compile(r'scripts\s+= \["image/provision/90-sysprep\.sh", "image/provision/99-test-image\.sh"\]')


def rewrite(template: str, scripts: list[str]) -> str:
    if not PROVISIONING.search(template) or not LAST_STEP.search(template):
        raise SystemExit(f"{__file__}: packer.pkr.hcl's provisioning lists are not where this expects them")
    listed = ", ".join(f'"{script}"' for script in scripts)
    template = PROVISIONING.sub(f"scripts = [{listed}]", template, count=1)
    return LAST_STEP.sub('scripts = ["tests/standins/provision/no-sysprep.sh"]', template, count=1)


def main(arguments: list[str]) -> None:
    real = os.environ["AI_PLATFORM_REAL_PACKER"]
    if arguments[:1] == ["build"]:
        scripts = os.environ["AI_PLATFORM_TEST_PROVISIONING"].split(",")
        template = Path(arguments[-1])
        replaced = template.with_name("packer-test-provisioning.pkr.hcl")
        replaced.write_text(rewrite(template.read_text(encoding="utf-8"), scripts), encoding="utf-8")
        arguments = [*arguments[:-1], str(replaced)]
    os.execv(real, [real, *arguments])


if __name__ == "__main__":
    main(sys.argv[1:])
