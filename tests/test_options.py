"""--json, --dry-run and --set: each command offers the ones it honours, and refuses the others.

A command that took --dry-run and ignored it would write while the user thought it would not;
one that took --json and printed text would break the script reading it. So a command lists in its
--help exactly the per-command options it honours, and one it does not honour, given before or
after its name, stops it with a usage error (exit 2) naming the option and the command.
"""

from __future__ import annotations

import ast
import importlib
import inspect

import click
import pytest

from builder.cli import cli
from builder.options import PER_COMMAND

# What each command honours, read from its body: --set wherever the config is loaded (the
# config's values change what it does), --json wherever the output has a JSON form, --dry-run
# wherever the command changes something and can show the change instead.
HONOURS = {
    "backups": {"set", "json", "dry_run"},
    "restore": {"set", "json", "dry_run"},
    "resize": {"set", "json", "dry_run"},
    "bake": {"set", "json", "dry_run"},
    "prune": {"set", "json", "dry_run"},
    "janitor": {"set", "json", "dry_run"},
    "config show": {"set", "json"},
    "config validate": {"set", "json"},
    "config reference": set(),
    "config init": {"dry_run"},
    "credentials": {"set", "json"},
    "images show": {"json"},
    "images env": set(),
    "images lock": {"set", "json", "dry_run"},
    "status": {"set", "json"},
    "destroy": {"set", "json", "dry_run"},
    "start": {"set", "json", "dry_run"},
    "stop": {"set", "json", "dry_run"},
    "launch": {"set", "json", "dry_run"},
    "preflight": {"set", "json"},
    "secrets set": {"set", "dry_run"},
    "secrets set-tailscale-oauth": {"set", "dry_run"},
    "secrets list": {"set", "json"},
    "service list": {"set", "json"},
    "service add": {"set", "dry_run"},
    "signal link": {"set"},
    "upgrade": {"set", "json", "dry_run"},
    "userdata": {"set", "json"},
}
# Arguments that get each command past its own checks to where the options are read.
ARGUMENTS = {
    "backups": ["x"],
    "restore": ["x", "--latest"],
    "resize": ["x", "--size", "20"],
    "credentials": ["x"],
    "destroy": ["x"],
    "start": ["x"],
    "stop": ["x"],
    "launch": ["x"],
    "upgrade": ["x"],
    "userdata": ["x"],
    "secrets set": ["openai-api-key"],
    "secrets set-tailscale-oauth": ["--client-id", "k123"],
    "service add": ["searxng"],
    "signal link": ["x"],
}
GLOBAL = ["--config", "--profile", "--region", "--debug"]


def leaves(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_the_table_names_every_command():
    assert sorted(path for path, _ in leaves()) == sorted(HONOURS)


@pytest.mark.parametrize("path", sorted(HONOURS))
def test_help_lists_exactly_the_options_the_command_honours(builder, path):
    result = builder(*path.split(), "--help")
    assert result.code == 0
    listed = {name for name, (flag, _) in PER_COMMAND.items() if f"  {flag} " in result.out}
    assert listed == HONOURS[path]
    for flag in GLOBAL:
        assert f" {flag} " in result.out, f"{path} --help lacks the global {flag}"


def _refused(path: str) -> list[tuple[str, str]]:
    return [(path, name) for name in PER_COMMAND if name not in HONOURS[path]]


REFUSED = [case for path in sorted(HONOURS) for case in _refused(path)]


def _given(name: str) -> list[str]:
    flag = PER_COMMAND[name][0]
    return [flag, "version=1"] if name == "set" else [flag]


@pytest.mark.parametrize(("path", "name"), REFUSED, ids=[f"{p}-{n}" for p, n in REFUSED])
def test_an_option_the_command_does_not_honour_is_a_usage_error(builder, tmp_path, path, name):
    flag = PER_COMMAND[name][0]
    words = [*path.split(), *ARGUMENTS.get(path, [])]
    for args in ([*words, *_given(name)], [*_given(name), *words]):  # after the command and before it
        before = sorted(p.name for p in tmp_path.iterdir())
        result = builder(*args)
        assert result.code == 2, (args, result.err)
        assert f"{flag}: `builder {path}` does not offer it" in result.err
        assert "Traceback" not in result.err
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_subgroup_passes_the_option_on_to_its_command(builder):
    """`builder secrets --dry-run list` is `builder secrets list --dry-run`: refused by the command."""
    result = builder("secrets", "--dry-run", "list")
    assert result.code == 2
    assert "--dry-run: `builder secrets list` does not offer it" in result.err


def test_an_honoured_option_is_taken_before_the_command_name(builder):
    result = builder("--json", "images", "show")
    assert result.code == 0
    assert result.out.lstrip().startswith("[")
    result = builder("--set", "name=elsewhere", "--json", "config", "show")
    assert result.code == 0, result.err
    assert '"name": "elsewhere"' in result.out


def test_every_command_has_every_per_command_option_listed_or_refusing():
    """A command made without command_options would ignore a --dry-run given before its name."""
    for path, command in leaves():
        names = {param.name for param in command.params}
        assert {attribute for flag, attribute in PER_COMMAND.values()} <= names, path


def _functions(module) -> tuple[dict[str, ast.FunctionDef], dict[str, str]]:
    """A module's top-level functions by name, and the names it imports from builder.commands.*."""
    tree = ast.parse(inspect.getsource(module))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    imported = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("builder.commands.")
        for alias in node.names
    }
    return functions, imported


def options_read(module_name: str, function: str, seen: set | None = None) -> set[str]:
    """The per-command options a function reads (`options.dry_run`, `options.json`,
    `options.assignments`), itself or through the functions of builder.commands it calls."""
    seen = set() if seen is None else seen
    if (module_name, function) in seen:
        return set()
    seen.add((module_name, function))
    # Imported here: a command imports its helpers' modules only when it runs, so one may not be loaded yet.
    functions, imported = _functions(importlib.import_module(module_name))
    attributes = {attribute: name for name, (_, attribute) in PER_COMMAND.items()}
    found = set()
    for node in ast.walk(functions[function]):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "options":
            if node.attr in attributes:
                found.add(attributes[node.attr])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in functions:
                found |= options_read(module_name, node.func.id, seen)
            elif node.func.id in imported:
                found |= options_read(imported[node.func.id], node.func.id, seen)
    return found


@pytest.mark.parametrize("path", sorted(HONOURS))
def test_a_command_declares_exactly_the_options_its_body_reads(path):
    """Read from the code: a command reading options.dry_run that does not offer --dry-run would
    never see it set; one that offers it and never reads it would pretend."""
    command = dict(leaves())[path]
    callback = inspect.unwrap(command.callback)
    read = options_read(callback.__module__, callback.__name__)
    offered = {
        name for name in PER_COMMAND if any(p.name == PER_COMMAND[name][1] and not p.hidden for p in command.params)
    }
    assert read == offered


def test_the_reader_of_options_follows_calls():
    """The check itself: options read in a helper, and --set through config_cmd.load, are seen."""
    assert options_read("builder.commands.instances_cmd", "_destroy_local") == {"json", "dry_run"}
    assert options_read("builder.commands.config_cmd", "load") == {"set"}
    assert options_read("builder.commands.images_cmd", "env") == set()


def test_the_readme_names_the_commands_that_offer_a_dry_run():
    from conftest import REPO

    text = " ".join((REPO / "README.md").read_text().split())
    listed = text.split("`--dry-run` (", 1)[1].split(":", 1)[0]
    named = {part.strip().strip("`") for part in listed.split(",")}
    assert named == {path for path, offered in HONOURS.items() if "dry_run" in offered}
