"""`builder secrets set NAME` and `builder secrets list`: the platform's secrets in SSM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options, group_options


@click.group()
@group_options()
def secrets() -> None:
    """Store the Tailscale auth key and provider API keys in SSM (SecureString)."""


@secrets.command("set")
@click.argument(
    "name", type=click.Choice(["tailscale-auth-key", "anthropic-api-key", "openai-api-key", "rclone-config"])
)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read it from this file (rclone-config: your rclone.conf).",
)
@target_option(help="local: kept in local.state_dir for local VMs (rclone-config only; they have no SSM).")
@command_options("set", "dry_run")
@click.pass_obj
def set_secret(options: GlobalOptions, name: str, file: Path | None, target: str | None) -> None:
    """Store secret NAME, read from --file, standard input or a hidden prompt (never from the command line).

    --dry-run reads and checks it the same, then says where it would go (never the value)."""
    from builder.aws.secrets import MULTILINE_SECRETS, parameter_for, put_secret, secret_request, stored_parameter
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.errors import BuilderError

    config = load(options).config
    target = resolve(target, config)
    multiline = name in MULTILINE_SECRETS
    if target == "local" and name != "rclone-config":
        raise BuilderError(
            f"{name}: local VMs have no tailnet and read provider keys from SSM only; nothing was stored"
        )
    if file is not None:
        value = file.read_text(encoding="utf-8")
    elif sys.stdin.isatty():
        if multiline:
            raise BuilderError(f"{name} is a file: pass --file PATH or pipe it in; nothing was stored")
        # A terminal gets a hidden prompt; a pipe (`pass show ts | builder secrets set ...`) is read whole.
        value = click.prompt(f"{name} (input hidden)", hide_input=True)
    else:
        value = sys.stdin.read()
    if name == "rclone-config":
        _check_rclone_config(value, config.services.gdrive.remote, file or "standard input")
    if target == "local":
        from builder.local.secrets import rclone_config_path, store

        if not config.services.gdrive.enabled:
            raise BuilderError(f"{name}: services.gdrive is disabled; enable it first")
        path = rclone_config_path(config)
        if options.dry_run:
            what = "replacing the one there" if path.exists() else "a new file"
            click.echo(f"{name}: would store it in {path} (0600; {what}); dry run: nothing stored")
            return
        store(path, value.strip() + "\n")
        click.echo(f"{name}: stored in {path} (0600); local instances get it at their next launch")
        return
    from builder.aws.clients import AwsClients

    parameter = parameter_for(config, name)
    ssm = AwsClients(config).client("ssm")
    if options.dry_run:
        request = secret_request(parameter, value, multiline=multiline)  # the same checks, nothing sent
        current = stored_parameter(ssm, parameter)
        now = (
            f"overwriting version {current['Version']} ({current.get('Type', '?')}, {current['LastModifiedDate']})"
            if current
            else "a new parameter"
        )
        tier = request.get("Tier", "Standard")
        click.echo(f"{name}: would store it in SSM {parameter} ({request['Type']}, {tier} tier; {now})")
        click.echo("dry run: nothing stored")
        return
    version = put_secret(ssm, parameter, value, multiline=multiline)
    click.echo(f"{name}: stored in {parameter} (version {version})")
    if name == "tailscale-auth-key":
        click.echo(ROTATION_NOTE)


# A stored tailnet credential is read only to join: a running node (its state kept on its data volume)
# never needs it again, so replacing it disturbs nothing.
ROTATION_NOTE = (
    "running instances stay on the tailnet: the credential is read only to join (a new data volume, or a "
    "node the tailnet removed); revoke the previous one in Tailscale's admin console"
)


@secrets.command("set-tailscale-oauth")
@click.option("--client-id", required=True, help="The OAuth client's id (not secret; the secret is read from stdin).")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the client secret (tskey-client-…) from this file.",
)
@command_options("set", "dry_run")
@click.pass_obj
def set_tailscale_oauth(options: GlobalOptions, client_id: str, file: Path | None) -> None:
    """Store the Tailscale OAuth client from which each instance mints its own single-use key (recommended).

    The secret comes from --file, standard input or a hidden prompt (never the command line); it goes,
    with --client-id, into tailscale.oauth_client_parameter (SecureString). Running it again rotates
    the client. --dry-run checks it and says where it would go."""
    from builder.aws.secrets import oauth_client_value, parameter_for, put_secret, secret_request, stored_parameter
    from builder.commands.config_cmd import load

    config = load(options).config
    name = "tailscale-oauth-client"
    parameter = parameter_for(config, name)
    if file is not None:
        secret = file.read_text(encoding="utf-8")
    elif sys.stdin.isatty():
        secret = click.prompt("OAuth client secret (input hidden)", hide_input=True)
    else:
        secret = sys.stdin.read()
    value = oauth_client_value(client_id, secret)
    from builder.aws.clients import AwsClients

    ssm = AwsClients(config).client("ssm")
    if options.dry_run:
        request = secret_request(parameter, value)  # the same checks, nothing sent
        current = stored_parameter(ssm, parameter)
        now = f"overwriting version {current['Version']}" if current else "a new parameter"
        click.echo(f"{name}: would store client {client_id} in SSM {parameter} ({request['Type']}; {now})")
        click.echo("dry run: nothing stored")
        return
    version = put_secret(ssm, parameter, value)
    click.echo(f"{name}: client {client_id} stored in {parameter} (version {version})")
    click.echo(
        f"instances mint single-use keys tagged {','.join(config.tailscale.tags)} from it; the OAuth client "
        "needs the auth_keys scope and those tags. " + ROTATION_NOTE
    )


def _check_rclone_config(text: str, remote: str, source) -> None:
    """The config must hold the remote services.gdrive.remote names (rclone checks the rest on the instance)."""
    import configparser

    from builder.errors import BuilderError

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise BuilderError(
            f"{source}: not an rclone config ({exc.message.splitlines()[0]}); nothing was stored"
        ) from None
    if remote not in parser.sections():
        found = ", ".join(parser.sections()) or "none"
        raise BuilderError(
            f"{source}: no remote [{remote}] (it has: {found}); name yours {remote!r} or set services.gdrive.remote. "
            "Nothing was stored."
        )


@secrets.command("list")
@command_options("set", "json")
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
