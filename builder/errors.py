"""Errors the CLI turns into one readable message and a non-zero exit, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field


class BuilderError(Exception):
    """A problem the user can act on. `str()` is the whole message."""

    exit_code = 1

    def to_json(self) -> dict:
        return {"ok": False, "error": str(self)}


@dataclass(frozen=True)
class Problem:
    """One bad value: where it came from, its key path and what would be valid."""

    origin: str  # "platform.yaml:12", "environment variable AWS_REGION", "flag --region"
    path: str  # dotted key path, "" for the document itself
    message: str

    def __str__(self) -> str:
        where = f"{self.origin}: {self.path}" if self.path else self.origin
        return f"{where}: {self.message}"


@dataclass
class ConfigError(BuilderError):
    """The platform config could not be read or is not valid. Nothing was changed."""

    source: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"invalid platform config {self.source}" + (f" ({count} problems)" if count > 1 else "")
        lines = [head + ":"] + [f"  {p}" for p in self.problems]
        lines.append("Nothing was changed.")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "ok": False,
            "error": "invalid platform config",
            "source": self.source,
            "problems": [{"origin": p.origin, "path": p.path, "message": p.message} for p in self.problems],
        }


class NotBuiltYet(BuilderError):
    """A command whose issue has not landed: it says so instead of pretending."""

    exit_code = 3


def failure_line(exc: BaseException) -> str:
    """An exception in one line, for a message that says what happened and goes on: a
    BuilderError's own words, else its type and message (an AWS error's message only)."""
    if isinstance(exc, BuilderError):
        return str(exc)
    response = getattr(exc, "response", None)
    detail = response["Error"]["Message"] if isinstance(response, dict) and "Error" in response else str(exc)
    return f"{type(exc).__name__}: {detail}"
