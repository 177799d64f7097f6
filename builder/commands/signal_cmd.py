"""`builder signal link NAME`: link the bot's Signal number (services.signal_api.account) to instance NAME."""

from __future__ import annotations

import click

from builder.options import GlobalOptions, command_options, group_options


@click.group()
@group_options()
def signal() -> None:
    """Clawdbot's Signal channel."""


@signal.command("link")
@click.argument("name")
@click.option("--target", type=click.Choice(["aws", "local"]), default="aws", show_default=True)
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for the scan.")
@command_options("set")
@click.pass_obj
def link_command(options: GlobalOptions, name: str, target: str, timeout: float) -> None:
    """Show the link QR code in the terminal (through the edge, as the owner) and wait for the scan."""
    from builder import owner_credentials, signal_link
    from builder.commands.config_cmd import load
    from builder.endpoints import local_bases, tailnet_bases
    from builder.errors import BuilderError
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    account = config.services.signal_api.account
    if not account:
        raise BuilderError("services.signal_api.account is not set: name the bot's number (E.164) first")
    if target == "local":
        values, bases = owner_credentials.read_local(config, name), local_bases(config, name)
    else:
        from builder.aws.clients import AwsClients

        values = owner_credentials.read_aws(AwsClients(config).client("ssm"), config, name)
        bases = tailnet_bases(config, name)
    if not values or "main" not in bases:
        raise BuilderError(f"{config.name}/{name} is not running or was never launched (`builder launch {name}`)")
    # A local VM's edge has a self-signed certificate on a forwarded loopback port; the tailnet's is real.
    api = signal_link.SignalApi(bases["main"], values["EDGE_OWNER_PASSWORD"], verify=target != "local")
    click.echo(signal_link.link(api, account, f"{config.name}-{name}", click.echo, timeout=timeout))
