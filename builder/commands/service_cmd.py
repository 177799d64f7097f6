"""`builder service list|add`: the owner's own services (services.custom) and the templates for them.

The seed's "add a service" (choose a template, generate its compose file, route it, deploy it, give
it a unit) becomes: `builder service add TEMPLATE [NAME]` (the config entry), `builder bake` (its
compose project, edge route and unit in the image), `builder upgrade` (running on the instances).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import click

from builder.options import GlobalOptions, command_options, group_options


@click.group()
@group_options()
def service() -> None:
    """Services of your own, from ready templates: baked, routed and started like the seed's."""


@service.command("list")
@command_options("set", "json")
@click.pass_obj
def list_services(options: GlobalOptions) -> None:
    """The templates, and the services the config declares (services.custom)."""
    from builder.commands.config_cmd import load
    from builder.endpoints import service_urls
    from builder.service_templates import TEMPLATES

    config = load(options).config
    declared = {
        name: {
            "image": entry.image,
            "enabled": entry.enabled,
            "where": f"edge port {entry.edge_port}" if entry.edge_port else f"path {entry.path}",
        }
        for name, entry in sorted(config.services.custom.items())
    }
    if options.json:
        templates = {name: template.summary for name, template in TEMPLATES.items()}
        click.echo(json.dumps({"templates": templates, "services": declared}, indent=2))
        return
    click.echo("templates (builder service add TEMPLATE [NAME]):")
    for name, template in TEMPLATES.items():
        click.echo(f"  {name:<12} {template.summary}")
    if not declared:
        click.echo("services.custom: none declared")
        return
    urls = service_urls(config, "NAME")
    click.echo("services.custom:")
    for name, row in declared.items():
        state = "" if row["enabled"] else " (disabled)"
        click.echo(f"  {name:<12} {row['image']}, {row['where']}{state}" + (f": {urls[name]}" if name in urls else ""))


@service.command("add")
@click.argument("template_name", metavar="TEMPLATE")
@click.argument("name", required=False)
@command_options("set", "dry_run")
@click.pass_obj
def add(options: GlobalOptions, template_name: str, name: str | None) -> None:
    """Declare service NAME (default: the template's name) from TEMPLATE in the platform config.

    The file keeps its comments and order; the new config is validated first, and nothing is
    written when it is invalid (a port or path already taken, a name the seed uses). --dry-run
    prints the change as a diff and writes nothing.
    """
    from builder.config.layers import default_config_path
    from builder.errors import BuilderError
    from builder.service_templates import TEMPLATES, entry_for

    template = TEMPLATES.get(template_name)
    if template is None:
        raise BuilderError(f"no template {template_name!r}: the templates are {', '.join(TEMPLATES)}")
    name = name or template.name
    path = Path(options.config) if options.config else default_config_path(os.environ)[0]
    text = path.read_text(encoding="utf-8") if path.exists() else "version: 1\n"
    new_text = _with_entry(text, name, entry_for(template, name), path)
    _validate(new_text, path, options)
    if options.dry_run:
        import difflib

        before = text if path.exists() else ""  # a missing file is made: its diff starts from nothing
        click.echo(
            "".join(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    new_text.splitlines(keepends=True),
                    f"{path} (now)",
                    f"{path} (with services.custom.{name})",
                )
            ),
            nl=False,
        )
        click.echo(
            f"{path}: services.custom.{name} would be added from template {template.name}; dry run: nothing written",
            err=True,
        )
        return
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(new_text, encoding="utf-8")
    temporary.replace(path)
    click.echo(f"{path}: services.custom.{name} added from template {template.name}")
    from builder.images import lock_command

    click.echo(f"  next: {lock_command()} (its digest), `builder bake`, then `builder upgrade` (or launch)")


def _with_entry(text: str, name: str, entry: dict, path: Path) -> str:
    """The YAML text with services.custom.NAME added, comments and order kept (ruamel.yaml round trip)."""
    from ruamel.yaml import YAML

    from builder.errors import BuilderError

    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # the owner's long lines stay one line (ruamel folds past 80 by default)
    # Unchanged values are written back as they were: null stays null (ruamel's default writes nothing).
    yaml.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    document = yaml.load(text)
    if document is None:
        document = {"version": 1}
    if not isinstance(document, dict):
        raise BuilderError(f"{path}: not a mapping of keys; nothing was changed")
    services = document.setdefault("services", {})
    custom = services.setdefault("custom", {}) if isinstance(services, dict) else None
    if not isinstance(custom, dict):
        raise BuilderError(f"{path}: services.custom is not a mapping; nothing was changed")
    if name in custom:
        raise BuilderError(f"{path}: services.custom.{name} exists already; pick another NAME. Nothing was changed.")
    custom[name] = _quoted(entry)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _quoted(value):
    """Every string of the entry in double quotes: the loader reads YAML 1.1, where a bare 60:59 is a
    number and 'true' a boolean; quoted, each is the string the template means."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, dict):
        return {key: _quoted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_quoted(item) for item in value]
    return DoubleQuotedScalarString(value) if isinstance(value, str) else value


def _validate(text: str, path: Path, options: GlobalOptions) -> None:
    """Load the would-be file with the real loader (layers and all): its errors, and nothing written."""
    import tempfile

    from builder.config.loader import load_config
    from builder.errors import BuilderError, ConfigError

    with tempfile.TemporaryDirectory(prefix="builder-service-add-") as scratch:
        candidate = Path(scratch) / path.name
        candidate.write_text(text, encoding="utf-8")
        try:
            load_config(
                candidate,
                environ=os.environ,
                region=options.region,
                profile=options.profile,
                assignments=options.assignments,
            )
        except ConfigError as error:
            problems = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in error.problems)
            raise BuilderError(
                f"{path}: with this service the config would be invalid: {problems}. Nothing was changed."
            ) from None
