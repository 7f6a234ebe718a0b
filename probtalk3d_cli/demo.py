"""The bundled demo model: `run_demo` (one clip in three emotions -> mp4 videos with the demo head) and
`demo_train` (synthetic corpus -> train-prior -> train-pred -> evaluate -> `bundle_checkpoint` into the package).

Every stage of `demo_train` is resumable: a complete corpus is kept, finished training runs are no-ops under
`--resume`, and the evaluation is redone only when the predictor checkpoint changed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
DEMO_EMOTIONS = ("happy", "sad", "angry")
# The demo speech: three neutral sentences of subject M001's synthetic voice that are NOT in the corpus (it has
# neutral sentences 1-6), joined into one clip of about 7 s. Neutral, so the emotion in the videos comes from the
# requested style, not from the voice.
DEMO_SENTENCES = ("M001_097_0_0", "M001_098_0_0", "M001_099_0_0")
DEMO_AUDIO_NAME = "demo_speech.wav"
DEMO_SEED = 0  # the synthetic corpus seed the demo model was trained on
BUNDLE_LIMIT_BYTES = 5 * 1024 * 1024
# Stage names in order (also the keys of the timing report).
STAGES = ("corpus", "train-prior", "train-pred", "evaluate", "bundle")


# --------------------------------------------------------------------------------------------------------
# make demo
# --------------------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What `run_demo` wrote.

    Attributes:
        audio: the speech used (the synthesized demo clip or the user's file).
        motions: one `.npy` params file per emotion (with `generate`'s JSON sidecars).
        videos: one mp4 per emotion, in the order of `emotions`.
        side_by_side: the mp4 with all emotions next to each other, labelled.
        emotions: the emotion names; subject, intensity: the rest of the style.
        frames: motion frames (25 fps). seconds: wall time; timings: seconds per step.
    """

    audio: Path
    motions: list[Path]
    videos: list[Path]
    side_by_side: Path
    emotions: list[str]
    subject: str
    intensity: str
    frames: int
    seconds: float
    timings: dict = field(default_factory=dict)


def demo_speech(seed: int = DEMO_SEED):
    """The demo speech (deterministic, no licensed data): DEMO_SENTENCES synthesized and joined, float32 16 kHz."""
    import numpy as np

    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.data.synthetic import synthesize_clip

    return np.concatenate([synthesize_clip(parse_key(k), seed)[1] for k in DEMO_SENTENCES])


def write_demo_clip(out_dir: Union[str, Path], seed: int = DEMO_SEED) -> Path:
    """Write `demo_speech()` as `<out_dir>/demo_speech.wav` (16 kHz mono 16-bit)."""
    from probtalk3d_cli.io import save_wav

    return save_wav(Path(out_dir) / DEMO_AUDIO_NAME, demo_speech(seed))


