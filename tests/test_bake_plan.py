"""`builder bake` up to Packer: the template in both shapes, the var file, the input hash and the cache.

`packer validate` is Debian's Packer 1.6.6, for real, on the template `builder bake` writes for it.
Current Packer cannot be installed here (its plugins come from GitHub): its shape is checked for
what it must keep. AWS calls go to moto (the stand-in for the EC2 API).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import REPO
from moto_server import make_tagged_ami

from builder.bake import bake as baking
from builder.bake import inputs, template
from builder.bake.payload import prepare_local_seed
from builder.bake.varfile import render_var_file
from builder.config.schema import PlatformConfig
from builder.images import load_lock

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="needs packer (apt-get install packer)")
CONFIG = PlatformConfig(version=1)


def test_the_template_is_formatted():
    result = subprocess.run(
        ["packer", "fmt", "-check", "-diff", str(template.TEMPLATE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_current_packer_keeps_plugins_and_imds_and_packer_166_gets_neither(tmp_path):
    text = template.TEMPLATE.read_text()
    for needed in ("required_plugins", "metadata_options", 'http_tokens                 = "required"', "imds_support"):
        assert needed in text
    legacy = template.legacy_text(text)
    for gone in ("required_plugins", "metadata_options", "imds_support", "temporary_key_pair_type"):
        assert gone not in legacy
    assert legacy.count('\nsource "') == text.count('\nsource "') == 2  # both sources stay
    tool = template.PackerTool("packer", (1, 6, 6))
    _, notes = template.template_for(tool, tmp_path / "t.pkr.hcl")
    assert "allows IMDSv1" in notes[0]
    _, modern_notes = template.template_for(template.PackerTool("packer", (1, 11, 2)), tmp_path / "m.pkr.hcl")
    assert modern_notes == [] and (tmp_path / "m.pkr.hcl").read_text() == text


def test_unpaired_markers_are_refused():
    with pytest.raises(Exception, match="do not pair up"):
        template.legacy_text("# legacy-packer: omit-begin\nx = 1\n")


@pytest.fixture
def work(tmp_path):
    """A bake's work directory as `execute` lays it out, with stand-in base files (validate only stats them)."""
    work = tmp_path / "bake"
    (work / "payload").mkdir(parents=True)
    (work / "base").mkdir()
    for name in ("root.qcow2", "vmlinuz", "initrd.img"):
        (work / "base" / name).write_bytes(b"\0")
    return work


@pytest.mark.parametrize(
    ("source", "boot"),
    [("qemu.local", "direct kernel"), ("qemu.local", "own boot loader"), ("amazon-ebs.aws", None)],
)
def test_packer_166_validates_the_rendered_template_and_var_file(work, source, boot):
    """Both local bases' shapes: Debian's kernel booted from outside, Ubuntu's image booting itself."""
    tool = template.find_packer()
    plan = baking.BakePlan("local", "ai-platform", "f" * 64, "base", "20261126-000000", None, tool)
    local = {
        **prepare_local_seed(work),
        "local_base_image": str(work / "base/root.qcow2"),
        "local_boot": []
        if boot == "own boot loader"
        else [["-kernel", str(work / "base/vmlinuz")], ["-initrd", str(work / "base/initrd.img")]],
    }
    variables = render_var_file(CONFIG, plan, work, local)
    var_file = work / "variables.pkrvars.json"
    var_file.write_text(json.dumps(variables))
    path, _ = template.template_for(tool, work / "packer.pkr.hcl")
    baking.validate(tool, path, var_file, source)  # raises with Packer's message on failure
    assert variables["aws_ami_name"] == "ai-platform-20261126-000000"


def test_validate_failure_names_the_problem(work):
    tool = template.find_packer()
    path, _ = template.template_for(tool, work / "packer.pkr.hcl")
    var_file = work / "v.pkrvars.json"
    var_file.write_text(json.dumps({"no_such_variable": 1}))
    with pytest.raises(Exception, match="packer validate failed"):
        baking.validate(tool, path, var_file, "qemu.local")


