"""The image references the stacks run, as the bake wrote them (/opt/ai-platform/stacks/images.env)."""

from __future__ import annotations

IMAGES_ENV = "/opt/ai-platform/stacks/images.env"


def image_of(host, variable: str) -> str:
    for line in host.file(IMAGES_ENV).content_string.splitlines():
        if line.startswith(variable + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{variable} is not in images.env")
