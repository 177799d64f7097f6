"""The typed-name confirmation of the commands that set an instance's data aside or delete it
(`destroy --delete-data`, `restore`): typed, not a flag alone, and from a pipe too."""

from __future__ import annotations

import sys

import click

from builder.errors import BuilderError


def typed_name(name: str, question: str, unchanged: str, piped: str) -> None:
    """Ask `question` until `name` is typed back; raise BuilderError saying `unchanged` (what did not
    happen) when it is not, or when standard input is closed (`piped`: the command that answers
    through a pipe)."""
    question = f"{question}. Type {name} to confirm"
    if sys.stdin.isatty():
        typed = click.prompt(question, default="", show_default=False)
    else:  # piped (`echo NAME | builder ...`), or closed: nobody to ask
        click.echo(f"{question}: ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            raise BuilderError(
                f"cannot ask for the confirmation: standard input is closed; {unchanged} "
                f"(run it in a terminal, or pipe the name: {piped})"
            )
        typed = line.strip()
        click.echo("", err=True)  # the answer came from a pipe: what follows starts on a line of its own
    if typed != name:
        raise BuilderError(f"confirmation did not match: {unchanged}")
