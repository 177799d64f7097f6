"""GlobalOptions and the options every command takes, below the commands (builder/commands/*) and
the group that gathers them (builder/cli.py): both import it, it imports neither.

Only click is imported here: `builder --help` must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click


@dataclass
class GlobalOptions:
    """Options every command takes, before or after its name (as the AWS CLI does)."""

    config: str | None = None
    profile: str | None = None
    region: str | None = None
    assignments: list[str] = field(default_factory=list)
    json: bool = False
    dry_run: bool = False
    debug: bool = False


def _remember(name: str):
    def callback(ctx: click.Context, _param: click.Parameter, value):
        options = ctx.find_object(GlobalOptions)
        if options is None or value in (None, False, ()):
            return
        if name == "assignments":
            options.assignments.extend(value)
        else:
            setattr(options, name, value)

    return callback


_GLOBAL_OPTIONS = [
    click.option(
        "--config",
        "-c",
        metavar="PATH",
        callback=_remember("config"),
        expose_value=False,
        help="Platform config file [env BUILDER_CONFIG; default ./platform.yaml].",
    ),
    click.option(
        "--profile",
        metavar="NAME",
        callback=_remember("profile"),
        expose_value=False,
        help="AWS profile [env AWS_PROFILE].",
    ),
    click.option(
        "--region",
        metavar="NAME",
        callback=_remember("region"),
        expose_value=False,
        help="AWS region [env AWS_REGION].",
    ),
    click.option(
        "--set",
        "assignments",
        metavar="KEY=VALUE",
        multiple=True,
        callback=_remember("assignments"),
        expose_value=False,
        help="Override one config value, e.g. --set aws.instance_type=g5.xlarge.",
    ),
    click.option(
        "--json", is_flag=True, callback=_remember("json"), expose_value=False, help="Machine-readable output."
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        callback=_remember("dry_run"),
        expose_value=False,
        help="Show what would be done; change nothing.",
    ),
    click.option(
        "--debug",
        is_flag=True,
        callback=_remember("debug"),
        expose_value=False,
        help="Show tracebacks and raw tool output.",
    ),
]


def global_options(command):
    for option in reversed(_GLOBAL_OPTIONS):
        command = option(command)
    return command
