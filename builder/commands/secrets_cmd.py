"""`builder secrets set NAME` and `builder secrets list`: the platform's secrets in SSM."""

from __future__ import annotations

import json
import sys

import click

from builder.cli import GlobalOptions, global_options


@click.group()
@global_options
def secrets() -> None:
    """Store the Tailscale auth key and provider API keys in SSM (SecureString)."""


@secrets.command("set")
@click.argument("name", type=click.Choice(["tailscale-auth-key", "anthropic-api-key", "openai-api-key"]))
@global_options
@click.pass_obj
def set_secret(options: GlobalOptions, name: str) -> None:
    """Store secret NAME, read from standard input or a hidden prompt (never from the command line)."""
    from builder.aws.clients import AwsClients
    from builder.aws.secrets import parameter_for, put_secret
    from builder.commands.config_cmd import load

    config = load(options).config
    parameter = parameter_for(config, name)
    # A terminal gets a hidden prompt; a pipe (`pass show ts | builder secrets set ...`) is read whole.
    interactive = sys.stdin.isatty()
    value = click.prompt(f"{name} (input hidden)", hide_input=True) if interactive else sys.stdin.read()
    version = put_secret(AwsClients(config).client("ssm"), parameter, value)
    click.echo(f"{name}: stored in {parameter} (version {version})")


@secrets.command("list")
@global_options
@click.pass_obj
def list_secrets_command(options: GlobalOptions) -> None:
    """Which secrets are stored: names and dates only, never values."""
    from builder.aws.clients import AwsClients
    from builder.aws.secrets import list_secrets
    from builder.commands.config_cmd import load

    config = load(options).config
    rows = list_secrets(AwsClients(config).client("ssm"), config)
    if options.json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        where = row["parameter"] or "(not configured)"
        state = f"stored, version {row['version']}, {row['last_modified']}" if row["stored"] else "not stored"
        click.echo(f"{row['secret']:<20} {where:<40} {state}")
