"""Two moments of one image: `--booted` runs the suite against a booted instance of it (over SSH)
instead of inside the bake. Each test says which moment it holds at, if only one:

- image_only: what sysprep leaves and first boot replaces (an empty machine-id, no SSH host keys,
  cloud-init clean, empty logs);
- booted_only: what first boot must make of it (a new machine-id and host keys, Docker running
  with every image intact, the build user and its key gone).

- docker_running: needs the Docker daemon up (containers started from the baked images); run by
  the bake before sysprep stops it (85-test-with-docker.sh, `--docker-running -m docker_running`),
  so that every bake proves it on the images it holds, and on a booted instance if selected.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--booted", action="store_true", help="the host is a booted instance of the image")
    parser.addoption("--docker-running", action="store_true", help="the bake's Docker daemon is still up")
    parser.addoption(
        "--lynis",
        choices=("off", "focused", "full"),
        default="off",
        help="Lynis tests: full audit (native speed: the AWS bake), the hardened groups only, or none",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "image_only: holds in the finished image, before any boot")
    config.addinivalue_line("markers", "booted_only: holds on a booted instance of the image")
    config.addinivalue_line("markers", "docker_running: starts containers from the baked images")
    config.addinivalue_line("markers", "lynis(mode): runs Lynis when --lynis is that mode (lynis_check.py)")


def pytest_collection_modifyitems(config, items):
    booted = config.getoption("--booted")
    docker_running = config.getoption("--docker-running")
    for item in items:
        if booted and item.get_closest_marker("image_only"):
            item.add_marker(pytest.mark.skip(reason="image only: first boot replaces it"))
        if not booted and item.get_closest_marker("booted_only"):
            item.add_marker(pytest.mark.skip(reason="needs a booted instance"))
        lynis = item.get_closest_marker("lynis")
        if lynis and config.getoption("--lynis") != lynis.args[0]:
            item.add_marker(pytest.mark.skip(reason=f"Lynis {lynis.args[0]} audit: --lynis {lynis.args[0]}"))
        if not (booted or docker_running) and item.get_closest_marker("docker_running"):
            item.add_marker(pytest.mark.skip(reason="needs the Docker daemon up: run before sysprep"))
