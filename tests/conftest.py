"""Shared test fixtures: offline Hugging Face, tiny config, the CLI runner, paths to ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_config_path() -> Path:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_config():
    from probtalk3d_cli.config import load_config

    return load_config([TINY_CONFIG])


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """../shared/fixtures (real clips, FLAME regions); tests using it are skipped when it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SHARED_FIXTURES


@pytest.fixture()
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture()
def cli(runner):
    """Invoke the CLI: cli("generate", "--help") -> Result with .exit_code, .stdout, .stderr."""
    from probtalk3d_cli.cli import app

    def _invoke(*args, **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return _invoke
