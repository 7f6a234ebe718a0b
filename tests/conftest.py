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


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small synthetic corpus (2 subjects, 3 sentences per emotion/level; ~134 clips) shared by the session."""
    from probtalk3d_cli.data.synthetic import make_synthetic_corpus

    out = tmp_path_factory.mktemp("synthetic") / "data"
    make_synthetic_corpus(out, subjects=2, sentences=3, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_prior_run(synthetic_data, tmp_path_factory) -> Path:
    """A stage-1 run trained with configs/tiny.yaml (6 epochs) on `synthetic_data` (about 10 s)."""
    from probtalk3d_cli.config import load_config
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.training.stages import train_prior

    out = tmp_path_factory.mktemp("runs") / "prior"
    cfg = load_config([TINY_CONFIG], ["train_prior.epochs=6"])
    train_prior(cfg, synthetic_data, out, resolve_device("cpu"))
    return out


@pytest.fixture(scope="session")
def tiny_pred_run(synthetic_data, tiny_prior_run, tmp_path_factory) -> Path:
    """A stage-2 run (tiny HuBERT, tiny predictor) on top of `tiny_prior_run`."""
    from probtalk3d_cli.config import load_config
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.training.stages import train_pred

    out = tmp_path_factory.mktemp("runs") / "pred"
    cfg = load_config([TINY_CONFIG], ["train_pred.epochs=1"])
    train_pred(cfg, synthetic_data, out, resolve_device("cpu"), prior=tiny_prior_run)
    return out
