"""Small pieces of the CLI's English, shared by the commands that count things aloud."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """'1 check', '4 checks': the noun in the plural unless there is one."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def bytes_in_words(size: int) -> str:
    """'12.0 MiB', '3.2 GiB': a size the way a person reads it."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
