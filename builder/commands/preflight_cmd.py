"""`builder preflight`: what the AWS account lacks for a bake or a launch, by reading only."""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@target_option(("aws",), help="Preflight reads an AWS account: it checks aws whatever the config's `target`.")
@click.option(
    "--for",
    "purpose",
    type=click.Choice(["all", "bake", "launch"]),
    default="all",
    show_default=True,
    help="Only the checks that `bake --target aws` or `launch` run first.",
)
@command_options("set", "json")
@click.pass_obj
def preflight(options: GlobalOptions, target: str, purpose: str) -> None:
    """Check the AWS account before a bake or launch, changing nothing: credentials and partition,
    the subnet and its way out, Packer's SSH to the build instance, the instance type in the zone,
    vCPU quota headroom, the SSM parameters, the KMS keys, the base AMI. One line per check; exit 1
    on any failure."""
    from builder.aws import preflight as checks
    from builder.aws.clients import AwsClients
    from builder.commands.config_cmd import load

    config = load(options).config
    names = {"all": tuple(checks.ALL), "bake": checks.FOR_BAKE, "launch": checks.FOR_LAUNCH}[purpose]
    results = checks.run(AwsClients(config), config, names)
    failed = any(check.status == "fail" for check in results)
    if options.json:
        click.echo(json.dumps({"ok": not failed, "checks": [check.to_json() for check in results]}, indent=2))
    else:
        for check in results:
            click.echo(check.line())
        click.echo(checks.summary(results, planned=len(names)))
    if failed:
        raise SystemExit(1)
