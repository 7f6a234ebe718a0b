"""Learning validity of the bundled demo model on the synthetic TEST split (sentences it never saw in training).

Three claims, each with its own measurement (results: benchmarks/results/validity.json):

1. Lip sync follows the audio: the lip vertex error (LVE; demo head, zero shape, `evaluate`'s definition: per frame
   the max over lip vertices of the squared distance, mean over frames pooled over clips) of generated motion is at
   most 0.6x that of the audio-agnostic baseline, the mean TRAINING motion of the clip's (subject, emotion,
   intensity) repeated over time (`evaluate --baselines`). Sampling: the defaults (temperature 0.2, N = 10, first
   sample scored), precision fp32. Key `lve_ratio`.
2. The emotion control works: a nearest-centroid classifier fitted on TRAINING ground-truth motion recovers the
   requested emotion from generated motion for at least 90 % of requests. Features: the clip mean of motion columns
   2-7 (expression coefficients exp2..exp7: smile/frown, brow raise, brow furrow, squint, nose wrinkle, lip press —
   the components the synthetic corpus and the demo head give their emotion meaning); one centroid per emotion (8).
   Every test clip's audio is animated in ALL 8 emotions (intensity medium; neutral low), with its own subject, so
   the emotion cannot come from the voice. Key `emotion_accuracy` (also per emotion, a confusion matrix, and the
   accuracy with each clip's own style).
3. Sampling is probabilistic and reproducible: with temperature sampling the Diversity metric is > 0 and the
   samples of a clip differ; with `--deterministic` two runs (different seeds) are identical. Keys
   `diversity_sampled` (metres), `samples_differ`, `deterministic_identical`.

    .venv/bin/python benchmarks/validity.py [--checkpoint demo] [--data work_demo/data] [--out FILE.json]

`--data` is created (the default synthetic corpus, about 10 s) when it does not hold it yet.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"lve_ratio": 0.6, "emotion_accuracy": 0.9}
FEATURES = slice(2, 8)  # motion columns exp2..exp7
FEATURE_TEXT = "clip mean of motion columns 2-7 (exp2..exp7: smile/frown, brow raise, furrow, squint, nose wrinkle, " \
               "lip press)"
EVAL_SEED = 1234
NUM_SAMPLES = 10


def clip_features(motion: np.ndarray) -> np.ndarray:
    """[T, 53] motion (FLAME units) -> [6] classifier features (clip mean of exp2..exp7)."""
    return np.asarray(motion, dtype=np.float64)[:, FEATURES].mean(axis=0)


def fit_centroids(data: Path, keys) -> np.ndarray:
    """[8, 6] mean feature per emotion over the given (training) clips' ground truth."""
    from probtalk3d_cli.evaluation.baselines import load_gt_motion

    feats = np.stack([clip_features(load_gt_motion(data, k)) for k in keys])
    labels = np.array([k.emotion for k in keys])
    missing = [e for e in range(8) if not np.any(labels == e)]
    if missing:
        raise ValueError(f"the training split has no clip of emotion(s) {missing}; use the default synthetic corpus")
    return np.stack([feats[labels == e].mean(axis=0) for e in range(8)])


def classify(centroids: np.ndarray, features: np.ndarray) -> int:
    """Index of the nearest centroid (squared Euclidean distance)."""
    return int(np.argmin(((centroids - features[None]) ** 2).sum(axis=1)))


def ensure_corpus(data: Path, meta: dict) -> None:
    """Create the synthetic corpus the model was trained on in `data` unless it is already there."""
    from probtalk3d_cli.data.synthetic import GENERATOR_VERSION, corpus_complete, make_synthetic_corpus

    corpus = (meta.get("demo") or {}).get("corpus") or {"subjects": 4, "sentences": 4, "seed": 0}
    if corpus.get("generator_version", GENERATOR_VERSION) != GENERATOR_VERSION:
        raise ValueError(f"the model was trained on synthetic generator version {corpus['generator_version']}, this "
                         f"probtalk3d makes version {GENERATOR_VERSION}; retrain it with make demo-train")
    s, n, seed = int(corpus["subjects"]), int(corpus["sentences"]), int(corpus["seed"])
    if not corpus_complete(data, s, n, seed):
        make_synthetic_corpus(data, subjects=s, sentences=n, seed=seed, workers=2)


