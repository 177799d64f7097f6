"""The GPU image (issue #28): detection from EC2's GpuInfo as moto serves it, the variant in the bake's
plan and input hash, `launch` picking the image that fits, the capacity notes, Ollama's device
reservation through Compose, and the agent's GPU line.

No GPU is here: the agent side runs a stand-in `nvidia-smi` on PATH (a shell script printing what
the real one prints for --query-gpu, or failing as it fails without a driver). Service Quotas is
scripted as in test_preflight.py (moto answers only for VPC quotas).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest
import yaml
from conftest import AWS_ZONE as ZONE
from moto_server import make_tagged_ami
from stack_fixtures import make_tree
from test_preflight import ScriptedQuotas, check, with_quotas

from builder import capacity
from builder.aws import gpu
from builder.aws.launch import LaunchError, find_image
from builder.bake import bake as baking
from builder.config.schema import PlatformConfig


def described(aws, instance_type: str) -> dict:
    return gpu.describe(aws.client("ec2"), instance_type)


def test_the_gpu_comes_from_ec2s_gpu_info_not_from_the_types_name(aws):
    a10g = gpu.gpus_of(described(aws, "g5.xlarge"))
    assert (a10g.name, a10g.manufacturer, a10g.count, a10g.memory_mib) == ("A10G", "NVIDIA", 1, 22888)
    assert gpu.gpus_of(described(aws, "g4dn.xlarge")).name == "T4"
    assert gpu.gpus_of(described(aws, "m6i.2xlarge")) is None
    assert gpu.variant_of(described(aws, "g5.xlarge")) == "gpu"
    assert gpu.variant_of(described(aws, "m6i.2xlarge")) == "cpu"
    amd = {"GpuInfo": {"Gpus": [{"Name": "Radeon Pro V520", "Manufacturer": "AMD", "Count": 1}]}}
    assert gpu.variant_of(amd) == "cpu"  # the NVIDIA toolkit drives no other maker's GPU


def config(**sections) -> PlatformConfig:
    return PlatformConfig.model_validate({"version": 1, "data_volume": {"availability_zone": ZONE}, **sections})


def test_preflight_names_the_gpu_and_counts_it_against_the_g_quota(aws):
    g5 = config(aws={"instance_type": "g5.xlarge"})
    line = check("instance type", g5).detail
    assert "Nitro, 4 vCPUs, 16 GiB, 1 × NVIDIA A10G (22 GiB): the gpu image" in line
    assert "GiB," not in check("instance type", config()).detail  # a CPU type says no GPU

    ec2 = aws.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge")  # 4 vCPUs, G
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.4xlarge")  # standard: not counted
    quotas = ScriptedQuotas(standard=64)
    quotas.quotas[1]["Value"] = 7.0
    found = check("vCPU quota", g5, with_quotas(g5, quotas))
    assert (
        found.status == "fail"
        and "Running On-Demand G and VT instances: 4 of 7 vCPUs in use, g5.xlarge needs 4" in found.detail
    )
    assert "L-DB2E81BA" in found.fix


def gpu_config(base: dict, **sections) -> PlatformConfig:
    """A g5.xlarge config whose both bases are one of moto's stock images (moto has no DLAMI)."""
    image = {
        "base_ami_owner": base["OwnerId"],
        "base_ami_name_filter": base["Name"],
        "gpu_base_ami_owner": base["OwnerId"],
        "gpu_base_ami_name_filter": base["Name"],
    }
    aws = {"instance_type": "g5.xlarge", **sections.pop("aws", {})}
    return config(aws=aws, image={**image, **sections.pop("image", {})}, **sections)


def test_a_gpu_config_bakes_its_own_image_with_the_driver_steps_and_checks_in_its_plan(aws, builder, tmp_path):
    ec2 = aws.client("ec2")
    base = ec2.describe_images()["Images"][0]
    document = gpu_config(base).model_dump(mode="json", exclude_defaults=True)
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(document))
    result = builder("--config", str(tmp_path / "platform.yaml"), "--dry-run", "bake", "--target", "aws")
    assert result.code == 0, result.err
    assert "variant    gpu" in result.out and "gpu        1 × NVIDIA A10G (22 GiB)" in result.out
    assert "provision  image/provision/25-nvidia.sh" in result.out
    assert "check      test_a_container_sees_the_gpu" in result.out

    gpu_plan = baking.plan(gpu_config(base), "aws", ec2=ec2, force=True)
    cpu_config = gpu_config(base, aws={"instance_type": "m6i.2xlarge"})
    cpu_plan = baking.plan(cpu_config, "aws", ec2=ec2, force=True)
    assert (gpu_plan.variant, cpu_plan.variant) == ("gpu", "cpu")
    assert gpu_plan.base == cpu_plan.base and gpu_plan.input_hash != cpu_plan.input_hash  # side by side
    assert "gpu" not in cpu_plan.contents
    # A g5.xlarge has 16 GiB: less than the default services want, said before anything is made.
    assert any("aws.instance_type (g5.xlarge) is 16384 MiB" in note for note in gpu_plan.notes)


def test_the_gpu_base_is_found_by_its_own_filter_and_a_miss_names_it(aws):
    base = aws.client("ec2").describe_images()["Images"][0]
    cfg = gpu_config(base, image={"gpu_base_ami_owner": base["OwnerId"], "gpu_base_ami_name_filter": "no-such-*"})
    with pytest.raises(Exception, match=r"image\.gpu_base_ami_name_filter .no-such-\*."):
        baking.plan(cfg, "aws", ec2=aws.client("ec2"), force=True)
    assert PlatformConfig(version=1).image.gpu_base_ami_owner == "amazon"


