"""Every subcommand is registered, has --help with an example, and the README documents each one."""

from __future__ import annotations

import re

import pytest

from probtalk3d_cli.cli import app

REQUIRED = ["preprocess", "train-prior", "train-pred", "evaluate", "generate", "render", "to-vertices"]


def _command_names():
    import typer.main

    group = typer.main.get_command(app)
    return list(group.commands)


def test_required_commands_registered():
    names = _command_names()
    for name in REQUIRED:
        assert name in names


@pytest.mark.parametrize("name", _command_names())
def test_help_has_an_example(cli, name):
    r = cli(name, "--help")
    assert r.exit_code == 0, r.output
    assert "Example" in r.stdout or "example" in r.stdout


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0
    from probtalk3d_cli import __version__

    assert r.stdout.strip() == f"probtalk3d {__version__}"


def test_readme_mentions_every_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    for name in _command_names():
        assert re.search(rf"probtalk3d {re.escape(name)}\b", readme), f"README lacks an example of `{name}`"


def test_readme_starts_with_the_two_commands(repo_root):
    readme = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no code block"
    first = [l.strip() for l in blocks[0].strip().splitlines() if l.strip() and not l.strip().startswith("#")]
    assert first == ["make demo", "make test"]
