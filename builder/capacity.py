"""Does the configured machine fit the platform? Disk for the images and models, memory for the services.

The figures are public ones, each with its source, rounded up; where only a nearby tag's size was
published the figure says so. A model's size is best the one `builder images lock` recorded in the
lock (its manifest's bytes, as the registry served them); else a published figure; else an estimate
from the parameter count its tag names, said to be one; else it is named as unknown. They are
estimates for a warning before anything runs (`bake --dry-run`, `launch --dry-run`, and the start of
a real bake or launch), never a reason to refuse: an owner who knows better may go ahead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from builder.config.schema import PlatformConfig

# Uncompressed image sizes (GB), as `docker images` shows them. Pulled images take about this much
# on disk (Docker 20.10 keeps the layers unpacked).
IMAGE_GB = {
    "POSTGRES_IMAGE": (0.3, "postgres:15-alpine 274 MB (docker images output, 2025)"),
    "REDIS_IMAGE": (0.05, "redis:6-alpine 30.2 MB (docker images output, 2025)"),
    "WEAVIATE_IMAGE": (0.1, "weaviate 1.19: 52.5 MB (weaviate/weaviate#1215); 1.27.0 not published"),
    "OLLAMA_IMAGE": (5.0, "ollama/ollama 3.3-4.9 GB, mostly CUDA libraries (ollama/ollama#9982, #7184)"),
    "LITELLM_IMAGE": (1.6, "litellm main-latest 1.53 GB (docker images output)"),
    "ANYTHINGLLM_IMAGE": (3.0, "mintplexlabs/anythingllm latest 2.94 GB (docker images output)"),
    "OPENCLAW_IMAGE": (2.5, "openclaw: node_modules alone about 1.6 GB (openclaw/openclaw#85301), Node base added"),
    "N8N_IMAGE": (1.7, "n8nio/n8n latest 1.62 GB (docker images output)"),
    "SIGNAL_API_IMAGE": (1.0, "signal-cli-rest-api: no size published; a Java image, estimated"),
    "DIFY_API_IMAGE": (3.5, "dify-api latest 3.26 GB; its .venv layer 2.25 GB at 1.13.1"),
    "DIFY_WEB_IMAGE": (0.9, "dify-web latest 821 MB"),
    "DIFY_SANDBOX_IMAGE": (0.6, "dify-sandbox 0.2.12: 578 MB"),
    "DIFY_PLUGIN_DAEMON_IMAGE": (1.5, "dify-plugin-daemon 0.1.2-local 1.38 GB"),
    "SQUID_IMAGE": (0.25, "ubuntu/squid latest 213 MB"),
    "NGINX_IMAGE": (0.2, "nginx latest 192 MB (alpine is smaller)"),
}
# Ollama's library sizes (`ollama list`), for a lock that has not recorded them yet.
MODEL_GB = {
    "llama3.2:3b": (2.0, "Ollama library, `ollama list`: 2.0 GB"),
    "qwen2.5:7b": (4.7, "Ollama library, `ollama list`: 4.7 GB"),
    "deepseek-r1:7b": (4.7, "Ollama library, `ollama list`: 4.7 GB"),
    # the schema's default ollama.embedding_model
    "nomic-embed-text:v1.5": (0.28, "Ollama library: nomic-embed-text v1.5, 137M parameters, 274 MB"),
}
# An ESTIMATE for a model whose size is neither recorded nor published, from the parameter count its
# tag names (qwen2.5:14b, llama3.1:8b, mixtral:8x7b): GB per billion parameters. Ollama's library
# tags are 4-bit quantized unless the tag names another quantization; the default ratio is the
# largest of the published figures above (4.7 GB for the 7b tags: 0.67), so it leans high. A tag
# naming 8-bit (q8_0: 8.5 bits a weight with its scales) or 16-bit weights counts 1.07 or 2.0. A
# mixture of experts (8x7b) counts every expert whole: an upper bound, as they share some layers.
QUANTIZED_GB_PER_BILLION = {"q8": 1.07, "fp16": 2.0, "f16": 2.0, "bf16": 2.0}
_PARAMETERS = re.compile(r"(?:^|[-_:])(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])(?=$|[-_])", re.I)
BASE_SYSTEM_GB = 5.0  # the distribution, Docker, the agent's venv, logs
HEADROOM = 1.25  # pulls unpack beside their layers; an upgrade holds two images for a while

# Memory each service needs (MiB), from its documentation: what the services together want.
SERVICE_MIB = {
    "data": (1024, "Postgres, Redis and Weaviate for a few apps (Weaviate: no planning under 1M objects)"),
    "ollama": (8192, "Ollama's README: at least 8 GB of RAM for 7B models"),
    "litellm": (2048, "LiteLLM production guide: 4 GB for a busy proxy; 2 GB here"),
    "anythingllm": (2048, "AnythingLLM docker guide: at least 2 GB of RAM"),
    "clawdbot": (2048, "OpenClaw docs: 1 GB minimum, 2 GB recommended"),
    "dify": (4096, "Dify self-hosting guide: RAM >= 4 GiB"),
    "n8n": (2048, "n8n docs: 320 MB to 2 GB"),
    "signal_api": (512, "signal-cli in json-rpc mode: about 235 MiB resident (AsamK/signal-cli#1585)"),
    "edge": (128, "NGINX"),
    "gdrive": (256, "an rclone mount with its default VFS cache settings, estimated"),
}
BASE_SYSTEM_MIB = 1024


@dataclass(frozen=True)
class Finding:
    what: str  # "disk" or "memory"
    needed: float
    configured: float
    unit: str
    setting: str
    detail: str

    def message(self) -> str:
        return (
            f"{self.setting} is {self.configured:g} {self.unit}, but {self.what} for this platform needs about "
            f"{self.needed:.0f} {self.unit} ({self.detail}); raise it, or expect {self._symptom()}"
        )

    def _symptom(self) -> str:
        return "the bake to run out of disk" if self.what == "disk" else "services to be killed for lack of memory"


@dataclass(frozen=True)
class ModelSize:
    model: str
    gb: float | None  # None: unknown, not counted
    how: str  # "recorded" (the lock), "published", "estimate" or "unknown"
    source: str

    def text(self) -> str:
        if self.gb is None:
            return f"{self.model}: size unknown"
        return f"{self.model}: {'about ' if self.how == 'estimate' else ''}{self.gb:.2f} GB ({self.how}: {self.source})"


def _gb_per_billion() -> float:
    ratios = [gb / count for model, (gb, _) in MODEL_GB.items() if (count := parameter_billions(model)) and count >= 1]
    return max(ratios)


def parameter_billions(model: str) -> float | None:
    """The parameter count (billions) a tag names: 14b → 14, 1.5b → 1.5, 8x7b → 56, 137m → 0.137."""
    match = _PARAMETERS.search(model.rsplit(":", 1)[-1])
    if not match:
        return None
    experts, count, unit = match.groups()
    billions = float(count) * (int(experts) if experts else 1)
    return billions / 1000 if unit.lower() == "m" else billions


def model_size(model: str, recorded: Mapping[str, int] | None = None) -> ModelSize:
    if recorded and model in recorded:
        return ModelSize(model, recorded[model] / 1e9, "recorded", "its manifest in the lock")
    if model in MODEL_GB:
        gb, source = MODEL_GB[model]
        return ModelSize(model, gb, "published", source)
    billions = parameter_billions(model)
    if billions is None:
        return ModelSize(model, None, "unknown", "its tag names no parameter count")
    tag = model.rsplit(":", 1)[-1].lower()
    quantization = next((q for q in QUANTIZED_GB_PER_BILLION if q in re.split(r"[-_.]", tag)), None)
    ratio = QUANTIZED_GB_PER_BILLION[quantization] if quantization else _gb_per_billion()
    bits = quantization or "4-bit"
    return ModelSize(model, billions * ratio, "estimate", f"{billions:g}B parameters at {ratio:.2f} GB/B ({bits})")


def image_disk_gb(
    variables: Sequence[str], models: Sequence[str], recorded: Mapping[str, int] | None = None
) -> tuple[float, list[ModelSize]]:
    """Disk the image needs (GB), and each model's size as it was counted (unknown ones count 0)."""
    images = sum(IMAGE_GB[v][0] for v in variables if v in IMAGE_GB)
    sizes = [model_size(model, recorded) for model in models]
    weights = sum(size.gb or 0.0 for size in sizes)
    return (BASE_SYSTEM_GB + images + weights) * HEADROOM, sizes


