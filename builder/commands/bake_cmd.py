"""`builder bake`, `builder prune`, `builder janitor`: the platform's images, made once per input."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@target_option()
@click.option("--force", is_flag=True, help="Build even when an image with the same inputs exists.")
@click.option(
    "--allow-unresolved", is_flag=True, help="Bake even though some images of the lock have no digest (by tag)."
)
@click.option("--packer", "packer_binary", default="packer", show_default=True, help="The Packer binary to run.")
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Image lock to bake (default: the lock builder carries).",
)
@click.option(
    "--packer-var",
    "packer_vars",
    multiple=True,
    metavar="NAME=VALUE",
    help="How Packer reaches the AWS build instance (aws_ssh_host, aws_ssh_port, aws_ssh_username, "
    "aws_ssh_keypair_name, aws_ssh_private_key_file); repeatable.",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def bake(
    options: GlobalOptions,
    target: str | None,
    force: bool,
    allow_unresolved: bool,
    packer_binary: str,
    lock_path: Path | None,
    packer_vars: tuple[str, ...],
) -> None:
    """Bake the platform image: an AMI (--target aws) or a local qcow2 (--target local).

    Unchanged inputs are never rebuilt: an image whose input hash matches is returned as it is.
    """
    from builder.bake import bake as baking
    from builder.bake.payload import baked_pins
    from builder.bake.varfile import aws_endpoint_variables, connection_overrides
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.errors import BuilderError
    from builder.images import LOCK_PATH, lock_command, unresolved

    started = time.monotonic()
    config = load(options).config
    target = resolve(target, config)
    connection = connection_overrides(packer_vars)
    if connection and target != "aws":
        raise BuilderError("--packer-var sets how Packer reaches the AWS build instance: it needs --target aws")
    if target == "aws":
        _preflight(config, connection)
    ec2 = _ec2(config) if target == "aws" else None
    plan = baking.plan(config, target, ec2=ec2, packer_binary=packer_binary, force=force, lock=lock_path)
    # Every image the bake would pull, the owner's own services' too, must be pinned by digest.
    missing = unresolved(baked_pins(config, lock_path or LOCK_PATH))
    if options.dry_run:
        _show_plan(options, plan, missing)
        return
    if plan.cached is None and missing and not allow_unresolved:
        names = ", ".join(pin.reference(False) for pin in missing)
        raise BuilderError(
            f"{len(missing)} image(s) of {lock_path or LOCK_PATH} have no digest: {names}. Run {lock_command()} "
            "where their registries are reachable, or pass --allow-unresolved to bake them by tag. Nothing was done."
        )
    if plan.cached is not None:
        image = baking.use_cached(config, plan)
        result = {"image": image, "cached": True, "input_hash": plan.input_hash}
        result["seconds"] = round(time.monotonic() - started, 2)
        _echo(
            options, result, f"{config.name}: unchanged inputs, using {image} ({result['seconds']} s; --force rebuilds)"
        )
        return
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)

    def prepare(work):
        from builder.bake.local_base import prepare_local_base
        from builder.bake.payload import prepare_local_seed, prepare_payload

        click.echo(f"  preparing {work}", err=True)
        prepare_payload(config, work, allow_unresolved, lock_path)
        if target == "aws":
            return {**aws_endpoint_variables(), **connection}
        base = prepare_local_base(config, work, log=lambda line: click.echo(f"  {line}", err=True))
        return {**prepare_local_seed(work), **base}

    def on_step(elapsed: float, text: str) -> None:
        minutes, seconds = divmod(int(elapsed), 60)
        click.echo(f"  [{minutes:02d}:{seconds:02d}] {_short(text)}", err=True)

    def on_output(text: str) -> None:
        if options.debug:
            click.echo(f"      {text}", err=True)

    click.echo(f"baking {config.name} ({target}, build {plan.build_id}, inputs {plan.input_hash[:12]})", err=True)
    result = baking.execute(config, plan, prepare, on_step, on_output, ec2=ec2)
    result.update({"cached": False, "input_hash": plan.input_hash, "build_id": plan.build_id})
    _echo(options, result, f"{config.name}: baked {result['image']} in {result['seconds']} s")


def _short(text: str) -> str:
    return re.sub(r"^==> ", "", text.replace("\n", " ")).strip()


def _preflight(config, connection: dict) -> None:
    """What the account lacks for a bake stops it here, with every failed check and its fix."""
    from builder.aws import preflight
    from builder.aws.clients import AwsClients

    names = preflight.FOR_BAKE
    if connection.get("aws_ssh_host"):  # Packer is told where to connect: the instance's own address is unused
        names = tuple(name for name in names if name != "build SSH")
    preflight.require(AwsClients(config), config, names, "bake", note=lambda line: click.echo(line, err=True))


def _show_plan(options: GlobalOptions, plan, missing) -> None:
    document = {**plan.to_json(), "dry_run": True, "unresolved_images": [p.reference(False) for p in missing]}
    if options.json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"bake plan for {plan.platform} ({plan.target}); dry run: nothing changed")
    click.echo(f"  inputs     {plan.input_hash}")
    click.echo(f"  base       {plan.base}")
    if plan.cached:
        click.echo(f"  cached     {plan.cached} has these inputs: no build")
    else:
        click.echo(f"  build      {plan.build_id} with Packer {plan.packer.version_text if plan.packer else '?'}")
    for image in plan.contents.get("images", []):
        size = f"{image['gb']:g} GB" if image["gb"] is not None else "size unknown"
        click.echo(f"  image      {image['reference']} ({size}){'' if image['digest'] else ', no digest yet'}")
    for model in plan.contents.get("models", []):
        said = {"estimate": "estimated from its tag", "recorded": "recorded in the lock", "published": "published"}
        size = "size unknown" if model["gb"] is None else f"{model['gb']:g} GB, {said[model['size']]}"
        click.echo(f"  model      {model['model']} ({'about ' if model['size'] == 'estimate' else ''}{size})")
    disk = plan.contents.get("disk")
    if disk:
        needed, setting = disk["needed_gib"], disk["setting"]
        click.echo(f"  disk       about {needed:g} GiB with headroom; {setting} is {disk['configured_gib']} GiB")
        if disk["unrecorded"]:
            click.echo(f"  sizes      {disk['unrecorded']}")
    _show_gpu(plan)
    for note in plan.notes:
        click.echo(f"  note       {note}")
    if missing:
        from builder.images import lock_command

        click.echo(f"  unresolved {len(missing)} image digest(s): {lock_command()} resolves them")


def _show_gpu(plan) -> None:
    """The GPU image's own steps (builder/aws/gpu.py): its provisioning and its image suite checks."""
    click.echo(f"  variant    {plan.variant}")
    steps = plan.contents.get("gpu")
    if not steps:
        return
    click.echo(f"  gpu        {steps['gpus']}")
    for step in steps["provisioning"]:
        click.echo(f"  provision  {step}")
    for check in steps["image_suite"]:
        click.echo(f"  check      {check}")