def emotion_control(model, data: Path, train_keys, test_keys, seed: int) -> dict:
    """Generate every test clip in all 8 emotions and classify the motion (see the module docstring)."""
    from probtalk3d_cli.data.dataset import load_clip_audio
    from probtalk3d_cli.data.schema import EMOTIONS
    from probtalk3d_cli.generation import ClipRequest, Sampling, job_generator, synthesize
    from probtalk3d_cli.ui import progress

    centroids = fit_centroids(data, train_keys)
    ids = list(model.identities)
    confusion = np.zeros((8, 8), dtype=int)  # rows: requested, columns: recognised
    own_hits = 0
    for key in progress(test_keys, total=len(test_keys), desc="emotion control", unit="clip"):
        subj = ids.index(key.subject)
        styles = [(subj, key.emotion, key.intensity)] + [(subj, e, 0 if e == 0 else 1) for e in range(8)]
        gens = [job_generator(seed, f"{key}_style{i}") for i in range(len(styles))]
        out = synthesize(model, [ClipRequest(load_clip_audio(data, key), styles, gens)], 1, Sampling(),
                         precision="fp32")[0]
        own_hits += classify(centroids, clip_features(out[0][0])) == key.emotion
        for e in range(8):
            confusion[e, classify(centroids, clip_features(out[e + 1][0]))] += 1
    per = {EMOTIONS[e]: round(float(confusion[e, e] / confusion[e].sum()), 4) for e in range(8)}
    train_acc = np.mean([classify(centroids, clip_features(_gt(data, k))) == k.emotion for k in test_keys])
    return {
        "emotion_accuracy": round(float(np.trace(confusion) / confusion.sum()), 4),
        "emotion_requests": int(confusion.sum()),
        "emotion_accuracy_per_emotion": per,
        "emotion_confusion": {"rows": "requested", "columns": "recognised", "labels": list(EMOTIONS),
                              "counts": confusion.tolist()},
        "emotion_accuracy_own_style": round(float(own_hits / len(test_keys)), 4),
        "emotion_accuracy_ground_truth": round(float(train_acc), 4),
        "emotion_centroids": {EMOTIONS[e]: [round(float(x), 4) for x in centroids[e]] for e in range(8)},
    }


def _gt(data, key):
    from probtalk3d_cli.evaluation.baselines import load_gt_motion

    return load_gt_motion(data, key)


