"""Speed of `evaluate`: clips per second with the tiny model on the synthetic test split, with a full-size random
model on a few 5-second clips, and with a folder of files (FLAME + metrics only); N = 10 samples, demo head.

The full-size case also times the model part the way the official evaluation runs it (the whole model once per
sample, reference §11.10) against ours (audio encoded once, N samples decoded as one batch), and quotes the official
generation figure for a 5 s clip with N = 10 from ../shared/reference/official-cpu-benchmark.json.
Results: benchmarks/results/evaluate.json.

    .venv/bin/python benchmarks/bench_evaluate.py [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "reference" / "official-cpu-benchmark.json"
FULL_CLIP_SECONDS = 5.0


def _machine() -> dict:
    import numpy as np
    import torch

    return {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _tiny_model(identities):
    import torch

    from probtalk3d_cli.config import load_config
    from probtalk3d_cli.models.audio import AudioEncoder
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import build_prior

    torch.manual_seed(0)
    cfg = load_config([ROOT / "configs" / "tiny.yaml"])
    return MotionPredictor(cfg, identities, build_prior(cfg), AudioEncoder(cfg.audio)).eval()


def _full_model(identities):
    import torch
    from transformers import HubertConfig

    from probtalk3d_cli.config import Config
    from probtalk3d_cli.models.audio import AudioEncoder
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import build_prior

    torch.manual_seed(0)
    cfg = Config()
    cfg.audio.model = "tiny"  # replaced by the hubert-base-ls960 architecture (HubertConfig defaults), random weights
    enc = AudioEncoder(cfg.audio, hubert_config=HubertConfig().to_dict())
    return MotionPredictor(cfg, identities, build_prior(cfg), enc).eval()


def _five_second_corpus(root: Path, clips: int) -> list[str]:
    """A DATA folder of `clips` test clips of 5 s (random speech-band audio, random motion) + splits.json."""
    import numpy as np

    from probtalk3d_cli.data.schema import SAMPLES_PER_FRAME
    from probtalk3d_cli.data.splits import SplitRule, SplitSet, write_splits
    from probtalk3d_cli.io import save_wav

    rng = np.random.default_rng(0)
    frames = int(FULL_CLIP_SECONDS * 25)
    (root / "param").mkdir(parents=True)
    (root / "wav").mkdir()
    keys = []
    for i in range(clips):
        key = f"M001_{i + 1:03d}_{i % 8}_{0 if i % 8 == 0 else i % 3}"
        params = np.zeros((1, frames, 403))
        params[0, :, 300:350] = rng.normal(0, 0.5, (frames, 50))
        params[0, :, 400] = np.abs(rng.normal(0, 0.1, frames))
        np.save(root / "param" / f"{key}.npy", params)
        save_wav(root / "wav" / f"{key}.wav", (rng.standard_normal(frames * SAMPLES_PER_FRAME + 80) * 0.1)
                 .astype(np.float32))
        keys.append(key)
    rule = SplitRule(["M001"])
    write_splits(SplitSet("bench", {s: rule for s in ("train", "val", "test")},
                          {s: rule for s in ("train", "val", "test")}, ["M001"]), root / "splits.json")
    return keys


def _run(data, checkpoints=(), predictions=(), **settings) -> dict:
    from probtalk3d_cli.config import EvalConfig
    from probtalk3d_cli.evaluation.evaluate import evaluate

    s = EvalConfig(**settings)
    t0 = time.perf_counter()
    res = evaluate(data, list(checkpoints), list(predictions), settings=s, flame="demo")
    wall = time.perf_counter() - t0
    return {"clips": res.clips, "frames": res.frames, "num_samples": s.num_samples, "batch_size": s.batch_size,
            "seconds": round(wall, 3), "clips_per_s": round(res.clips / wall, 3),
            "frames_per_s": round(res.frames / wall, 1), "lve_mm2": round(res.systems[0].overall["lve"] * 1e6, 4)}


def _model_only(model, data, keys, num_samples: int) -> dict:
    """Seconds per clip of the model part: ours (one encoding, N samples in one batch) vs the official loop (the
    whole model once per sample)."""
    import statistics

    from probtalk3d_cli.data.dataset import load_clip_audio
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.generation import generate_motion, job_generator

    ours, official = [], []
    for key in keys:
        k = parse_key(key)
        audio = load_clip_audio(data, key)
        t0 = time.perf_counter()
        generate_motion(model, audio, k.subject, k.emotion, k.intensity, num_samples,
                        generator=job_generator(0, key))
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for j in range(num_samples):
            generate_motion(model, audio, k.subject, k.emotion, k.intensity, 1, generator=job_generator(j, key))
        official.append(time.perf_counter() - t0)
    o, f = statistics.median(ours), statistics.median(official)
    return {"ours_s_per_clip": round(o, 3), "official_loop_s_per_clip": round(f, 3), "speedup": round(f / o, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--quick", action="store_true", help="fewer clips")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from probtalk3d_cli.data.synthetic import make_synthetic_corpus
    from probtalk3d_cli.ui import configure

    configure(quiet=True)
    machine = _machine()
    work = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    results = {}
    try:
        synth = work / "synth"
        make_synthetic_corpus(synth, subjects=2, sentences=3, seed=0)
        tiny = _tiny_model(["M001", "W001"])
        results["tiny_n10_synthetic_test"] = _run(synth, [tiny], num_samples=10, batch_size=4)
        print("tiny model, N=10:", results["tiny_n10_synthetic_test"])
        results["tiny_n10_synthetic_test_batch1"] = _run(synth, [tiny], num_samples=10, batch_size=1)
        print("tiny model, N=10, batch 1:", results["tiny_n10_synthetic_test_batch1"])

        from probtalk3d_cli.evaluation.evaluate import resolve_split

        keys, _ = resolve_split(synth, "test")
        gt = work / "gt_copies"
        gt.mkdir()
        for k in keys:
            shutil.copy(synth / "param" / f"{k}.npy", gt / f"{k}.npy")
        results["files_n1_flame_and_metrics_only"] = _run(synth, predictions=[str(gt)], num_samples=1)
        print("prediction files (FLAME + metrics only):", results["files_n1_flame_and_metrics_only"])

        clips = 2 if args.quick else 4
        five = work / "five"
        fkeys = _five_second_corpus(five, clips)
        full = _full_model(["M001"])
        results["full_n10_5s_clips"] = _run(five, [full], num_samples=10, batch_size=1)
        results["full_n10_5s_clips"]["clip_seconds"] = FULL_CLIP_SECONDS
        print("full-size random model, N=10, 5 s clips:", results["full_n10_5s_clips"])
        model_part = _model_only(full, five, fkeys[:2], 10)
        if OFFICIAL.exists():
            ref = json.loads(OFFICIAL.read_text())["cases"].get("gen_5s_T0.2_n10")
            if ref:
                model_part["official_measured_generation_s_per_clip"] = ref["median_s"]
        results["full_model_part_5s_n10"] = model_part
        print("model part per 5 s clip, N=10:", model_part)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {"benchmark": "evaluate", "machine": machine,
               "notes": "clips/s include loading the clips, the model passes, FLAME and the metrics (model loading "
                        "excluded: in-memory models); demo head (4,999 vertices); random weights",
               "cases": results}
    from probtalk3d_cli.io import atomic_write_json

    out = Path(args.out)
    atomic_write_json(out / "evaluate.json", payload)
    print(f"wrote {out / 'evaluate.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
