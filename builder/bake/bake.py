"""The bake, read top to bottom: plan (read only) → cache → work dir → Packer → record.

`plan` decides everything without changing anything: the base image, the input hash, whether an
image with that hash exists (then the bake is a lookup), the Packer at hand and what its build
lacks. `execute` prepares the work directory (payload, seed, var file, template), runs
`packer init` (current Packer), `packer validate` and `packer build`, then records the result
where `builder launch` finds it: tags on the AMI, or images/current.json for the local target.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from builder import capacity, images
from builder.aws import gpu
from builder.bake import aws_images, inputs, packer_run, template
from builder.bake.bake_plan import BakePlan
from builder.bake.varfile import render_var_file
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError

SOURCES = {"aws": "amazon-ebs.aws", "local": "qemu.local"}


def new_build_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S")


def local_store(config: PlatformConfig) -> Path:
    from builder.local.paths import platform_dir

    return platform_dir(config) / "images"


def local_base_identity(config: PlatformConfig) -> str:
    if config.local.base_image == "ubuntu-22.04":
        return f"ubuntu-22.04:{config.local.ubuntu_image_sha256}"
    from builder.bake.payload import apt_packages
    from builder.local.debian_base import cache_key

    return f"debian-12:{cache_key(extra_packages=apt_packages())}"  # the base prepare_local_base builds


def find_local(config: PlatformConfig, input_hash: str) -> Path | None:
    record = local_store(config) / input_hash / "image.json"
    if not record.exists():
        return None
    disk = Path(json.loads(record.read_text())["disk"])
    return disk if disk.exists() else None


def plan(
    config: PlatformConfig,
    target: str,
    ec2=None,
    packer_binary: str = "packer",
    force: bool = False,
    lock: Path | None = None,
) -> BakePlan:
    described = gpu.describe(ec2, config.aws.instance_type) if target == "aws" else {}
    variant = gpu.variant_of(described)  # the local target: no GPU passthrough to qemu, always cpu
    base = newest_base_ami(ec2, config, variant) if target == "aws" else local_base_identity(config)
    digest = inputs.input_hash(config, target, base, lock=lock, variant=variant)
    cached = None
    if not force:
        if target == "aws":
            found = aws_images.find_by_input_hash(ec2, config.name, digest)
            cached = found.image_id if found else None
        else:
            disk = find_local(config, digest)
            cached = str(disk) if disk else None
    tool = None
    notes = []
    pins = images.load_lock(lock or images.LOCK_PATH)
    recorded = {name: pin.bytes for name, pin in images.load_models(lock or images.LOCK_PATH).items()}
    if cached is None:
        tool = template.find_packer(packer_binary)
        if tool.legacy and target == "aws":  # what Packer 1.6.6 lacks is its amazon-ebs builder's
            notes.append(template.LEGACY_LIMITATIONS.format(version=tool.version_text))
        variables = [pin.variable for pin in pins]
        notes += [finding.message() for finding in capacity.check_disk(config, target, variables, recorded)]
        notes += instance_fit_notes(config, described, recorded)
    disabled = [name for name, service in config.services.seed().items() if not service.enabled]
    if disabled:  # counted in the disk above, and said so: the image is not made per config
        notes.append(
            f"the images of disabled services ({', '.join(disabled)}) are baked too: one image serves every "
            "config, and an instance turns a service on or off without a new bake"
        )
    contents = image_contents(config, target, pins, recorded)
    if variant == gpu.GPU:
        contents["gpu"] = gpu_steps(gpu.gpus_of(described))
    return BakePlan(target, config.name, digest, base, new_build_id(), cached, tool, notes, contents, variant)


def instance_fit_notes(config: PlatformConfig, described: dict, recorded: dict[str, int]) -> list[str]:
    """Before a bake or launch on AWS: the services' memory against the type's, the models against its GPU."""
    if not described:
        return []
    notes = [f.message() for f in capacity.check_memory(config, "aws", described["MemoryInfo"]["SizeInMiB"])]
    gpus = gpu.gpus_of(described)
    if gpus is not None and gpus.nvidia:
        notes += capacity.check_gpu(config, gpus.name, gpus.count, gpus.memory_mib, recorded)
    return notes


def gpu_steps(gpus) -> dict:
    """What the GPU variant adds to the bake, for its plan."""
    return {
        "gpus": gpus.text() if gpus else None,
        "provisioning": [
            "image/provision/25-nvidia.sh: the base's NVIDIA driver and Container Toolkit checked, Docker given "
            "the nvidia runtime and the cgroupfs cgroup driver (NVIDIA's workaround for daemon-reload)",
            "image/rootfs/opt/ai-platform/stacks/ollama/compose.gpu.yaml: Ollama's device reservation",
        ],
        "image_suite": [
            "test_nvidia_smi_sees_the_gpu: nvidia-smi on the build instance",
            "test_a_container_sees_the_gpu: docker run --gpus all (the Ollama image) nvidia-smi",
        ],
    }


def image_contents(config: PlatformConfig, target: str, pins: list, recorded: dict[str, int]) -> dict:
    """What the image holds, with the sizes the disk check counts (builder/capacity.py)."""
    needed, sizes = capacity.image_disk_gb([pin.variable for pin in pins], config.ollama.baked, recorded)
    setting, configured = capacity.disk_setting(config, target)
    return {
        "images": [
            {
                "variable": pin.variable,
                "reference": pin.reference(False),
                "digest": pin.digest,
                "gb": capacity.IMAGE_GB.get(pin.variable, (None,))[0],
            }
            for pin in pins
        ],
        "models": [
            {"model": size.model, "gb": None if size.gb is None else round(size.gb, 2), "size": size.how}
            for size in sizes
        ],
        "disk": {
            "needed_gib": round(needed * 1e9 / 2**30, 1),
            "setting": setting,
            "configured_gib": configured,
            "unrecorded": capacity.unrecorded_note(sizes),
        },
    }


def base_ami_owner(config: PlatformConfig) -> str:
    """image.base_ami_owner, or Canonical's account in the partition of aws.region."""
    from builder.aws.iam import partition_of
    from builder.config.schema import CANONICAL_OWNER_IDS

    if config.image.base_ami_owner:
        return config.image.base_ami_owner
    partition = partition_of(config.aws.region)
    if partition not in CANONICAL_OWNER_IDS:
        raise BuilderError(
            f"Canonical publishes no Ubuntu AMIs in partition {partition} (aws.region {config.aws.region}) "
            "that builder knows of: set image.base_ami_owner"
        )
    return CANONICAL_OWNER_IDS[partition]