def services_memory_mib(services: Sequence[str]) -> int:
    names = ["data", *services, "edge"]
    return BASE_SYSTEM_MIB + sum(SERVICE_MIB[name][0] for name in dict.fromkeys(names) if name in SERVICE_MIB)


def enabled_services(config: PlatformConfig) -> list[str]:
    return config.services.enabled_names()


def disk_setting(config: PlatformConfig, target: str) -> tuple[str, int]:
    if target == "local":
        return "local.disk_size_gib", config.local.disk_size_gib
    return "image.root_volume_size_gib", config.image.root_volume_size_gib


def unrecorded_note(sizes: Sequence[ModelSize]) -> str | None:
    """What the check could only estimate or not count, and how to record it."""
    from builder.images import lock_command

    estimated = [s.model for s in sizes if s.how == "estimate"]
    unknown = [s.model for s in sizes if s.how == "unknown"]
    parts = [f"size estimated from the tag's parameter count: {', '.join(estimated)}"] if estimated else []
    parts += [f"size unknown, not counted: {', '.join(unknown)}"] if unknown else []
    return f"{'; '.join(parts)} (run {lock_command()} to record their sizes)" if parts else None


def check_disk(
    config: PlatformConfig, target: str, variables: Sequence[str], recorded: Mapping[str, int] | None = None
) -> list[Finding]:
    """`recorded`: the models' sizes in bytes as the lock recorded them (images.load_models)."""
    needed, sizes = image_disk_gb(variables, config.ollama.baked, recorded)
    gib = needed * 1e9 / 2**30
    setting, configured = disk_setting(config, target)
    detail = f"{len(variables)} images, {len(config.ollama.baked)} models, {int((HEADROOM - 1) * 100)}% headroom"
    note = unrecorded_note(sizes)
    if note:
        detail += f"; {note}"
    return [Finding("disk", gib, configured, "GiB", setting, detail)] if configured < gib else []


