"""`builder signal link NAME`: link the bot's Signal number (services.signal_api.account) to instance NAME."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options, group_options


@click.group()
@group_options()
def signal() -> None:
    """Clawdbot's Signal channel."""


@signal.command("link")
@click.argument("name")
@target_option()
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for the scan.")
@command_options("set")
@click.pass_obj
def link_command(options: GlobalOptions, name: str, target: str | None, timeout: float) -> None:
    """Show the link QR code in the terminal (through the edge, as the owner) and wait for the scan."""
    from builder import owner_credentials, signal_link
    from builder.commands.config_cmd import load
    from builder.commands.target import flag, resolve
    from builder.endpoints import local_bases, reported_certificate, tailnet_bases
    from builder.errors import BuilderError
    from builder.userdata import check_instance_name, hostname_for

    check_instance_name(name)
    config = load(options).config
    target = resolve(target, config)
    account = config.services.signal_api.account
    if not account:
        raise BuilderError("services.signal_api.account is not set: name the bot's number (E.164) first")
    certificate = reported_certificate(config, name, target)
    if target == "local":
        values, bases = owner_credentials.read_local(config, name), local_bases(config, name)
    else:
        from builder.aws.clients import AwsClients

        values = owner_credentials.read_aws(AwsClients(config).client("ssm"), config, name)
        bases = tailnet_bases(config, name, certificate.name if certificate else None)
    if not values or "main" not in bases:
        launch = f"builder launch {name}{flag(target, config)}"
        raise BuilderError(f"{config.name}/{name} is not running or was never launched (`{launch}`)")
    if target == "local":
        unreachable = f"is it running (`builder status {name} --target local`)?"
    else:  # the edge answers on the tailnet only
        host = certificate.name if certificate else hostname_for(config, name)
        unreachable = (
            f"is this machine on the tailnet (`tailscale status` lists {host.split('.')[0]}) with MagicDNS on, "
            f"and does `builder status {name}` show its agent done?"
        )
    with tempfile.TemporaryDirectory() as directory:
        verify = _verification(certificate, bases["main"], target, directory)
        api = signal_link.SignalApi(
            bases["main"], values["EDGE_OWNER_PASSWORD"], verify=verify, unreachable=unreachable
        )
        click.echo(signal_link.link(api, account, f"{config.name}-{name}", click.echo, timeout=timeout))


def _verification(certificate, base: str, target: str, directory: str) -> bool | str:
    """What TLS is checked against: the CAs this machine trusts for a certificate browsers trust; the
    reported certificate itself (its fingerprint) for a self-signed one."""
    from builder import signal_link

    if certificate is None:  # an instance whose agent reports no certificate (an image from before)
        if target == "local":
            click.echo("note: the instance reported no certificate: TLS is not verified (loopback)", err=True)
            return False
        return True
    if certificate.trusted:
        return True
    return signal_link.pinned_certificate(base, certificate.sha256, Path(directory))