def test_the_input_hash_follows_every_input_and_nothing_else(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for name in inputs.HASHED_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / name)
    first = inputs.input_hash(CONFIG, "local", "base-a", root)
    assert inputs.input_hash(CONFIG, "local", "base-a", root) == first
    assert inputs.input_hash(CONFIG, "aws", "base-a", root) != first
    assert inputs.input_hash(CONFIG, "local", "base-b", root) != first
    other_models = PlatformConfig(version=1, ollama={"models": ["llama3.2:3b"]})
    assert inputs.input_hash(other_models, "local", "base-a", root) != first
    mirrors_only = PlatformConfig(version=1, image={"mirrors": {"apt": "http://apt.internal/debian"}})
    assert inputs.input_hash(mirrors_only, "local", "base-a", root) == first  # where bytes come from, not which
    not_the_image = PlatformConfig(version=1, aws={"ssh_ingress_cidrs": ["10.0.0.0/8"]})
    assert inputs.input_hash(not_the_image, "local", "base-a", root) == first
    changes = ("image/rootfs/opt/ai-platform/env-contract.json", "firstboot/agent.py", "packer.pkr.hcl")
    for changed in (*changes, "builder/bake/payload.py"):
        path = root / changed
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert inputs.input_hash(CONFIG, "local", "base-a", root) != first, changed
        path.write_bytes(original)
    host = inputs.build_host_inputs()
    monkeypatch.setattr(inputs, "build_host_inputs", lambda: {**host, "compose_plugin": "another build"})
    assert inputs.input_hash(CONFIG, "local", "base-a", root) != first, "another Compose plugin, same hash"
    monkeypatch.setattr(inputs, "build_host_inputs", lambda: {**host, "wheels": ["boto3==0"]})
    assert inputs.input_hash(CONFIG, "local", "base-a", root) != first, "other agent wheels, same hash"
    monkeypatch.undo()
    (root / "image" / "__pycache__").mkdir(exist_ok=True)
    (root / "image" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert inputs.input_hash(CONFIG, "local", "base-a", root) == first


def test_an_aws_bake_with_known_inputs_returns_the_ami_without_building(aws, builder, tmp_path):
    """Cache hit: the AMI tagged with this input hash is the answer, with no Packer run."""
    ec2 = aws.client("ec2")
    base = ec2.describe_images()["Images"][0]
    platform_config = tmp_path / "platform.yaml"
    platform_config.write_text(
        f"version: 1\nimage:\n  base_ami_owner: '{base['OwnerId']}'\n  base_ami_name_filter: '{base['Name']}'\n"
    )
    result = builder("--config", str(platform_config), "--json", "bake", "--target", "aws", "--dry-run")
    assert result.code == 0, result.err
    planned = json.loads(result.out)
    assert planned["cached"] is None and planned["base"] == base["ImageId"]
    if template.find_packer().legacy:  # what Packer 1.6.6's amazon-ebs build lacks is said for aws
        assert any("allows IMDSv1" in note for note in planned["notes"])
    image = make_tagged_ami(
        ec2,
        base["ImageId"],
        "ai-platform-old",
        {"ai-platform:platform": "ai-platform", "ai-platform:input-hash": planned["input_hash"]},
    )
    # No Packer to run: an answer proves no build was tried (bench/bake_cache.py measures the time).
    result = builder("--config", str(platform_config), "--json", "bake", "--target", "aws", "--packer", "/nonexistent")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert answer["cached"] is True and answer["image"] == image
    forced = builder("--config", str(platform_config), "bake", "--target", "aws", "--force", "--packer", "/nonexistent")
    assert forced.code == 1 and "/nonexistent: not found" in forced.err


def test_a_local_bake_with_known_inputs_makes_that_image_current(builder, tmp_path):
    platform_config = tmp_path / "platform.yaml"
    platform_config.write_text(f"version: 1\nlocal:\n  state_dir: {tmp_path / 'state'}\n")
    config = PlatformConfig(version=1, local={"state_dir": str(tmp_path / "state")})
    digest = inputs.input_hash(config, "local", baking.local_base_identity(config))
    store = baking.local_store(config) / digest
    store.mkdir(parents=True)
    for name in ("root.qcow2", "vmlinuz", "initrd.img"):
        (store / name).write_bytes(b"\0")
    (store / "image.json").write_text(
        json.dumps(
            {"disk": str(store / "root.qcow2"), "kernel": str(store / "vmlinuz"), "initrd": str(store / "initrd.img")}
        )
    )
    result = builder(
        "--config", str(platform_config), "--json", "bake", "--target", "local", "--packer", "/nonexistent"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "image": str(store / "root.qcow2"),
        "cached": True,
        "input_hash": digest,
        "seconds": json.loads(result.out)["seconds"],
    }
    from builder.local.instances import current_image

    assert current_image(config).disk == store / "root.qcow2"
    (store / "root.qcow2").unlink()  # a record whose disk is gone is no cache hit
    result = builder("--config", str(platform_config), "bake", "--target", "local", "--packer", "/nonexistent")
    assert result.code == 1 and "not found" in result.err


def test_connection_variables_are_the_only_packer_vars_a_bake_takes():
    from builder.bake.varfile import connection_overrides
    from builder.errors import BuilderError

    assert connection_overrides(["aws_ssh_port=2222", "aws_ssh_host=10.0.0.5"]) == {
        "aws_ssh_port": 2222,
        "aws_ssh_host": "10.0.0.5",
    }
    with pytest.raises(BuilderError, match=r"aws_root_volume_gib=1.*aws_ssh_host, aws_ssh_port"):
        connection_overrides(["aws_root_volume_gib=1"])  # shapes the image: the config's, hashed
    with pytest.raises(BuilderError, match="NAME=VALUE"):
        connection_overrides(["aws_ssh_host"])


def test_packer_var_on_the_local_target_is_refused_before_anything_happens(builder, tmp_path):
    state = tmp_path / "state"
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal:\n  state_dir: {state}\n")
    result = builder("bake", "--target", "local", "--packer-var", "aws_ssh_port=22")
    assert result.code == 1 and "--target aws" in result.err
    assert not state.exists()


def test_packer_talks_to_the_ec2_endpoint_boto3_uses():
    from builder.bake.varfile import aws_endpoint_variables

    assert aws_endpoint_variables({}) == {"aws_ec2_endpoint": "", "aws_offline": False}
    both = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:5001"}
    assert aws_endpoint_variables(both) == {"aws_ec2_endpoint": "http://127.0.0.1:5001", "aws_offline": True}


def test_a_wheel_mirror_without_the_wheels_fails_naming_the_setting(tmp_path):
    """A real pip against an empty directory: the wheelhouse cannot be built, and the error says where from."""
    from builder.bake.payload import build_wheelhouse
    from builder.errors import BuilderError

    empty = tmp_path / "wheels"
    empty.mkdir()
    with pytest.raises(BuilderError, match=rf"from {empty} failed.*image\.mirrors\.wheels"):
        build_wheelhouse(tmp_path / "wheelhouse", str(empty))
    with pytest.raises(BuilderError, match=r"image\.mirrors\.wheels: /nonexistent is not a directory"):
        build_wheelhouse(tmp_path / "wheelhouse", "/nonexistent")


def test_image_encrypted_reaches_the_template(work):
    """image.encrypted: false must reach Packer (it was fixed to true in the template)."""
    tool = template.find_packer()
    plan = baking.BakePlan("aws", "ai-platform", "f" * 64, "ami-0", "20261126-000000", None, tool)
    plain = PlatformConfig.model_validate({"version": 1, "image": {"encrypted": False}})
    variables = render_var_file(plain, plan, work, {})
    assert variables["aws_encrypt_boot"] is False and render_var_file(CONFIG, plan, work, {})["aws_encrypt_boot"]
    text = (template.REPO_ROOT / "packer.pkr.hcl").read_text()
    assert "encrypt_boot         = var.aws_encrypt_boot" in text


def test_the_amazon_plugin_is_one_version_with_imds_support_below_its_next_major():
    """Pinned exactly (tests/test_pins.py): one that has imds_support (1.2.2 on) and is not a new major."""
    text = (template.REPO_ROOT / "packer.pkr.hcl").read_text()
    [version] = re.findall(r'source\s*=\s*"github.com/hashicorp/amazon"\s*\n\s*version\s*=\s*"= ([\d.]+)"', text)
    assert (1, 2, 2) <= tuple(map(int, version.split("."))) < (2,)


def test_aws_subnet_id_reaches_the_bake(work):
    """Accounts without a default VPC: the build instance goes where the instances go."""
    tool = template.find_packer()
    plan = baking.BakePlan("aws", "ai-platform", "f" * 64, "ami-0", "20261126-000000", None, tool)
    placed = PlatformConfig.model_validate({"version": 1, "aws": {"subnet_id": "subnet-0123456789abcdef0"}})
    assert render_var_file(placed, plan, work, {})["aws_subnet_id"] == "subnet-0123456789abcdef0"
    assert render_var_file(CONFIG, plan, work, {})["aws_subnet_id"] == ""
    assert "subnet_id            = var.aws_subnet_id" in (template.REPO_ROOT / "packer.pkr.hcl").read_text()


def test_packer_builds_on_the_base_ami_the_plan_resolved_and_hashed(aws, tmp_path, work):
    """The plan picks the newest base AMI and hashes it; Packer gets that id, never a filter of its own
    to pick again with (a newer AMI published in between would be built under the old hash)."""
    ec2 = aws.client("ec2")
    base = ec2.describe_images()["Images"][0]
    config = PlatformConfig.model_validate(
        {"version": 1, "image": {"base_ami_owner": base["OwnerId"], "base_ami_name_filter": base["Name"]}}
    )
    plan = baking.plan(config, "aws", ec2=ec2, force=True)
    assert plan.base == base["ImageId"]
    assert render_var_file(config, plan, work, {})["aws_source_ami"] == base["ImageId"]
    text = (template.REPO_ROOT / "packer.pkr.hcl").read_text()
    assert "source_ami           = var.aws_source_ami" in text and "source_ami_filter" not in text


@pytest.mark.parametrize(
    "region, owner",
    [("us-east-1", "099720109477"), ("us-gov-west-1", "513442679011"), ("cn-north-1", "837727238323")],
)
def test_the_base_ami_owner_is_canonicals_account_in_the_regions_partition(region, owner):
    config = PlatformConfig.model_validate({"version": 1, "aws": {"region": region}})
    assert baking.base_ami_owner(config) == owner
    chosen = {"version": 1, "aws": {"region": region}, "image": {"base_ami_owner": "1" * 12}}
    mine = PlatformConfig.model_validate(chosen)
    assert baking.base_ami_owner(mine) == "1" * 12


def test_the_local_plan_lists_images_models_and_sizes_without_the_aws_note(builder, tmp_path, monkeypatch):
    """The local bake has no AWS build instance: Packer 1.6.6's IMDSv1 and 0.0.0.0/0 SSH are not its
    business. What it holds is: every image and model, each with its size, and the disk they need."""
    monkeypatch.setattr(template, "find_packer", lambda binary="packer": template.PackerTool(binary, (1, 6, 6)))
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\nollama: {{models: [qwen2.5:14b]}}\n"
        "routing: {tiers: {simple: local, medium: local}}\n"
    )
    planned = builder("--json", "bake", "--target", "local", "--dry-run")
    assert planned.code == 0, planned.err
    plan = json.loads(planned.out)
    assert not any("IMDSv1" in note or "0.0.0.0/0" in note for note in plan["notes"])
    assert [image["variable"] for image in plan["images"]] == [pin.variable for pin in load_lock()]
    assert all(image["gb"] for image in plan["images"])
    models = {model["model"]: model for model in plan["models"]}
    assert models["qwen2.5:14b"]["size"] == "estimate" and models["qwen2.5:14b"]["gb"] > 9
    assert models["nomic-embed-text:v1.5"]["size"] == "published"
    assert plan["disk"]["setting"] == "local.disk_size_gib" and plan["disk"]["needed_gib"] > 40
    text = builder("bake", "--target", "local", "--dry-run")
    assert text.code == 0 and "IMDSv1" not in text.out
    assert "model      qwen2.5:14b (about 9.4 GB, estimated from its tag)" in text.out
    assert "image      docker.io/library/postgres:15-alpine (0.3 GB" in text.out
    assert "run `builder images lock` to record their sizes" in text.out


def test_a_plan_with_a_service_disabled_says_its_images_are_baked_all_the_same(builder, tmp_path, monkeypatch):
    """With Dify off, the plan counted Dify's five images without a word: the image serves every
    config (the enabled services are not among its inputs), and the plan now says so."""
    monkeypatch.setattr(template, "find_packer", lambda binary="packer": template.PackerTool(binary, (1, 9, 4)))
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\nservices: {{dify: {{enabled: false}}}}\n"
    )
    plan = json.loads(builder("--json", "bake", "--target", "local", "--dry-run").out)
    [note] = [note for note in plan["notes"] if "disabled services" in note]
    assert "(dify) are baked too: one image serves every config" in note
    assert any(image["variable"].startswith("DIFY_") for image in plan["images"])
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\n")
    every = json.loads(builder("--json", "bake", "--target", "local", "--dry-run").out)
    assert not any("disabled services" in note for note in every["notes"])
