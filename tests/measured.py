"""What the tests measured on the way (a boot, a bake, a recovery), for CI's tail: each line is
printed (pytest shows it with a failure) and kept in the artifacts folder, which tests/conftest.py
prints after the run, also from pytest-xdist's workers, whose printing nobody sees."""

from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS = Path(os.environ.get("AI_PLATFORM_TEST_ARTIFACTS", "/tmp/ai-platform-test-artifacts"))
MEASURED = ARTIFACTS / "measured.txt"


def say(line: str) -> None:
    print(line)
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    with MEASURED.open("a", encoding="utf-8") as kept:
        kept.write(line.replace("\n", " ") + "\n")
