"""`builder images show|env|lock`: the container images the stacks run, from image/images.lock.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.options import GlobalOptions, command_options, group_options


@click.group()
@group_options()
def images() -> None:
    """The stacks' container images: pinned by tag and digest in one lock file."""


def _lock_option(function):
    return click.option(
        "--lock",
        "lock_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Lock file (default: the lock builder carries; an installed builder's is read-only: pass a copy).",
    )(function)


@images.command("show")
@_lock_option
@command_options("json")
@click.pass_obj
def show(options: GlobalOptions, lock_path: Path | None) -> None:
    """Every pinned image and whether its digest is resolved."""
    from builder.images import LOCK_PATH, load_lock

    pins = load_lock(lock_path or LOCK_PATH)
    if options.json:
        rows = [{"variable": p.variable, "reference": p.reference(), "resolved": bool(p.digest)} for p in pins]
        click.echo(json.dumps(rows, indent=2))
        return
    for pin in pins:
        click.echo(f"{pin.variable:<26} {pin.reference(False):<52} {pin.digest or 'UNRESOLVED'}")


@images.command("env")
@_lock_option
@click.option("--allow-unresolved", is_flag=True, help="Name an image without a digest by its tag alone.")
@command_options()
@click.pass_obj
def env(options: GlobalOptions, lock_path: Path | None, allow_unresolved: bool) -> None:
    """Print images.env, the file the stacks read their image references from."""
    from builder.images import LOCK_PATH, load_lock, render_images_env

    click.echo(render_images_env(load_lock(lock_path or LOCK_PATH), allow_unresolved=allow_unresolved), nl=False)


@images.command("lock")
@_lock_option
@click.option("--registry", "registries", multiple=True, metavar="REGISTRY=URL", help="Ask a mirror for a registry.")
@click.option("--refresh", is_flag=True, help="Ask again for digests already in the lock (they must not change).")
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    help="Let a --registry mirror be plain http:// (as image.mirrors.allow_insecure_http does).",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def lock(
    options: GlobalOptions,
    lock_path: Path | None,
    registries: tuple[str, ...],
    refresh: bool,
    allow_insecure_http: bool,
) -> None:
    """Resolve the lock's missing digests from the registries (or mirrors) and write them in.

    The platform config's own services (services.custom) join the lock first, by the tag it names.
    Each model the config bakes is recorded from the Ollama registry (image.mirrors.models, or
    --registry registry.ollama.ai=URL): its manifest's digest and size, which the disk check counts.
    Everything is fetched before the file is written: a failure leaves the lock as it was. Each
    digest is written with where it was read (the manifest URL) and when.
    A plain http:// mirror needs --allow-insecure-http (or image.mirrors.allow_insecure_http).
    --dry-run asks the registries all the same and shows what it would write, writing nothing.
    """
    from builder import custom_services
    from builder.commands.config_cmd import load
    from builder.errors import BuilderError
    from builder.images import LOCK_PATH, load_lock, lock_digests, parse_registry_overrides
    from builder.source_tree import installed

    if lock_path is None and installed():
        raise BuilderError(
            f"this builder is installed, and its own lock ({LOCK_PATH}) is part of the installation: copy it, "
            "then pass the copy with --lock FILE (and to `builder bake --lock FILE`). Nothing was done."
        )
    path = lock_path or LOCK_PATH
    config = load(options).config
    insecure = allow_insecure_http or config.image.mirrors.allow_insecure_http
    overrides = parse_registry_overrides(registries, allow_insecure_http=insecure)
    custom = custom_services.pins(config, load_lock(path))
    locked = lock_digests(
        path,
        overrides,
        refresh=refresh,
        custom=custom,
        models=config.ollama.baked,
        models_mirror=config.image.mirrors.models,
        write=not options.dry_run,
    )
    if options.json:
        rows = [{"reference": p.reference(False), "digest": d} for p, d in locked.images]
        rows += [{"model": m.model, "digest": m.digest, "bytes": m.bytes} for m in locked.models]
        # A dry run's answer says so; a real one's stays the list it always was.
        click.echo(json.dumps({"dry_run": True, "would_write": rows} if options.dry_run else rows, indent=2))
        return
    for pin, digest in locked.images:
        click.echo(f"{pin.reference(False)}: {digest}")
    for model in locked.models:
        click.echo(f"model {model.model}: {model.digest}, {model.bytes / 1e9:.2f} GB")
    done = [f"{len(locked.images)} digest(s) resolved"] if locked.images else []
    done += [f"{len(locked.models)} model(s) recorded"] if locked.models else []
    said = f"{path}: {', '.join(done)}" if done else f"{path}: nothing to resolve"
    click.echo(f"{said} (dry run: not written)" if options.dry_run and done else said)
