"""`builder userdata NAME`: exactly the user-data an instance would get, to inspect before a launch."""

from __future__ import annotations

import base64
import json

import click

from builder.cli import GlobalOptions, global_options
from builder.commands.target import target_option


@click.command()
@click.argument("name")
@target_option()
@click.option("--volume-id", metavar="VOL", help="The data volume's id (the local target's disk serial).")
@click.option("--decoded", is_flag=True, help="Print the MIME text cloud-init reads instead of the base64 sent.")
@global_options
@click.pass_obj
def userdata(options: GlobalOptions, name: str, target: str | None, volume_id: str | None, decoded: bool) -> None:
    """Print the user-data instance NAME would be launched with (base64, as sent to EC2)."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import EC2_USER_DATA_LIMIT, check_instance_name, instance_document, render_user_data

    check_instance_name(name)
    config = load(options).config
    target = resolve(target, config)
    if target == "local" and volume_id is None:
        volume_id = "vol-0" + "0" * 16  # the local disk's serial when none is given
    user_data = render_user_data(config, instance_document(config, name, target, volume_id=volume_id))
    if options.json:
        click.echo(
            json.dumps(
                {
                    "instance": name,
                    "target": target,
                    "bytes": len(user_data.payload),
                    "limit": EC2_USER_DATA_LIMIT,
                    "gzip": user_data.compressed,
                    "user_data_base64": base64.b64encode(user_data.payload).decode(),
                },
                indent=2,
            )
        )
    elif decoded:
        click.echo(user_data.mime, nl=False)
    else:
        click.echo(base64.b64encode(user_data.payload).decode())
    click.echo(
        f"# {len(user_data.payload)} of {EC2_USER_DATA_LIMIT} bytes{' (gzip)' if user_data.compressed else ''}",
        err=True,
    )