def test_launch_picks_the_image_whose_variant_fits_and_names_the_field_otherwise(aws):
    ec2 = aws.client("ec2")
    source = ec2.describe_images()["Images"][0]["ImageId"]
    make_tagged_ami(ec2, source, "ai-platform-cpu", {"ai-platform:platform": "ai-platform"})  # before #28: cpu
    with pytest.raises(LaunchError, match=r"aws\.instance_type: .* cpu images, and this instance type needs the gpu"):
        find_image(ec2, "ai-platform", None, "gpu")
    gpu_ami = make_tagged_ami(
        ec2, source, "ai-platform-gpu", {"ai-platform:platform": "ai-platform", "ai-platform:variant": "gpu"}
    )
    assert find_image(ec2, "ai-platform", None, "gpu")["ImageId"] == gpu_ami
    assert find_image(ec2, "ai-platform", None, "cpu")["Name"] == "ai-platform-cpu"


def test_models_the_gpu_cannot_hold_are_named_and_a_fit_says_nothing():
    big = config(ollama={"models": ["llama3.1:70b"]})  # an estimate from its tag: about 47 GB
    notes = capacity.check_gpu(big, "A10G", 1, 22888)
    assert (
        len(notes) == 1
        and "cannot hold llama3.1:70b" in notes[0]
        and "split it between the GPU and the CPU" in notes[0]
    )
    assert capacity.check_gpu(config(), "A10G", 1, 22888) == []  # the default models fit
    together = config(ollama={"models": ["qwen2.5:7b", "deepseek-r1:7b", "llama3.2:3b"]})
    assert "together" in capacity.check_gpu(together, "T4", 1, 8192)[0]  # 11.7 GB on an 8 GiB GPU
    recorded = {"llama3.1:70b": 10 * 10**9}  # the lock's record wins over the estimate
    assert capacity.check_gpu(big, "A10G", 1, 22888, recorded) == []


def stand_in_nvidia_smi(directory, works: bool):
    """`nvidia-smi` as the real one answers --query-gpu, or fails as it does without a loaded driver."""
    directory.mkdir(exist_ok=True)
    script = directory / "nvidia-smi"
    if works:
        body = 'echo "NVIDIA A10G, 23028 MiB, 535.183.01"'
    else:
        body = "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return directory


@pytest.mark.parametrize("variant, works, reserved", [(None, True, False), ("gpu", True, True), ("gpu", False, False)])
def test_ollama_gets_the_gpu_only_on_the_gpu_image_while_the_driver_answers(tmp_path, variant, works, reserved):
    """The wrapper's choice of files, read from its own trace (bash -x) around the real `docker compose
    config`; what the override then makes of the stack is the next test's."""
    tree = make_tree(tmp_path / "tree", services=["ollama"])
    if variant:
        (tree.root / "image-variant").write_text(variant + "\n")
    bin_dir = stand_in_nvidia_smi(tmp_path / "bin", works)
    environ = {**tree.environ(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-x", str(tree.root / "bin/ai-platform-stack"), "config", "ollama"],
        env=environ,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    [call] = [line for line in result.stderr.splitlines() if line.startswith("+ docker compose")]
    assert ("compose.gpu.yaml" in call) == reserved, call


def test_the_gpu_override_reserves_every_nvidia_gpu_for_ollama(tmp_path):
    tree = make_tree(tmp_path / "tree", services=["ollama"])
    stack = tree.root / "stacks/ollama"
    out = subprocess.run(
        [
            "docker",
            "compose",
            "--project-directory",
            str(stack),
            "--env-file",
            str(tree.root / "stacks/images.env"),
            "--env-file",
            str(tree.etc / "stack.env"),
            "-f",
            str(stack / "compose.yaml"),
            "-f",
            str(stack / "compose.gpu.yaml"),
            "config",
            "--format",
            "json",
        ],
        env=tree.environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    ollama = json.loads(out.stdout)["services"]["ollama"]
    [device] = ollama["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] in (-1, "all")
    assert ollama["networks"]["ai-platform"]["ipv4_address"] == "172.20.0.10"  # the rest as compose.yaml has it


def test_the_health_line_reports_the_gpu_or_why_ollama_runs_on_the_cpu(tmp_path, monkeypatch, capsys):
    from firstboot_machine import Machine

    from firstboot import health
    from firstboot.cli import main

    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    settings = machine.settings(containers=lambda project: [])
    variant = tmp_path / "image-variant"
    settings = replace(settings, paths=replace(settings.paths, image_variant=variant))
    assert main(["run"], settings) == 0
    bin_dir = tmp_path / "bin"

    monkeypatch.setenv("PATH", f"{stand_in_nvidia_smi(bin_dir, True)}{os.pathsep}{os.environ['PATH']}")
    assert main(["health"], settings) == 0
    record = json.loads((machine.paths.state_dir / "health.json").read_text())
    assert health.GPU not in record["stacks"]  # a CPU image: no GPU line
    variant.write_text("gpu\n")
    capsys.readouterr()
    assert main(["health"], settings) == 0
    assert "; gpu NVIDIA A10G, 23028 MiB, driver 535.183.01" in capsys.readouterr().out
    stand_in_nvidia_smi(bin_dir, False)
    assert main(["health"], settings) == 0
    line = capsys.readouterr().out
    assert "gpu degraded: the NVIDIA driver does not answer (NVIDIA-SMI has failed" in line
    assert "Ollama runs on the CPU" in line