def newest_base_ami(ec2, config: PlatformConfig, variant: str = "cpu") -> str:
    if variant == gpu.GPU:
        owner, name_filter, setting = (
            config.image.gpu_base_ami_owner,
            config.image.gpu_base_ami_name_filter,
            "image.gpu_base_ami_name_filter",
        )
    else:
        owner, name_filter, setting = (
            base_ami_owner(config),
            config.image.base_ami_name_filter,
            "image.base_ami_name_filter",
        )
    images = ec2.describe_images(
        Owners=[owner],
        Filters=[
            {"Name": "name", "Values": [name_filter]},
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "root-device-type", "Values": ["ebs"]},
            {"Name": "virtualization-type", "Values": ["hvm"]},
        ],
    )["Images"]
    if not images:
        raise BuilderError(f"no AMI of owner {owner} matches {setting} {name_filter!r} in {config.aws.region}")
    return max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"]


def use_cached(config: PlatformConfig, bake: BakePlan) -> str:
    """Make the cached image the current one; returns it."""
    if bake.target == "local":
        from builder.local.instances import LocalImage, register_image

        record = json.loads((local_store(config) / bake.input_hash / "image.json").read_text())
        register_image(config, LocalImage.from_json(record))
    assert bake.cached is not None
    return bake.cached


def work_dir(config: PlatformConfig, bake: BakePlan) -> Path:
    directory = local_store(config).parent / "bakes" / bake.build_id
    directory.mkdir(parents=True, exist_ok=False)
    return directory


