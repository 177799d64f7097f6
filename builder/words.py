"""Small pieces of the CLI's English, shared by the commands that count things aloud."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """'1 check', '4 checks': the noun in the plural unless there is one."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
