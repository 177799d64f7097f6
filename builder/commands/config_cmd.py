"""`builder config init|show|validate|reference`: the platform config, where each value came from, a
commented one to start from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from builder.options import GlobalOptions, command_options, group_options


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
                        "no such file; pass one (builder config validate FILE), or run `builder config init` "
                        "to write the commented example there",
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
@group_options()
def config() -> None:
    """Show, check and document the platform config."""


def example_path() -> Path:
    """The commented example config builder carries (a checkout's examples/, or the wheel's copy)."""
    from builder.source_tree import ROOT

    return ROOT / "examples" / "platform.yaml"


@config.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@command_options("dry_run")
@click.pass_obj
def init(options: GlobalOptions, file: Path | None, force: bool) -> None:
    """Write the commented example config to FILE (default: --config, $BUILDER_CONFIG or ./platform.yaml):
    every key, set to its default, with what it does. Never overwrites a file unless --force."""
    from builder.config.layers import default_config_path
    from builder.errors import BuilderError

    path = file or (Path(options.config) if options.config else default_config_path(os.environ)[0])
    if path.exists() and not force:
        raise BuilderError(f"{path} exists: nothing was written (--force overwrites it)")
    if path.parent != Path() and not path.parent.is_dir():
        raise BuilderError(f"{path}: its directory {path.parent} does not exist; nothing was written")
    text = example_path().read_text(encoding="utf-8")
    if options.dry_run:
        click.echo(f"would write {path} ({len(text.splitlines())} lines, every key at its default); dry run")
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    click.echo(f"{path}: written; edit it, then `builder config validate`")


@config.command()
@command_options("set", "json")
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
        click.echo("# no platform.yaml here: built-in defaults (`builder config init` writes one to edit)", err=True)
    click.echo(annotated_yaml(loaded.as_dict(), loaded.sources), nl=False)


@config.command()
@click.argument("file", required=False, type=click.Path(dir_okay=True))
@command_options("set", "json")
@click.pass_obj
def validate(options: GlobalOptions, file: str | None) -> None:
    """Check a config file (default: --config, $BUILDER_CONFIG or ./platform.yaml)."""
    loaded = load(options, file, require_file=True, warn=not options.json)
    name = _name(loaded.file)
    if options.json:
        report = {"ok": True, "file": name, "version": loaded.config.version, "warnings": loaded.warnings_json()}
        click.echo(json.dumps(report))
    else:
        from builder.words import counted

        warned = f", {counted(len(loaded.warnings), 'warning')} above" if loaded.warnings else ""
        click.echo(f"{name}: valid (version {loaded.config.version}, platform {loaded.config.name!r}{warned})")


@config.command()
@click.option(
    "--update",
    "readme",
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True),
    help="Rewrite the reference between the markers in FILE (README.md) instead of printing it.",
)
@command_options()
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