def sampling_checks(model, data: Path, keys, seed: int) -> dict:
    """Deterministic decoding: two runs with different seeds are bit-identical; sampled: N samples differ."""
    from probtalk3d_cli.data.dataset import load_clip_audio
    from probtalk3d_cli.generation import Sampling, generate_motion, job_generator

    identical, differ = [], []
    for key in keys:
        audio = load_clip_audio(data, key)
        style = (key.subject, key.emotion, key.intensity)
        a = generate_motion(model, audio, *style, num_samples=2, sampling=Sampling(deterministic=True),
                            generator=job_generator(seed, str(key)), precision="fp32")
        b = generate_motion(model, audio, *style, num_samples=2, sampling=Sampling(deterministic=True),
                            generator=job_generator(seed + 1, str(key)), precision="fp32")
        identical.append(bool(np.array_equal(a, b) and np.array_equal(a[0], a[1])))
        s = generate_motion(model, audio, *style, num_samples=NUM_SAMPLES, sampling=Sampling(),
                            generator=job_generator(seed, str(key)), precision="fp32")
        differ.append(bool(all(not np.array_equal(s[0], s[j]) for j in range(1, len(s)))))
    return {"deterministic_identical": all(identical), "deterministic_clips_checked": len(identical),
            "samples_differ": all(differ), "samples_differ_fraction": round(float(np.mean(differ)), 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="demo", help="predictor checkpoint (default: the bundled demo model)")
    ap.add_argument("--data", type=Path, default=ROOT / "work_demo" / "data",
                    help="synthetic corpus folder (created when missing)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "validity.json")
    args = ap.parse_args(argv)

    import torch

    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.config import EvalConfig
    from probtalk3d_cli.data.splits import list_clips
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.generation import load_model
    from probtalk3d_cli.io import atomic_write_json
    from probtalk3d_cli.ui import configure

    configure()
    t0 = time.perf_counter()
    payload = load_checkpoint(args.checkpoint, expect="predictor")
    ensure_corpus(args.data, payload.get("meta") or {})
    model, info = load_model(payload)
    train_keys = list_clips(args.data, "pred", "train")
    test_keys = list_clips(args.data, "pred", "test")

    settings = EvalConfig(num_samples=NUM_SAMPLES, seed=EVAL_SEED, baselines=True, precision="fp32")
    res = evaluate(args.data, [model], settings=settings, flame="demo", names=["model"])
    m, b = res.system("model").overall, res.system("baseline: mean motion").overall
    result = {
        "lve_ratio": round(m["lve"] / b["lve"], 4),
        "lve_model_m2": m["lve"], "lve_mean_baseline_m2": b["lve"],
        "lve_shifted_gt_baseline_m2": res.system("baseline: GT shifted 1 s").overall["lve"],
        "mve_model_m": m["mve"], "mve_mean_baseline_m": b["mve"],
        "diversity_sampled": m["diversity"],
    }
    result.update(emotion_control(model, args.data, train_keys, test_keys, EVAL_SEED))
    result.update(sampling_checks(model, args.data, test_keys[::11], EVAL_SEED))
    result["targets"] = {"lve_ratio": f"<= {TARGETS['lve_ratio']}", "emotion_accuracy": f">= {TARGETS['emotion_accuracy']}",
                         "diversity_sampled": "> 0", "deterministic_identical": "true"}
    result["passed"] = {
        "lve_ratio": result["lve_ratio"] <= TARGETS["lve_ratio"],
        "emotion_accuracy": result["emotion_accuracy"] >= TARGETS["emotion_accuracy"],
        "diversity_sampled": bool(result["diversity_sampled"] and result["diversity_sampled"] > 0
                                  and result["samples_differ"]),
        "deterministic_identical": result["deterministic_identical"],
    }
    result["setup"] = {
        "checkpoint": args.checkpoint, "checkpoint_sha256": info.get("sha256"), "data": str(args.data),
        "split": "test", "test_clips": len(test_keys), "train_clips": len(train_keys), "flame_model": "demo",
        "num_samples": NUM_SAMPLES, "temperature": settings.temperature, "seed": EVAL_SEED, "precision": "fp32",
        "classifier": "nearest centroid, squared Euclidean, centroids = mean over TRAINING ground-truth clips",
        "features": FEATURE_TEXT,
        "emotion_requests": "every test clip x all 8 emotions (intensity medium, neutral low), own subject",
        "lve": "per frame max over the demo head's lip vertices of the squared distance, mean over pooled frames (m^2)",
    }
    result["machine"] = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                         "python": platform.python_version()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(args.out, result)
    print(f"lve_ratio {result['lve_ratio']:.3f} (target <= 0.6), emotion_accuracy {result['emotion_accuracy']:.3f} "
          f"(target >= 0.9), diversity_sampled {result['diversity_sampled'] * 1e3:.3f} mm (> 0), "
          f"deterministic_identical {result['deterministic_identical']}; wrote {args.out}")
    return 0 if all(result["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
