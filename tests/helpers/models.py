"""Small model checkpoints built in tests (random weights, configs/tiny.yaml sizes)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_untrained_vae_predictor(path: Path, identities: list[str]) -> Path:
    """An untrained VAE-variant predictor (tiny config, seed 0) for `identities`, saved at `path`."""
    from probtalk3d_cli.config import load_config
    from probtalk3d_cli.models.audio import AudioEncoder
    from probtalk3d_cli.models.predictor import MotionPredictor, save_predictor
    from probtalk3d_cli.models.prior import MotionPrior

    torch.manual_seed(0)
    cfg = load_config([str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")], ["prior.kind=vae"])
    model = MotionPredictor(cfg, identities, MotionPrior(cfg.prior), AudioEncoder(cfg.audio))
    return save_predictor(path, model)
