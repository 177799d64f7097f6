"""The `builder` command line: what it lists, what it refuses, and that --help stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_help_lists_every_command(builder):
    result = builder("--help")
    assert result.code == 0
    listed = {line.split()[0] for line in result.out.split("Commands:")[1].splitlines() if line.startswith("  ")}
    assert {"config", "bake", "prune", "janitor", "images", "launch", "status", "destroy"} <= listed


def test_usage_error_exits_2_without_traceback(builder):
    result = builder("config", "shwo")
    assert result.code == 2
    assert "No such command 'shwo'" in result.err
    assert "Traceback" not in result.err


def test_help_imports_no_heavy_module():
    """`builder --help` must feel instant: boto3, pydantic, yaml and jinja2 load only when a command needs them."""
    probe = (
        "import sys\n"
        "from builder.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('boto3', 'botocore', 'pydantic', 'yaml', 'jinja2', 'docker', 'requests') "
        "if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in result.stderr


def test_installed_console_script_runs():
    """The `builder` script that pip installs (pyproject's [project.scripts]) reaches the same CLI."""
    result = subprocess.run([sys.executable, "-m", "builder", "--version"], capture_output=True, text=True, check=True)
    from builder import __version__

    assert result.stdout.strip() == f"builder, version {__version__}"


@pytest.mark.parametrize("command", ["launch", "destroy", "status", "userdata"])
def test_every_command_refuses_an_instance_name_that_could_escape_its_paths(builder, command):
    """Names become local paths (state_dir/instances/NAME): '../x' must never reach the filesystem."""
    result = builder(command, "../x", "--target", "local") if command != "userdata" else builder(command, "../x")
    assert result.code == 1
    assert "instance name '../x'" in result.err


def test_every_target_option_says_the_one_rule():
    """Every --target defaults alike (the config's `target`, aws unless set) and its help says so."""
    import click

    from builder.cli import cli
    from builder.commands.target import RULE

    def commands(group, path=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    found = 0
    for path, command in commands(cli):
        for param in command.params:
            if param.name == "target":
                found += 1
                assert param.default is None, path
                choices = param.type.choices
                assert RULE in param.help if len(choices) > 1 else "only" in param.help, path
    assert found >= 10
