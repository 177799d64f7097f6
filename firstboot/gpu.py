"""The instance's GPU in the health report: model, memory and driver, or why Ollama runs on the CPU.

Only on the GPU image (/opt/ai-platform/image-variant says gpu: image/provision/25-nvidia.sh). The
stack wrapper gives Ollama its device reservation only while `nvidia-smi -L` answers; when the
driver does not load, Ollama starts on the CPU and this report says degraded, with nvidia-smi's own
words. nvidia-smi is asked, not the kernel's files: it is what the NVIDIA Container Toolkit needs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

VARIANT_PATH = Path("/opt/ai-platform/image-variant")
QUERY = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
HEALTH_KEY = "gpu"  # its entry in the health record, named apart from the stacks (firstboot/health.py)


def is_gpu_image(path: Path = VARIANT_PATH) -> bool:
    try:
        return path.read_text().strip() == "gpu"
    except OSError:
        return False


def report(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """One line: "NVIDIA A10G, 23028 MiB, driver 535.x" per GPU, or "degraded: ..." and why."""
    try:
        result = run(QUERY, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return "degraded: nvidia-smi is missing from the GPU image; Ollama runs on the CPU"
    except subprocess.TimeoutExpired:
        return "degraded: nvidia-smi did not answer in 30 s; Ollama runs on the CPU"
    rows = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not rows:
        said = (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}").splitlines()[0]
        return f"degraded: the NVIDIA driver does not answer ({said}); Ollama runs on the CPU"
    gpus = []
    for row in rows:
        name, memory, driver = [part.strip() for part in [*row.split(","), "?", "?"][:3]]
        gpus.append(f"{name}, {memory}, driver {driver}")
    return "; ".join(gpus)


def degraded(line: str) -> bool:
    return line.startswith("degraded:")
