"""Training on the synthetic corpus: both stages learn, run directories are complete, misuse is refused."""

from __future__ import annotations

import json

import pytest
import torch

from probtalk3d_cli.config import load_config
from probtalk3d_cli.device import resolve_device
from probtalk3d_cli.training.stages import train_pred, train_prior

CPU = torch.device("cpu")


def _history(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_prior_learns(tiny_prior_run, tiny_config_path):
    run = tiny_prior_run  # 6 epochs of configs/tiny.yaml on the synthetic corpus
    hist = _history(run)
    assert [r["epoch"] for r in hist] == list(range(0, 7))
    first, last = hist[0]["val"]["total"], hist[-1]["val"]["total"]
    assert last < 0.5 * first, (first, last)
    assert hist[-1]["val"]["mean_l2"] < 0.5 * hist[0]["val"]["mean_l2"]
    best = torch.load(run / "best.pt", weights_only=True)["meta"]["best_val"]
    assert best == min(r["val"]["total"] for r in hist[1:])
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "loss_curve.png"):
        assert (run / name).exists(), name
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = load_config([run / "config.yaml"])
    assert saved.train_prior.epochs == 6 and saved.prior == load_config([tiny_config_path]).prior


def test_predictor_learns(synthetic_data, tiny_prior_run, tiny_config_path, tmp_path):
    cfg = load_config([tiny_config_path], ["train_pred.epochs=4"])
    train_pred(cfg, synthetic_data, tmp_path / "run", CPU, prior=tiny_prior_run)
    hist = _history(tmp_path / "run")
    first, last = hist[0]["val"]["total"], hist[-1]["val"]["total"]
    assert last < 0.75 * first, (first, last)
    assert set(hist[-1]["train"]) == {"latent", "exp", "jaw", "total"}


def test_predictor_checkpoint_is_self_contained(tiny_pred_run):
    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.models.predictor import MotionPredictor

    payload = load_checkpoint(tiny_pred_run / "best.pt", expect="predictor")
    meta = payload["meta"]
    assert meta["identities"] == ["M001", "W001"]
    assert meta["emotions"][0] == "neutral" and meta["intensities"] == ["low", "medium", "high"]
    assert meta["normalisation"]["exp_range"] == [-3.0, 3.0]
    assert "train_state" not in payload  # best.pt is for inference
    model = MotionPredictor.from_checkpoint(payload)
    assert any(k.startswith("prior.") for k in payload["model"]) and any(
        k.startswith("audio_encoder.") for k in payload["model"])
    assert not any(p.requires_grad for p in model.prior.parameters())


def test_refuses_to_overwrite_a_run(synthetic_data, tiny_prior_run, tiny_config_path):
    cfg = load_config([tiny_config_path])
    with pytest.raises(ValueError, match="--resume"):
        train_prior(cfg, synthetic_data, tiny_prior_run, CPU)


def test_resume_of_finished_run_is_a_no_op(synthetic_data, tiny_prior_run, tiny_config_path):
    before = (tiny_prior_run / "last.pt").read_bytes()
    cfg = load_config([tiny_prior_run / "config.yaml"])
    res = train_prior(cfg, synthetic_data, tiny_prior_run, CPU, resume=True)
    assert res.epochs == 6
    assert (tiny_prior_run / "last.pt").read_bytes() == before


def test_pred_needs_a_prior_checkpoint(synthetic_data, tiny_pred_run, tiny_config_path, tmp_path):
    cfg = load_config([tiny_config_path])
    with pytest.raises(ValueError, match="prior checkpoint is needed|is a predictor checkpoint"):
        train_pred(cfg, synthetic_data, tmp_path / "r", CPU, prior=tiny_pred_run / "best.pt")
    with pytest.raises(ValueError, match="--prior"):
        train_pred(cfg, synthetic_data, tmp_path / "r2", CPU, prior=None)


def test_vae_variant_trains(synthetic_data, tiny_config_path, tmp_path):
    cfg = load_config([tiny_config_path], ["prior.kind=vae", "train_prior.epochs=1", "train_pred.epochs=1"])
    train_prior(cfg, synthetic_data, tmp_path / "p", CPU)
    with pytest.raises(ValueError, match="VAE prior"):
        bad = load_config([tiny_config_path], ["train_prior.epochs=1"])
        train_prior(bad, synthetic_data, tmp_path / "vq", CPU)
        train_pred(bad, synthetic_data, tmp_path / "x", CPU, prior=tmp_path / "vq", expect_vae=True)
    res = train_pred(load_config([tiny_config_path], ["train_pred.epochs=1"]), synthetic_data, tmp_path / "q", CPU,
                     prior=tmp_path / "p", expect_vae=True)
    assert res.best_val is not None and res.best_val == res.best_val  # finite


def test_bf16_and_grad_accum(synthetic_data, tiny_config_path, tmp_path):
    cfg = load_config([tiny_config_path], ["train_prior.epochs=1", "train_prior.precision=bf16",
                                           "train_prior.grad_accum=2"])
    res = train_prior(cfg, synthetic_data, tmp_path / "run", CPU)
    hist = _history(tmp_path / "run")
    n_batches = -(-hist[-1]["step"] * 2 // 2)
    assert res.steps == hist[-1]["step"] and n_batches > 0
    assert hist[-1]["val"]["total"] < hist[0]["val"]["total"]


def test_random_crops(synthetic_data, tiny_config_path, tmp_path):
    cfg = load_config([tiny_config_path], ["train_pred.epochs=1", "data.max_seconds=1.0", "train_prior.epochs=1"])
    train_prior(cfg, synthetic_data, tmp_path / "p", CPU)
    res = train_pred(cfg, synthetic_data, tmp_path / "q", CPU, prior=tmp_path / "p")
    assert res.steps > 0


def test_cli_train_prior(cli, synthetic_data, tiny_config_path, tmp_path):
    r = cli("-q", "train-prior", "--data", synthetic_data, "--out", tmp_path / "run", "--config", tiny_config_path,
            "--epochs", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "best.pt").exists()
    r = cli("train-prior", "--data", synthetic_data, "--out", tmp_path / "run", "--config", tiny_config_path)
    assert r.exit_code == 1 and "--resume" in r.stderr and "Traceback" not in r.output


def test_cli_unavailable_device(cli, synthetic_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = cli("train-prior", "--data", synthetic_data, "--out", tmp_path / "run", "--device", "cuda")
    assert r.exit_code == 1 and "CUDA is not available" in r.stderr
    assert not (tmp_path / "run").exists()


def test_auto_device_resolves():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
