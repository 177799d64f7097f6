"""Make the real apps' images (tests/real_images.py) ahead of the tests that run them: the cached
tarballs, imported into the local Docker.

CI starts this in the background before the test run (.ci/run): the recipes' work is mostly
downloads and unpacking (PyPI, npm, Debian), which overlaps the bakes' emulated guests instead of
adding to them; the stack tests then find the tarballs made. A test that gets there first waits on
the same lock, and a prewarm that fails leaves the test to build (and report) it. Prints one line per
image with its time.

    .venv/bin/python tests/prewarm.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from real_images import LITELLM, imported, n8n_recipe, openclaw_recipe


def main() -> int:
    failed = 0
    for name, recipe in (("openclaw", openclaw_recipe), ("litellm", lambda: LITELLM), ("n8n", n8n_recipe)):
        began = time.monotonic()
        try:
            image = imported(recipe(), log=lambda line: print(line, flush=True))
            print(f"prewarm {name}: {image} in {time.monotonic() - began:.0f} s", flush=True)
        except Exception as exc:  # the stack tests build it again and report what fails
            print(f"prewarm {name}: failed after {time.monotonic() - began:.0f} s: {exc}", flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
