"""`--target`: where a command acts, by one rule for every command that has it.

The flag when given, else the config's `target` (platform.yaml, BUILDER__TARGET or --set target=...),
which is aws unless set. `builder bake` follows it like `launch`, `status` and the rest: an owner
who works locally says `target: local` once instead of `--target local` on every command.
"""

from __future__ import annotations

import click

RULE = "default: the config's `target`, aws unless set"


def target_option(choices: tuple[str, ...] = ("aws", "local"), help: str = ""):
    what = f"aws (EC2) or local (qemu on this machine); {RULE}." if len(choices) > 1 else f"{choices[0]} only."
    return click.option("--target", type=click.Choice(list(choices)), default=None, help=f"{what} {help}".strip())


def resolve(target: str | None, config) -> str:
    return target or config.target


def flag(target: str, config) -> str:
    """The --target a hint must name to act on `target` again: local always; aws where it is not the default."""
    return f" --target {target}" if target == "local" or config.target != target else ""
