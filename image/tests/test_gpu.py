"""The GPU image's own checks (image/provision/25-nvidia.sh): the driver answers, and a container
started the way Ollama's stack starts it sees the GPU. They hold on the GPU image only, whose bake
runs on a build instance of the GPU type; on the CPU image (and the local target: no GPU
passthrough to qemu) each skips, saying so.
"""

from __future__ import annotations

import pytest
from images_env import image_of

VARIANT = "/opt/ai-platform/image-variant"


@pytest.fixture
def gpu_image(host):
    variant = host.file(VARIANT)
    if not (variant.exists and variant.content_string.strip() == "gpu"):
        pytest.skip(f"a CPU image ({VARIANT} does not say gpu): no NVIDIA driver to check")


def test_nvidia_smi_sees_the_gpu(host, gpu_image):
    result = host.run("nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader")
    assert result.rc == 0 and result.stdout.strip(), f"nvidia-smi: {result.stderr or result.stdout}"


def test_docker_keeps_gpu_containers_out_of_systemds_cgroups(host, gpu_image):
    """NVIDIA's workaround for a `systemctl daemon-reload` taking GPUs from running containers."""
    with host.sudo():
        assert host.run("docker info --format '{{.CgroupDriver}}'").stdout.strip() == "cgroupfs"


@pytest.mark.docker_running
def test_a_container_sees_the_gpu(host, gpu_image):
    """Ollama's own image (already in the image: nothing is pulled), given the GPU as Compose's device
    reservation gives it, runs the nvidia-smi the toolkit mounts into it."""
    image = image_of(host, "OLLAMA_IMAGE")
    with host.sudo():
        result = host.run(
            f"docker run --rm --network none --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility "
            f"--entrypoint nvidia-smi {image} -L"
        )
    assert result.rc == 0 and "GPU 0" in result.stdout, f"{image}: {result.stderr or result.stdout}"
