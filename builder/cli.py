"""The `builder` command line.

Only click is imported at start-up: `builder --help` must feel instant, so every command imports
what it needs (pydantic, boto3, ...) when it runs.
"""

from __future__ import annotations

import json
import sys
import traceback

import click

from builder import __version__
from builder.errors import BuilderError
from builder.options import GlobalOptions, group_options

INTERNAL_ERROR_EXIT = 70  # sysexits' EX_SOFTWARE: a bug in the builder, not in the user's input


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_options(list_per_command=True)
@click.version_option(__version__, prog_name="builder")
def cli() -> None:
    """Bake a golden image of the AI platform and launch instances of it that come up ready.

    Every command reads one platform config (platform.yaml). Values come from, lowest first:
    built-in defaults, the file, the environment (AWS_PROFILE, AWS_REGION, BUILDER__SECTION__KEY),
    and flags (--profile, --region, --set KEY=VALUE).
    """


def _register() -> None:
    from builder.commands import (
        backups_cmd,
        bake_cmd,
        config_cmd,
        credentials_cmd,
        images_cmd,
        instances_cmd,
        launch_cmd,
        power_cmd,
        preflight_cmd,
        resize_cmd,
        secrets_cmd,
        service_cmd,
        signal_cmd,
        upgrade_cmd,
        userdata_cmd,
    )

    cli.add_command(config_cmd.config)
    cli.add_command(launch_cmd.launch)
    cli.add_command(upgrade_cmd.upgrade)
    cli.add_command(backups_cmd.backups)
    cli.add_command(backups_cmd.restore)
    cli.add_command(instances_cmd.status)
    cli.add_command(instances_cmd.destroy)
    cli.add_command(power_cmd.start)
    cli.add_command(power_cmd.stop)
    cli.add_command(resize_cmd.resize)
    cli.add_command(secrets_cmd.secrets)
    cli.add_command(images_cmd.images)
    cli.add_command(bake_cmd.bake)
    cli.add_command(bake_cmd.prune)
    cli.add_command(bake_cmd.janitor)
    cli.add_command(userdata_cmd.userdata)
    cli.add_command(credentials_cmd.credentials)
    cli.add_command(preflight_cmd.preflight)
    cli.add_command(service_cmd.service)
    cli.add_command(signal_cmd.signal)


_register()


def main(argv: list[str] | None = None) -> None:
    options = GlobalOptions()
    try:
        status = cli.main(args=argv, prog_name="builder", standalone_mode=False, obj=options)
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        status = exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        status = 130
    except BuilderError as exc:
        report_error(exc, options)
        status = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        status = 130
    except Exception as exc:
        cloud = _cloud_problem(exc)
        if cloud is not None:  # the user's to fix (credentials, network, region): never exit 70
            if options.debug:
                traceback.print_exc()
            report_error(BuilderError(cloud), options)
            sys.exit(1)
        if options.debug:
            raise
        click.echo(f"builder: internal error: {type(exc).__name__}: {exc}", err=True)
        click.echo("This is a bug in builder. Run again with --debug for the traceback.", err=True)
        status = INTERNAL_ERROR_EXIT
    sys.exit(status or 0)


def _cloud_problem(exc: Exception) -> str | None:
    """The one-line message for an AWS failure the user can fix, None for anything else. botocore
    is looked at only when a command loaded it: no other exception can come from it."""
    if "botocore" not in sys.modules:
        return None
    from builder.aws.errors import describe

    return describe(exc)


def report_error(error: BuilderError, options: GlobalOptions) -> None:
    if options.json:
        click.echo(json.dumps(error.to_json(), indent=2))
    click.echo(f"builder: {error}", err=True)
