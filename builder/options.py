"""The options of `builder` and its commands, and where their values are kept (GlobalOptions).

Below the commands (builder/commands/*) and the group that gathers them (builder/cli.py): both
import it, it imports neither. Only click is imported here: `builder --help` must stay light.

Two kinds of option:

* global: --config, --profile, --region, --debug; every group and command takes them, before or
  after the command name (as the AWS CLI does);
* per command: --json, --dry-run, --set; a command offers only those it honours
  (`command_options("json", "set")`), and only those appear in its --help. They are accepted before
  the command name too (`builder --json --dry-run bake`); a command that does not honour one given
  there or after it stops with a usage error (exit 2) naming the option and the command, rather
  than ignoring it: a dry run that was not one writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import click


@dataclass
class GlobalOptions:
    """Every option's value, wherever on the command line it was given."""

    config: str | None = None
    profile: str | None = None
    region: str | None = None
    assignments: list[str] = field(default_factory=list)
    json: bool = False
    dry_run: bool = False
    debug: bool = False
    # The per-command options given before the command name (e.g. `builder --dry-run secrets list`),
    # by flag: the command checks them against what it honours.
    given_before: list[str] = field(default_factory=list)


# name (as a command declares it) -> (flag, GlobalOptions attribute)
PER_COMMAND = {"set": ("--set", "assignments"), "json": ("--json", "json"), "dry_run": ("--dry-run", "dry_run")}


def _remember(name: str, before: str | None = None):
    def callback(ctx: click.Context, _param: click.Parameter, value):
        options = ctx.find_object(GlobalOptions)
        if options is None or value in (None, False, ()):
            return
        if before is not None and before not in options.given_before:
            options.given_before.append(before)
        if name == "assignments":
            options.assignments.extend(value)
        else:
            setattr(options, name, value)

    return callback


def _refuse(flag: str):
    """The callback of an option the command does not honour: given anywhere, a usage error."""

    def callback(ctx: click.Context, _param: click.Parameter, value):
        if ctx.resilient_parsing:  # shell completion parses without acting
            return
        options = ctx.find_object(GlobalOptions)
        if value in (None, False, ()) and (options is None or flag not in options.given_before):
            return
        raise click.UsageError(
            f"{flag}: `{ctx.command_path}` does not offer it (`{ctx.command_path} --help` lists its options)",
            ctx=ctx,
        )

    return callback


def _global(command):
    for option in reversed(
        [
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
        ]
    ):
        command = option(command)
    return command


def _debug(command):
    return click.option(
        "--debug",
        is_flag=True,
        callback=_remember("debug"),
        expose_value=False,
        help="Show tracebacks and raw tool output.",
    )(command)


_HELP = {
    "set": "Override one config value, e.g. --set aws.instance_type=g5.xlarge.",
    "json": "Machine-readable output.",
    "dry_run": "Show what would be done; change nothing.",
}


def _per_command(name: str, *, hidden: bool, callback: Callable, help_suffix: str = ""):
    flag, attribute = PER_COMMAND[name]
    if name == "set":
        return click.option(
            flag,
            attribute,
            metavar="KEY=VALUE",
            multiple=True,
            hidden=hidden,
            callback=callback,
            expose_value=False,
            help=_HELP[name] + help_suffix,
        )
    return click.option(
        flag,
        attribute,
        is_flag=True,
        hidden=hidden,
        callback=callback,
        expose_value=False,
        help=_HELP[name] + help_suffix,
    )


def group_options(*, list_per_command: bool = False):
    """For a group (`builder`, `builder secrets`, ...): the global options, and the per-command ones
    given before the command name, kept for the command to take or refuse. `builder --help` lists
    them (list_per_command); a subgroup's does not, since not all of its commands take them."""

    def decorate(command):
        command = _debug(command)
        for name in reversed(PER_COMMAND):
            flag, attribute = PER_COMMAND[name]
            command = _per_command(
                name,
                hidden=not list_per_command,
                callback=_remember(attribute, before=flag),
                help_suffix=" Only where the command offers it (its --help lists it).",
            )(command)
        return _global(command)

    return decorate


def command_options(*honours: str):
    """For a command: the global options, the per-command ones it honours (listed in its --help),
    and, hidden, those it does not, which stop it with a usage error when given."""
    unknown = set(honours) - PER_COMMAND.keys()
    if unknown:
        raise ValueError(f"no per-command option {sorted(unknown)}: the options are {sorted(PER_COMMAND)}")

    def decorate(command):
        command = _debug(command)
        for name in reversed(PER_COMMAND):
            flag, attribute = PER_COMMAND[name]
            if name in honours:
                command = _per_command(name, hidden=False, callback=_remember(attribute))(command)
            else:
                command = _per_command(name, hidden=True, callback=_refuse(flag))(command)
        return _global(command)

    return decorate