def run_demo(
    out: Union[str, Path] = "demo_out",
    *,
    audio: Optional[Union[str, Path]] = None,
    checkpoint: Union[str, Path] = "demo",
    emotions: Sequence[str] = DEMO_EMOTIONS,
    subject: Optional[str] = None,
    intensity: str = "high",
    settings=None,
    size: int = 512,
    flame="demo",
    backend: str = "auto",
    device=None,
) -> DemoResult:
    """Animate one clip in several emotions and render videos with the demo head (the library behind `probtalk3d demo`).

    Steps: the audio (the synthetic demo clip unless `audio` is given) -> `generate` once per emotion (params files
    with sidecars in `out/motion/`) -> one mp4 per emotion plus a labelled side-by-side mp4 of all of them, each with
    the audio track.

    Args:
        out: output folder (created).
        audio: speech file of any format; None = synthesize the demo speech (`DEMO_SENTENCES`) into `out/`.
        checkpoint: predictor checkpoint, run folder or `demo` (the bundled model).
        emotions: emotion names or indices (at least one).
        subject: identity of the checkpoint (default its first); intensity: low | medium | high.
        settings: GenerateConfig (sampling, seed, precision, windows); default the dataclass defaults.
        size: video panel size in pixels (even). flame: `demo`, a FLAME path or a FlameModel. backend: OpenGL.
        device: torch.device for generation and the FLAME conversion.

    Returns:
        DemoResult.

    Raises:
        ValueError / FileNotFoundError / RuntimeError: bad inputs, missing OpenGL or model, one line each.
    """
    from probtalk3d_cli.config import GenerateConfig
    from probtalk3d_cli.data.schema import EMOTIONS, parse_emotion
    from probtalk3d_cli.flame import FlameModel, load_flame
    from probtalk3d_cli.generation import generate
    from probtalk3d_cli.render import choose_gl_backend, render

    t0 = time.perf_counter()
    names = [EMOTIONS[parse_emotion(e)] for e in emotions]
    if not names:
        raise ValueError("no emotions given; pass at least one, e.g. --emotions happy,sad,angry")
    if len(set(names)) != len(names):
        raise ValueError(f"--emotions lists an emotion twice ({', '.join(names)}); give each once")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the demo outputs")
    choose_gl_backend(backend)  # no OpenGL: fail before any work
    flame_model = flame if isinstance(flame, FlameModel) else load_flame(str(flame))
    timings = {}

    t = time.perf_counter()
    if audio is None:
        audio_path = write_demo_clip(out)
    else:
        audio_path = Path(audio)
        if not audio_path.is_file():
            raise FileNotFoundError(f"audio file {audio_path} does not exist; check --audio")
    timings["audio"] = time.perf_counter() - t

    t = time.perf_counter()
    res = generate(checkpoint, [audio_path], out / "motion", subject=subject, emotion=",".join(names),
                   intensity=intensity, settings=settings or GenerateConfig(), device=device, overwrite=True)
    if res.failures:
        raise ValueError(f"{res.failures[0].input}: {res.failures[0].message}")
    by_emotion = {json.loads(o.sidecar.read_text(encoding="utf-8"))["emotion"]: o for o in res.outputs}
    motions = [by_emotion[n].path for n in names]
    first = json.loads(by_emotion[names[0]].sidecar.read_text(encoding="utf-8"))
    timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    stem = audio_path.stem
    videos = []
    for name, motion in zip(names, motions):
        r = render([motion], out / f"{stem}_{name}.mp4", flame_model, audio=audio_path, size=size, backend=backend,
                   device=device)
        videos.append(r.path)
    labels = [f"{n} ({first['intensity']})" for n in names]
    side = render(motions, out / f"{stem}_side_by_side.mp4", flame_model, audio=audio_path, labels=labels, size=size,
                  backend=backend, device=device).path
    timings["render"] = time.perf_counter() - t
    return DemoResult(audio=audio_path, motions=motions, videos=videos, side_by_side=side, emotions=names,
                      subject=first["subject"], intensity=first["intensity"], frames=int(first["frames"]),
                      seconds=time.perf_counter() - t0, timings={k: round(v, 2) for k, v in timings.items()})


# --------------------------------------------------------------------------------------------------------
# make demo-train
# --------------------------------------------------------------------------------------------------------


@dataclass
class StageReport:
    """One stage of `demo_train`: its name, whether earlier work was reused, wall seconds and a one-line detail."""

    name: str
    skipped: bool
    seconds: float
    detail: str


@dataclass
class DemoTrainResult:
    """What `demo_train` did.

    Attributes:
        work: the work folder (data/, prior/, pred/, eval/, demo_train.json).
        bundle: the bundled checkpoint written. bundle_bytes: its size.
        stages: one StageReport per stage, in order. evaluation: the model/baseline figures stored in the bundle.
        seconds: wall time of the whole run.
    """

    work: Path
    bundle: Path
    bundle_bytes: int
    stages: list[StageReport]
    evaluation: dict
    seconds: float


def demo_config(config_files: Sequence[Union[str, Path]] = (), overrides: Sequence[str] = ()):
    """The demo model's Config: configs/demo.yaml (or the given files instead), then `overrides`."""
    from probtalk3d_cli.config import load_config

    files = [Path(f) for f in config_files] or [DEMO_CONFIG]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"config file {f} does not exist; run from a source checkout (configs/demo.yaml) "
                                    "or pass --config FILE")
    return load_config([str(f) for f in files], list(overrides))


def _check_run_config(run_dir: Path, cfg, sections: Sequence[str]) -> None:
    """A run folder made with other settings cannot be resumed: say so instead of failing deep inside torch."""
    from probtalk3d_cli.config import load_config

    saved = run_dir / "config.yaml"
    if not (run_dir / "last.pt").is_file() or not saved.is_file():
        return
    old, new = load_config([saved]).to_dict(), cfg.to_dict()
    diff = [f"{s}.{k}" for s in sections for k in new[s] if old[s].get(k) != new[s][k]]
    if diff:
        raise ValueError(f"{run_dir} holds a run made with other settings ({', '.join(diff[:4])}); delete that folder "
                         "or choose another --work to train again")