def _echo(options: GlobalOptions, result: dict, line: str) -> None:
    click.echo(json.dumps(result, indent=2) if options.json else line)


def _ec2(config):
    from builder.aws.clients import AwsClients

    return AwsClients(config).client("ec2")


@click.command()
@click.option("--keep", default=3, show_default=True, type=click.IntRange(min=1), help="Newest AMIs to keep.")
@command_options("set", "json", "dry_run")
@click.pass_obj
def prune(options: GlobalOptions, keep: int) -> None:
    """Deregister the platform's older AMIs and delete their snapshots (snapshots are billed)."""
    from builder.bake import aws_images
    from builder.commands.config_cmd import load

    config = load(options).config
    removed = aws_images.prune(_ec2(config), config.name, keep, dry_run=options.dry_run)
    rows = [{"image": ami.image_id, "name": ami.name, "snapshots": list(ami.snapshots)} for ami in removed]
    if options.json:
        click.echo(json.dumps({"dry_run": options.dry_run, "removed": rows}, indent=2))
        return
    verb = "would remove" if options.dry_run else "removed"
    for row in rows:
        click.echo(f"{verb} {row['image']} ({row['name']}) and snapshots {', '.join(row['snapshots']) or 'none'}")
    click.echo(f"{len(rows)} AMI(s) {verb}; the newest {keep} kept")


@click.command()
@click.option("--older-than", default="6h", show_default=True, help="Age of leftovers to sweep (30m, 6h, 2d).")
@command_options("set", "json", "dry_run")
@click.pass_obj
def janitor(options: GlobalOptions, older_than: str) -> None:
    """Find and remove what interrupted bakes left: build instances, Packer's key pairs and groups, snapshots."""
    from builder.bake import aws_images
    from builder.commands.config_cmd import load

    match = re.fullmatch(r"(\d+)([mhd])", older_than)
    if not match:
        raise click.BadParameter("a number with m, h or d, e.g. 6h", param_hint="--older-than")
    age = dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[match[2]]: int(match[1])})
    config = load(options).config
    found = aws_images.sweep_leaks(_ec2(config), config.name, age, dry_run=options.dry_run)
    document = {"dry_run": options.dry_run, **found.__dict__}
    if options.json:
        click.echo(json.dumps(document, indent=2))
        return
    verb = "would remove" if options.dry_run else "removed"
    for kind in ("instances", "security_groups", "key_pairs", "snapshots"):
        for item in getattr(found, kind):
            click.echo(f"{verb} {kind[:-1].replace('_', ' ')} {item}")
    click.echo(f"{found.total()} leftover(s) older than {older_than} {verb}")
