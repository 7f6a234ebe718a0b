"""Golden reference tensors of seeded tiny models (tests/golden/test_golden.py compares against them).

Run on purpose, after an intended numerical change, and commit the result:

    .venv/bin/python tests/golden/regenerate.py
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN_FILE = HERE / "tiny_models.pt"


def compute() -> dict[str, torch.Tensor]:
    """Outputs of seeded tiny prior (VQ official layout, VAE) and stage-2 models on fixed inputs (CPU, eval)."""
    from probtalk3d_cli.config import load_config
    from probtalk3d_cli.models.layers import mask_from_lengths
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import build_prior
    from probtalk3d_cli.training.losses import predictor_losses, prior_losses

    tiny = load_config([ROOT / "configs" / "tiny.yaml"])
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([10, 7])
    mask = mask_from_lengths(lengths, 10)
    motion = torch.rand(2, 10, 53, generator=g) * mask[:, :, None]
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        cfg = copy.deepcopy(tiny)
        cfg.prior.token_layout = "official"
        torch.manual_seed(0)
        vq = build_prior(cfg).eval()
        res = vq(motion, mask)
        out.update(vq_recon=res.recon, vq_codes=res.codes, vq_loss=res.vq_loss,
                   vq_total=prior_losses(vq, {"motion": motion, "mask": mask}, cfg)["total"])

        cfg_vae = copy.deepcopy(tiny)
        cfg_vae.prior.kind = "vae"
        torch.manual_seed(0)
        vae = build_prior(cfg_vae).eval()
        mu, logvar = vae.encode(motion, mask)
        out.update(vae_mu=mu, vae_logvar=logvar, vae_recon_mean=vae.decode(mu, mask))

        torch.manual_seed(0)
        model = MotionPredictor.from_configs(tiny, ["S1", "S2"], build_prior(tiny)).eval()
        audio_lengths = torch.tensor([8000, 6000])
        audio = torch.randn(2, 8000, generator=g)
        audio[1, 6000:] = 0
        feats, feat_lengths = model.encode_audio(audio, audio_lengths)
        fmask = mask_from_lengths(feat_lengths, feats.shape[1])
        style = (torch.tensor([1, 0]), torch.tensor([3, 6]), torch.tensor([2, 1]))
        latent = model.predict_latent(feats, fmask, *style)
        batch = {"audio": audio, "audio_lengths": audio_lengths, "motion": motion, "mask": mask, "lengths": lengths,
                 "subject": style[0], "emotion": style[1], "intensity": style[2]}
        out.update(
            pred_feats=feats,
            pred_latent=latent,
            pred_motion_nearest=model.decode(latent, fmask, sample=False),
            pred_motion_sampled=model.decode(latent, fmask, temperature=1.0, num_samples=2,
                                             generator=torch.Generator().manual_seed(3)),
            pred_total=predictor_losses(model, batch, tiny)["total"],
        )
    return {k: v.detach().clone() for k, v in out.items()}


def main() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from probtalk3d_cli.io import atomic_path

    values = compute()
    with atomic_path(GOLDEN_FILE) as tmp:
        torch.save(values, tmp)
    print(f"wrote {GOLDEN_FILE} ({len(values)} tensors)")


if __name__ == "__main__":
    main()