def _validation_figures(run_dir: Path) -> dict:
    """Best and last per-epoch validation figures of a run (from metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    rows = [r for r in rows if r.get("val")]
    best = min(rows[1:] or rows, key=lambda r: r["val"].get("total", float("inf")))
    rnd = lambda d: {k: round(float(v), 6) for k, v in d.items()}  # noqa: E731
    return {"epochs": rows[-1]["epoch"], "steps": rows[-1]["step"], "best_epoch": best["epoch"],
            "best_val": rnd(best["val"]), "last_val": rnd(rows[-1]["val"]), "untrained_val": rnd(rows[0]["val"])}


def _evaluation_summary(report: dict) -> dict:
    """The figures of an `evaluate` metrics.json worth keeping in the bundle (SI units: m, m^2)."""
    keep = ("mve", "lve", "mee", "ce", "fdd", "fdd_abs", "diversity")
    systems = {}
    for s in report["systems"]:
        m = s["metrics"]
        systems[s["name"]] = {k: m.get(k) for k in keep if k in m}
    return {"split": report["split"], "clips": report["clips"], "num_samples": report["num_samples"],
            "seed": report["seed"], "sampling": report["sampling"], "flame_model": report["flame_model"]["source"],
            "units": {k: report["units"].get(k) for k in keep if k in report.get("units", {})}, "systems": systems}


def bundle_checkpoint(pred_checkpoint: Union[str, Path], out: Union[str, Path], extra_meta: dict) -> Path:
    """Write a predictor checkpoint for shipping: weights, config and meta only (no training state), plus
    `extra_meta` under meta["demo"]; machine-specific paths become relative names.

    Raises:
        RuntimeError: the result is larger than 5 MB (lower prior/predictor sizes or max_len in the config).
    """
    from probtalk3d_cli.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(pred_checkpoint, expect="predictor")
    meta = dict(payload.get("meta") or {})
    meta.pop("best_val", None)
    if meta.get("prior_checkpoint"):
        meta["prior_checkpoint"] = Path(meta["prior_checkpoint"]).parent.name + "/" + Path(meta["prior_checkpoint"]).name
    if isinstance(meta.get("data"), dict) and meta["data"].get("root"):
        meta["data"] = {**meta["data"], "root": Path(meta["data"]["root"]).name}
    meta["demo"] = json.loads(json.dumps(extra_meta, sort_keys=True))  # key order fixed: same figures, same bytes
    config = dict(payload["config"])
    config["data"] = {**config["data"], "root": None}
    path = save_checkpoint(out, "predictor", config, payload["model"], meta)
    size = path.stat().st_size
    if size > BUNDLE_LIMIT_BYTES:
        raise RuntimeError(f"the bundled checkpoint {path} is {size / 2**20:.1f} MB, over the 5 MB limit; lower "
                           "prior/predictor sizes or max_len in configs/demo.yaml")
    return path


def demo_train(
    work: Union[str, Path] = "work_demo",
    cfg=None,
    device=None,
    *,
    bundle: Optional[Union[str, Path]] = None,
    subjects: int = 4,
    sentences: int = 4,
    seed: int = DEMO_SEED,
    workers: int = 2,
) -> DemoTrainResult:
    """Rebuild the demo model (the library behind `probtalk3d demo-train` / `make demo-train`).

    Stages (each reuses finished work): the default synthetic corpus in `work/data` -> `train_prior` into
    `work/prior` -> `train_pred` into `work/pred` -> `evaluate` (test split, demo head, baselines) into `work/eval`
    -> `bundle_checkpoint` of `work/pred/best.pt` with the corpus settings, seeds, validation and evaluation
    figures. Timings go to `work/demo_train.json`.

    Args:
        work: work folder (created).
        cfg: Config (default `demo_config()`, i.e. configs/demo.yaml).
        device: torch.device (default CPU).
        bundle: where to write the bundled checkpoint (default: the package's assets/demo_model.pt).
        subjects, sentences, seed, workers: synthetic corpus settings (defaults = `preprocess synthetic` defaults).

    Returns:
        DemoTrainResult.
    """
    import copy

    import torch

    from probtalk3d_cli.checkpoint import demo_checkpoint_path
    from probtalk3d_cli.data.synthetic import GENERATOR_VERSION, corpus_complete, make_synthetic_corpus
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.generation.api import file_sha256
    from probtalk3d_cli.io import atomic_write_json
    from probtalk3d_cli.training.stages import train_pred, train_prior

    t_start = time.perf_counter()
    cfg = cfg if cfg is not None else demo_config()
    device = device or torch.device("cpu")
    work = Path(work)
    if work.exists() and not work.is_dir():
        raise ValueError(f"--work {work} is a file; give a folder")
    bundle = Path(bundle) if bundle is not None else demo_checkpoint_path()
    data, prior_dir, pred_dir, eval_dir = work / "data", work / "prior", work / "pred", work / "eval"
    stages: list[StageReport] = []

    def stage(name: str, skipped: bool, t0: float, detail: str) -> None:
        stages.append(StageReport(name, skipped, round(time.perf_counter() - t0, 2), detail))
        log.info("demo-train %d/%d %s: %s (%.1f s)", len(stages), len(STAGES), name,
                 ("reused: " if skipped else "") + detail, stages[-1].seconds)

    # 1. corpus
    t0 = time.perf_counter()
    if corpus_complete(data, subjects, sentences, seed):
        stage("corpus", True, t0, f"{data} is complete")
    else:
        s = make_synthetic_corpus(data, subjects=subjects, sentences=sentences, seed=seed, workers=workers)
        stage("corpus", False, t0, f"{s['clips']} clips, {s['audio_seconds']} s of audio")

    # 2. stage 1
    t0 = time.perf_counter()
    _check_run_config(prior_dir, cfg, ("prior", "train_prior"))
    before = _steps(prior_dir)
    r1 = train_prior(copy.deepcopy(cfg), data, prior_dir, device, resume=True)
    stage("train-prior", r1.steps == before, t0,
          f"{r1.epochs} epochs, {r1.steps} steps, best val {r1.best_val:.5f}")

    # 3. stage 2
    t0 = time.perf_counter()
    _check_run_config(pred_dir, cfg, ("audio", "predictor", "train_pred"))
    before = _steps(pred_dir)
    r2 = train_pred(copy.deepcopy(cfg), data, pred_dir, device, prior=prior_dir, resume=True)
    stage("train-pred", r2.steps == before, t0,
          f"{r2.epochs} epochs, {r2.steps} steps, best val {r2.best_val:.5f}")

    # 4. evaluation of best.pt (redone only when the checkpoint changed)
    t0 = time.perf_counter()
    best = pred_dir / "best.pt"
    sha = file_sha256(best)
    report = _read_report(eval_dir / "metrics.json", sha)
    if report is not None:
        stage("evaluate", True, t0, f"{eval_dir / 'metrics.json'} matches {best.name}")
    else:
        settings = copy.deepcopy(cfg.eval)
        settings.baselines, settings.split, settings.precision = True, "test", "fp32"
        res = evaluate(data, [f"demo={best}"], settings=settings, flame="demo", out=eval_dir, device=device,
                       window_seconds=cfg.generate.window_seconds, overlap_seconds=cfg.generate.overlap_seconds)
        report = res.report
        stage("evaluate", False, t0, f"{res.clips} test clips, N={settings.num_samples}")

    # 5. bundle
    t0 = time.perf_counter()
    evaluation = _evaluation_summary(report)
    sys_ = evaluation["systems"]
    evaluation["lve_ratio_vs_mean_baseline"] = round(sys_["demo"]["lve"] / sys_["baseline: mean motion"]["lve"], 4)
    extra = {
        "made_by": "probtalk3d demo-train (make demo-train)",
        "config_file": "configs/demo.yaml",
        "corpus": {"generator": "probtalk3d preprocess synthetic", "generator_version": GENERATOR_VERSION,
                   "subjects": subjects, "sentences": sentences, "seed": seed},
        "seeds": {"corpus": seed, "train_prior": cfg.train_prior.seed, "train_pred": cfg.train_pred.seed,
                  "evaluate": cfg.eval.seed},
        "validation": {"prior": _validation_figures(prior_dir), "pred": _validation_figures(pred_dir)},
        "evaluation": evaluation,
        "trained_on": "synthetic speech only: shows the pipeline working, not production quality on real speech",
    }
    path = bundle_checkpoint(best, bundle, extra)
    size = path.stat().st_size
    stage("bundle", False, t0, f"{path} ({size / 2**20:.2f} MB)")
    seconds = time.perf_counter() - t_start
    atomic_write_json(work / "demo_train.json", {
        "bundle": str(path), "bundle_bytes": size, "seconds": round(seconds, 1),
        "stages": [s.__dict__ for s in stages], "evaluation": evaluation})
    return DemoTrainResult(work, path, size, stages, evaluation, seconds)


def _steps(run_dir: Path) -> int:
    """Steps recorded in a run's metrics.jsonl (-1 when absent)."""
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return -1
    lines = [line for line in p.read_text(encoding="utf-8").splitlines() if line]
    return json.loads(lines[-1])["step"] if lines else -1


def _read_report(path: Path, sha: str) -> Optional[dict]:
    """An evaluate metrics.json that scored the checkpoint with this sha256 (else None)."""
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    models = [s for s in report.get("systems", []) if s.get("kind") == "model"]
    if len(models) == 1 and (models[0].get("checkpoint") or {}).get("sha256") == sha:
        return report
    return None
