"""`builder config show|validate|reference`: the merged platform config and where each value came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from builder.cli import GlobalOptions, global_options


def load(options: GlobalOptions, file: str | None = None, *, require_file: bool = False, warn: bool = True):
    """The merged config for these options. A missing default platform.yaml means built-in defaults.

    Its warnings (settings that expose the platform beyond the tailnet) go to stderr unless `warn` is
    False (a command that carries them in its --json output)."""
    from builder.config.layers import default_config_path
    from builder.config.loader import load_config
    from builder.errors import ConfigError, Problem

    if file is not None:
        path, named = Path(file), True
    elif options.config is not None:
        path, named = Path(options.config), True
    else:
        path, named = default_config_path(os.environ)
    if not named and not path.exists():
        if require_file:
            raise ConfigError(
                str(path),
                [
                    Problem(
                        str(path),
                        "",
                        "no such file; pass one (builder config validate FILE) or copy "
                        "examples/platform.yaml to ./platform.yaml",
                    )
                ],
            )
        path = None
    loaded = load_config(
        path, environ=os.environ, region=options.region, profile=options.profile, assignments=options.assignments
    )
    if warn:
        for warning in loaded.warnings:
            click.echo(f"builder: warning: {warning}", err=True)
    return loaded


@click.group()
@global_options
def config() -> None:
    """Show, check and document the platform config."""


@config.command()
@global_options
@click.pass_obj
def show(options: GlobalOptions) -> None:
    """Print the merged config, each value with where it came from."""
    from builder.config.render import annotated_yaml

    loaded = load(options, warn=not options.json)
    if options.json:
        shown = {"file": _name(loaded.file), "config": loaded.as_dict(), "sources": loaded.sources}
        click.echo(json.dumps({**shown, "warnings": loaded.warnings_json()}, indent=2))
        return
    if loaded.file is None:
        click.echo("# no platform.yaml here: built-in defaults (start from examples/platform.yaml)", err=True)
    click.echo(annotated_yaml(loaded.as_dict(), loaded.sources), nl=False)


@config.command()
@click.argument("file", required=False, type=click.Path(dir_okay=True))
@global_options
@click.pass_obj
def validate(options: GlobalOptions, file: str | None) -> None:
    """Check a config file (default: --config, $BUILDER_CONFIG or ./platform.yaml)."""
    loaded = load(options, file, require_file=True, warn=not options.json)
    name = _name(loaded.file)
    if options.json:
        report = {"ok": True, "file": name, "version": loaded.config.version, "warnings": loaded.warnings_json()}
        click.echo(json.dumps(report))
    else:
        warned = f", {_count(len(loaded.warnings), 'warning')} above" if loaded.warnings else ""
        click.echo(f"{name}: valid (version {loaded.config.version}, platform {loaded.config.name!r}{warned})")


@config.command()
@click.option(
    "--update",
    "readme",
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True),
    help="Rewrite the reference between the markers in FILE (README.md) instead of printing it.",
)
@global_options
def reference(readme: str | None) -> None:
    """Print the config reference (Markdown), generated from the schema."""
    from builder.config.reference import markdown_reference, update_readme
    from builder.errors import BuilderError

    if readme is None:
        click.echo(markdown_reference(), nl=False)
        return
    path = Path(readme)
    try:
        path.write_text(update_readme(path.read_text(encoding="utf-8")), encoding="utf-8")
    except ValueError as exc:
        raise BuilderError(f"{path}: {exc}") from None
    click.echo(f"{path}: config reference updated")


def _name(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
