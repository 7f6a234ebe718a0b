"""Training-step speed and peak memory of both stages with the full-size default config (random weights, no
download), against the official code's figures on this machine kind (../shared/reference/official-cpu-benchmark.json).

Each case runs in a fresh subprocess so its peak resident memory is its own. Results: benchmarks/results/train.json.

    .venv/bin/python benchmarks/bench_train.py --out benchmarks/results [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "reference" / "official-cpu-benchmark.json"

# name: (stage, batch, precision, cnn_cache, seconds of audio / frames)
CASES = {
    "prior_b1_fp32": ("prior", 1, "fp32", False, 125),
    "prior_b8_fp32": ("prior", 8, "fp32", False, 125),
    "pred_b1_fp32_nocache": ("pred", 1, "fp32", False, 5.0),
    "pred_b1_fp32_cache": ("pred", 1, "fp32", True, 5.0),
    "pred_b1_bf16_cache": ("pred", 1, "bf16", True, 5.0),
    "pred_b4_bf16_cache": ("pred", 4, "bf16", True, 5.0),
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(name: str, steps: int, warmup: int) -> dict:
    """One benchmark case in this process: returns seconds per step (median) and clips per second."""
    import numpy as np
    import torch

    from probtalk3d_cli.config import Config
    from probtalk3d_cli.device import autocast, seed_everything
    from probtalk3d_cli.models.prior import build_prior
    from probtalk3d_cli.training.losses import predictor_losses, prior_losses

    stage, batch, precision, cache, size = CASES[name]
    seed_everything(0)
    cfg = Config()
    cfg.audio.model = "tiny"  # replaced below by a full HuBERT-base architecture with random weights
    dev = torch.device("cpu")
    prior = build_prior(cfg)
    from probtalk3d_cli.training.stages import _fast_dropout

    if stage == "prior":
        _fast_dropout(prior)
        model = prior.train()
        t = int(size)
        motion = torch.rand(batch, t, 53)
        b = {"motion": motion, "mask": torch.ones(batch, t, dtype=torch.bool), "lengths": torch.full((batch,), t)}
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)  # as the trainer

        def step():
            with autocast(dev, precision == "bf16"):
                loss = prior_losses(model, b, cfg.prior)["total"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        from transformers import HubertConfig

        from probtalk3d_cli.models.audio import AudioEncoder
        from probtalk3d_cli.models.predictor import MotionPredictor
        from probtalk3d_cli.training.stages import CnnFeatureCache

        hub = HubertConfig().to_dict()  # the defaults are the hubert-base-ls960 architecture
        enc = AudioEncoder(cfg.audio, hubert_config=hub)
        from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS

        model = MotionPredictor(cfg, list(OFFICIAL_TRAIN_SUBJECTS), prior, enc).train()
        _fast_dropout(model, enc)  # as train-pred does
        n = int(size * 16000)
        t = int(size * 25)
        rng = np.random.default_rng(0)
        audio = torch.from_numpy(rng.standard_normal((batch, n)).astype(np.float32) * 0.1)
        b = {"keys": [f"clip{i}" for i in range(batch)], "audio": audio,
             "audio_lengths": torch.full((batch,), n), "motion": torch.rand(batch, t, 53),
             "mask": torch.ones(batch, t, dtype=torch.bool), "lengths": torch.full((batch,), t),
             "subject": torch.zeros(batch, dtype=torch.long), "emotion": torch.ones(batch, dtype=torch.long),
             "intensity": torch.ones(batch, dtype=torch.long)}
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=1e-5, betas=(0.9, 0.98), eps=1e-9, fused=True)  # as the trainer
        feat_cache = CnnFeatureCache(4e9) if cache else None

        def step():
            with autocast(dev, precision == "bf16"):
                feats = feat_cache.features(model, b) if feat_cache is not None else None
                loss = predictor_losses(model, b, cfg.predictor, feats=feats)["total"]
            loss.float().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"case": name, "stage": stage, "batch": batch, "precision": precision, "cnn_cache": cache,
            "size": size, "median_s_per_step": round(med, 4), "min_s": round(min(times), 4),
            "clips_per_s": round(batch / med, 3), "s_per_clip": round(med / batch, 4),
            "peak_rss_mib": round(_peak_rss_mib(), 1), "peak_rss_mib_per_clip": round(_peak_rss_mib() / batch, 1),
            "threads": torch.get_num_threads(), "steps": steps}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--case", help="run one case in this process (internal)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.steps, args.warmup)))
        return 0
    steps, warmup = (3, 1) if args.quick else (args.steps, args.warmup)
    official = json.loads(OFFICIAL.read_text())["cases"] if OFFICIAL.exists() else {}
    results = []
    for name in CASES:
        r = subprocess.run([sys.executable, __file__, "--case", name, "--steps", str(steps), "--warmup", str(warmup)],
                           capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if r.returncode != 0:
            print(f"{name}: failed\n{r.stderr[-2000:]}", file=sys.stderr)
            return 1
        res = json.loads(r.stdout.strip().splitlines()[-1])
        ref = official.get("train_prior" if res["stage"] == "prior" else "train_pred")
        if ref:
            res["official_s_per_clip"] = ref["median_s"]
            res["official_peak_rss_mib"] = ref["peak_rss_mib"]
            res["speedup_vs_official"] = round(ref["median_s"] / res["s_per_clip"], 2)
            res["memory_per_clip_vs_official"] = round(res["peak_rss_mib_per_clip"] / ref["peak_rss_mib"], 2)
        results.append(res)
        print(f"{name:24s} {res['s_per_clip']:.3f} s/clip  {res['clips_per_s']:.2f} clips/s  "
              f"peak {res['peak_rss_mib']:.0f} MiB  x{res.get('speedup_vs_official', float('nan')):.2f} vs official")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"what": "training step speed, full-size default config, random weights, CPU",
               "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()},
               "targets": {"pred_speedup_vs_official": 2.0, "memory_per_clip_vs_official_max": 1.0},
               "cases": results}
    from probtalk3d_cli.io import atomic_write_json

    atomic_write_json(out / "train.json", payload)
    print(f"wrote {out / 'train.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