def check_memory(config: PlatformConfig, target: str, instance_memory_mib: int | None = None) -> list[Finding]:
    needed = services_memory_mib(enabled_services(config))
    # The owner's own services say what they need (services.custom.NAME.memory_mib).
    needed += sum(service.memory_mib for service in config.services.custom.values() if service.enabled)
    if target == "local":
        configured, setting = config.local.memory_mib, "local.memory_mib"
    else:
        if instance_memory_mib is None:
            return []
        configured, setting = instance_memory_mib, f"aws.instance_type ({config.aws.instance_type})"
    detail = "the enabled services' documented needs and the system"
    return [Finding("memory", needed, configured, "MiB", setting, detail)] if configured < needed else []


def check_gpu(
    config: PlatformConfig,
    gpu_name: str,
    gpu_count: int,
    gpu_memory_mib: int,
    recorded: Mapping[str, int] | None = None,
) -> list[str]:
    """What the instance type's GPU memory (EC2's GpuInfo) cannot hold of the baked models, by their
    weights' size (model_size: the lock's record first). Weights only: Ollama also needs room for
    the context (its KV cache), so a model that just fits may still be split. Ollama splits a model
    that does not fit between the GPU and the CPU (slower), and unloads one model to load another."""
    total_mib = gpu_count * gpu_memory_mib
    where = f"{gpu_count} × {gpu_name} with {gpu_memory_mib / 1024:.1f} GiB each"
    sizes = [model_size(model, recorded) for model in config.ollama.baked]
    known = [s for s in sizes if s.gb is not None]
    notes = []
    too_big = [s for s in known if s.gb * 1e9 / 2**20 > total_mib]
    if too_big:
        names = ", ".join(s.text() for s in too_big)
        notes.append(
            f"the GPU ({where}) cannot hold {names}: Ollama will split it between the GPU and the CPU "
            "(much slower); choose a type with more GPU memory (aws.instance_type) or a smaller model (ollama.models)"
        )
    together = sum(s.gb for s in known) * 1e9 / 2**20
    if not too_big and len(known) > 1 and together > total_mib:
        notes.append(
            f"the baked models together ({together / 1024:.1f} GiB of weights) exceed the GPU's "
            f"{total_mib / 1024:.1f} GiB ({where}): Ollama holds only some at once and loads the others in turn"
        )
    unknown = [s.model for s in sizes if s.gb is None]
    if unknown:
        notes.append(f"the GPU fit of {', '.join(unknown)} is unknown: its size is unknown (run the image lock)")
    return notes
