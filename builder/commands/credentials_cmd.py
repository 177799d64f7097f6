"""`builder credentials NAME`: what the owner needs to get into instance NAME, with no shell on it.

The only command that prints a secret, and only these: the owner's logins that builder made at the
instance's first launch (builder/owner_credentials.py). Nothing is logged.
"""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options

# credential -> (what it opens, the path or app it is used at)
LOGINS = {
    "EDGE_OWNER_PASSWORD": ("edge owner routes (user 'owner': Signal linking)", ("main", "/signal/v1/qrcodelink")),
    "OPENCLAW_GATEWAY_TOKEN": ("Clawdbot (OpenClaw) gateway token", ("main", "/clawdbot/")),
    "ANYTHINGLLM_AUTH_TOKEN": ("AnythingLLM password", ("anythingllm", "/")),
    "DIFY_INIT_PASSWORD": ("Dify init password (asked before the first admin is made)", ("dify", "/install")),
    "N8N_OWNER_PASSWORD": ("n8n owner password (sign in as owner@ai-platform.invalid)", ("n8n", "/signin")),
    "LITELLM_MASTER_KEY": ("LiteLLM master key (admin UI: user admin; spend per app)", ("main", "/litellm/ui/")),
    "LITELLM_KEY_DIFY": (
        "Dify's LiteLLM key (enter once in Dify's model provider: base URL http://litellm:4000/v1, model auto)",
        ("dify", "/plugins"),
    ),
}


@click.command()
@click.argument("name")
@target_option()
@command_options("set", "json")
@click.pass_obj
def credentials(options: GlobalOptions, name: str, target: str | None) -> None:
    """Show the owner's credentials of instance NAME (made at its first launch) and where each is used."""
    from builder import owner_credentials
    from builder.commands.config_cmd import load
    from builder.commands.target import flag, resolve
    from builder.endpoints import local_bases, tailnet_bases
    from builder.errors import BuilderError
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    target = resolve(target, config)
    if target == "local":
        values = owner_credentials.read_local(config, name)
        where = str(owner_credentials.local_path(config, name))
        bases = local_bases(config, name)
    else:
        from builder.aws.clients import AwsClients

        values = owner_credentials.read_aws(AwsClients(config).client("ssm"), config, name)
        where = f"SSM {owner_credentials.parameter_name(config, name)}"
        from builder.endpoints import reported_certificate

        certificate = reported_certificate(config, name, target)
        bases = tailnet_bases(config, name, certificate.name if certificate else None)
    if values is None:
        raise BuilderError(
            f"{config.name}/{name} has no owner credentials yet ({where}): "
            f"`builder launch {name}{flag(target, config)}` makes them"
        )
    off = _of_disabled_services(config, values)
    rows = []
    for variable, value in values.items():
        if variable in off:
            continue
        what, (app, path) = LOGINS.get(variable, (variable, ("main", "/")))
        base = bases.get(app)
        url = f"{base}{path}" if base else None
        if variable == "OPENCLAW_GATEWAY_TOKEN" and url:
            url += f"#token={value}"  # the Control UI takes its token from the fragment (never sent to a server)
        rows.append({"credential": variable, "what": what, "value": value, "url": url})
    not_shown = [{"credential": variable, "disabled": services} for variable, services in off.items()]
    if options.json:
        document = {"instance": name, "stored": where, "credentials": rows, "not_shown": not_shown}
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{config.name}/{name}: the owner's credentials (kept in {where}); keep them to yourself")
    for row in rows:
        click.echo(f"  {row['what']}\n    {row['value']}" + (f"\n    at {row['url']}" if row["url"] else ""))
    if off:
        disabled = sorted({service for services in off.values() for service in services})
        click.echo(
            f"  not shown, as their services are disabled ({', '.join(f'services.{s}' for s in disabled)}): "
            + ", ".join(LOGINS.get(variable, (variable,))[0].split(" (")[0] for variable in off)
        )


def _of_disabled_services(config, values: dict[str, str]) -> dict[str, list[str]]:
    """The stored credentials of services this config disables, each with those services: a credential
    belongs to the stacks that read it (the .env contract) and to the app it is entered in (LOGINS)."""
    from builder import owner_credentials

    stacks = {credential.name: credential.stacks for credential in owner_credentials.owner_credentials()}
    seed = config.services.seed()
    off = {}
    for variable in values:
        app = LOGINS.get(variable, (variable, ("main", "/")))[1][0]
        services = [*stacks.get(variable, ()), *([app] if app != "main" else [])]
        disabled = [s for s in dict.fromkeys(services) if s in seed and not seed[s].enabled]
        if disabled:
            off[variable] = disabled
    return off