def validate(tool: template.PackerTool, template_path: Path, var_file: Path, source: str) -> None:
    result = subprocess.run(
        [tool.binary, "validate", f"-only={source}", f"-var-file={var_file}", str(template_path)],
        cwd=template.REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BuilderError(f"packer validate failed:\n{(result.stdout + result.stderr).strip()}")


def init(tool: template.PackerTool, template_path: Path) -> None:
    if tool.legacy:
        return
    result = subprocess.run([tool.binary, "init", str(template_path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuilderError(
            f"packer init failed (it fetches the amazon and qemu plugins; set PACKER_PLUGIN_PATH to a "
            f"directory that holds them where GitHub is out of reach):\n{result.stderr.strip()}"
        )


def execute(
    config: PlatformConfig,
    bake: BakePlan,
    prepare: Callable[[Path], dict],
    on_step: Callable[[float, str], None],
    on_output: Callable[[str], None] | None = None,
    ec2=None,
) -> dict:
    """Build the image; `prepare(work)` lays out the payload (and seed) and returns target variables."""
    assert bake.packer is not None
    work = work_dir(config, bake)
    target_variables = prepare(work)
    var_file = work / "variables.pkrvars.json"
    var_file.write_text(
        json.dumps(render_var_file(config, bake, work, target_variables), indent=2, sort_keys=True),
        encoding="utf-8",
    )
    template_path, _ = template.template_for(bake.packer, work / "packer.pkr.hcl")
    source = SOURCES[bake.target]
    init(bake.packer, template_path)
    validate(bake.packer, template_path, var_file, source)
    log = work / "packer.log"
    try:
        return _build(config, bake, work, template_path, var_file, source, log, on_step, on_output, ec2)
    except BuilderError:
        # A failed bake keeps its log and var file, nothing bulky: the payload and any partial output go.
        for bulky in ("payload", "output", "base"):
            shutil.rmtree(work / bulky, ignore_errors=True)
        raise


def _build(config, bake, work, template_path, var_file, source, log, on_step, on_output, ec2) -> dict:
    assert bake.packer is not None
    command = [
        bake.packer.binary,
        "build",
        "-machine-readable",
        "-color=false",
        f"-only={source}",
        f"-var-file={var_file}",
        str(template_path),
    ]
    with packer_run.temporary_dir(work) as temporary:
        environment = {"TMPDIR": str(temporary), "PACKER_CACHE_DIR": str(work / "packer_cache"), "PACKER_NO_COLOR": "1"}
        outcome = packer_run.run_packer(
            command, log, template.REPO_ROOT, on_step, on_output, env={**os.environ, **environment}
        )
    if outcome.returncode != 0:
        reason = packer_run.failure_reason(outcome)
        tail = "\n".join(f"  {line}" for line in outcome.last_output)
        raise BuilderError(
            f"packer build failed after {outcome.seconds:.0f} s: {reason}\nlast output:\n{tail}\nfull log: {log}"
        )
    builds = packer_run.read_manifest(work / "output" / "packer-manifest.json")
    if not builds:
        raise BuilderError(f"packer build succeeded but its manifest lists no build (log: {log})")
    bom = work / "output" / "bom.json"
    bom_digest = "sha256:" + hashlib.sha256(bom.read_bytes()).hexdigest() if bom.exists() else ""
    if bake.target == "aws":
        amis = packer_run.ami_ids(builds[-1]["artifact_id"])
        tags = {
            aws_images.TAG_INPUT_HASH: bake.input_hash,
            aws_images.TAG_BUILD_ID: bake.build_id,
            "ai-platform:source-ami": bake.base,
            "ai-platform:bom-digest": bom_digest,
            aws_images.TAG_VARIANT: bake.variant,
        }
        aws_images.tag_image(ec2, amis[config.aws.region], tags)
        return {"image": amis[config.aws.region], "copies": amis, "bom": str(bom), "seconds": round(outcome.seconds)}
    return record_local(config, bake, work, bom_digest, outcome.seconds)


def record_local(config: PlatformConfig, bake: BakePlan, work: Path, bom_digest: str, seconds: float) -> dict:
    from builder.local.instances import LocalImage, register_image

    store = local_store(config) / bake.input_hash
    store.mkdir(parents=True, exist_ok=True)
    disk = store / "root.qcow2"
    shutil.move(str(work / "output" / "local" / "root.qcow2"), disk)
    # A base booted from outside (Debian) needs its kernel and initrd beside the disk; one with its
    # own boot loader (Ubuntu) has none in the work dir.
    boot = {}
    for key, name in (("kernel", "vmlinuz"), ("initrd", "initrd.img")):
        if (work / "base" / name).exists():
            shutil.copy(work / "base" / name, store / name)
            boot[key] = store / name
    for name in ("bom.json", "packer-manifest.json"):
        if (work / "output" / name).exists():
            shutil.copy(work / "output" / name, store / name)
    image = LocalImage(disk, boot.get("kernel"), boot.get("initrd"), "qcow2")
    record = {**image.to_json(), "build_id": bake.build_id, "input_hash": bake.input_hash, "bom_digest": bom_digest}
    (store / "image.json").write_text(json.dumps(record, indent=2))
    register_image(config, image)
    return {"image": str(disk), "bom": str(store / "bom.json"), "seconds": round(seconds)}
