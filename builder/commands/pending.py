"""Commands whose issues have not landed yet: each says so and exits non-zero, never pretends."""

from __future__ import annotations

import click

from builder.errors import NotBuiltYet

# name -> (what it will do, the issue that builds it)
PENDING = {
    "bake": ("Bake the platform image (AMI or local qcow2) with Packer.", 6),
}


def commands() -> list[click.Command]:
    from builder.cli import global_options

    def make(name: str, summary: str, issue: int) -> click.Command:
        @click.command(
            name,
            help=f"{summary} (Not built yet: issue #{issue}.)",
            short_help=f"{summary} [not built yet]",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )
        @global_options
        def command() -> None:
            raise NotBuiltYet(f"`builder {name}` is not built yet; it lands with issue #{issue}. Nothing was done.")

        return command

    return [make(name, summary, issue) for name, (summary, issue) in PENDING.items()]
