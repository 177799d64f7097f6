"""The README and the example config stay true to the code."""

from __future__ import annotations

import re

import yaml
from conftest import EXAMPLE_CONFIG, REPO

from builder.config.reference import README_END, README_START, markdown_reference
from builder.config.schema import PlatformConfig

README = REPO / "README.md"


def test_readme_config_reference_is_current():
    text = README.read_text()
    assert README_START in text and README_END in text, "README lacks the config reference markers"
    current = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert current == markdown_reference().strip(), (
        "README's config reference is stale: run `builder config reference --update README.md`"
    )


def test_readme_opens_with_the_two_commands():
    """The first code block holds the set-up-and-run command, then the test command; both exist."""
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no code block"
    assert README.read_text().index(block.group(0)) < 1200, "the commands must open the README"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    for command in commands:
        script = REPO / command.split()[0]
        assert script.is_file(), f"{command}: no such script"
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci, ".ci/run must run the README's test command"


def test_example_config_sets_every_key():
    """The commented example is complete: each key of the schema is written in it."""
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())

    def missing(model, data, prefix=""):
        for name, field in model.model_fields.items():
            if name not in data:
                yield prefix + name
            elif isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
                yield from missing(field.annotation, data[name], f"{prefix}{name}.")

    assert list(missing(PlatformConfig, example)) == []


def test_example_config_holds_the_defaults():
    """The example documents the defaults; a changed default must be changed there too."""
    example = PlatformConfig.model_validate(yaml.safe_load(EXAMPLE_CONFIG.read_text()))
    assert example == PlatformConfig(version=1)
