"""`evaluate()`: score checkpoints, folders of generated files and baselines on a data split (reference §7).

For every clip of the split: the ground truth and each system's N samples go through one FLAME converter (built
once, zero shape, expression = the first 50 coefficients + 50 zeros, jaw pose; reference §7, §9) in one batched
call on the device, then `metrics.compute_clip_metrics` (MVE, LVE, MEE, CE, FDD, |FDD|, Diversity) against the
FDD reference = FLAME with all parameters zero. Clips are loaded by a DataLoader (workers = `data.num_workers`, or
a background thread); every system sees the same clips and the same per-clip seeds. Outputs (metrics.json,
per_clip.csv, PNGs) are written atomically at the very end, so a failed run leaves no partial files.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, N_EXP_USED, ClipKey, parse_key
from probtalk3d_cli.evaluation.systems import EvalClip, Prediction, System

log = logging.getLogger(__name__)

SPLIT_NAMES = ("test", "val", "train")
CURVE_SAMPLES = 3  # samples per system drawn in the curve plots


# --------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------


@dataclass
class SystemResult:
    """One row of the comparison table.

    Attributes:
        name, kind: row label and "model" | "predictions" | "baseline".
        info: the system's description (checkpoint, sampling, folder, baseline definition, ...).
        summary: `MetricAccumulator.summary()` in SI units (overall, groups emotion / intensity / subject, units).
        rows: per-clip dicts (SI units).
        missing: clips without a prediction (predictions folders only).
        notes: one-line remarks (ignored files, settings without effect, baseline fallbacks).
    """

    name: str
    kind: str
    info: dict
    summary: dict
    rows: list[dict]
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def overall(self) -> dict:
        return self.summary["overall"]


@dataclass
class EvaluationResult:
    """What `evaluate` did.

    Attributes:
        systems: one result per table row, in table order.
        report: the metrics.json content.
        files: files written (empty without an output folder).
        clips, frames: clips and ground-truth frames of the split.
        seconds: wall time of the whole run.
        notes: run-level remarks (also in metrics.json).
    """

    systems: list[SystemResult]
    report: dict
    files: list[Path]
    clips: int
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("inf")

    def system(self, name: str) -> SystemResult:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------------------------


def resolve_split(data_root: str | Path, split: str, splits_spec: str = "auto") -> tuple[list[ClipKey], dict]:
    """Clips to evaluate: a stage-2 split by name (test | val | train, reference §1.5) or a text FILE.

    FILE holds one entry per line (blank lines and `#` comments ignored): a clip key such as `M003_028_3_2`, or a
    subject ID, which stands for that subject's clips of the test split. Every clip needs DATA/param/KEY.npy and
    DATA/wav/KEY.wav.

    Returns:
        (sorted unique keys, {"name", "source"}) for metrics.json.

    Raises:
        FileNotFoundError / ValueError: missing DATA, unknown split name, bad lines, missing clip files.
    """
    from probtalk3d_cli.data.splits import list_clips

    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist; run `probtalk3d preprocess ... --out {root}` "
                                "first or pass --data")
    name = str(split).strip()
    if name in SPLIT_NAMES:
        return list_clips(root, "pred", name, splits_spec), {"name": name, "source": f"stage-2 {name} split "
                                                                                   f"(data.splits={splits_spec})"}
    path = Path(name).expanduser()
    if not path.is_file():
        raise ValueError(f"unknown split {split!r}; use test, val, train or an existing text file of clip keys / "
                         "subject IDs (--split / eval.split)")
    keys: set[ClipKey] = set()
    subjects: list[str] = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if "_" in text:
            try:
                keys.add(parse_key(text))
            except ValueError:
                raise ValueError(f"split file {path} line {i}: {text!r} is neither a clip key (M003_028_3_2) nor a "
                                 "subject ID") from None
        elif text.isalnum():
            subjects.append(text)
        else:
            raise ValueError(f"split file {path} line {i}: {text!r} is neither a clip key (M003_028_3_2) nor a "
                             "subject ID")
    if subjects:
        test = list_clips(root, "pred", "test", splits_spec)
        for s in subjects:
            own = [k for k in test if k.subject == s]
            if not own:
                raise ValueError(f"split file {path} names subject {s}, which has no clip in the test split of {root}")
            keys.update(own)
    if not keys:
        raise ValueError(f"split file {path} names no clips; list clip keys (M003_028_3_2) or subject IDs, one per line")
    missing = [str(k) for k in sorted(keys) if not (root / "param" / f"{k}.npy").is_file()
               or not (root / "wav" / f"{k}.wav").is_file()]
    if missing:
        raise FileNotFoundError(f"split file {path} names {len(missing)} clip(s) without DATA/param/KEY.npy and "
                                f"DATA/wav/KEY.wav in {root} (e.g. {missing[0]}); fix the list or preprocess them")
    return sorted(keys), {"name": path.stem, "source": str(path.resolve())}


# --------------------------------------------------------------------------------------------------------
# Loading clips (DataLoader workers, or a background thread)
# --------------------------------------------------------------------------------------------------------


class ClipDataset:
    """Map-style dataset of `EvalClip`s (ground-truth motion, and audio when a system needs it)."""

    def __init__(self, data_root: str | Path, keys: Sequence[ClipKey], audio: bool):
        self.root = Path(data_root)
        self.keys = list(keys)
        self.audio = audio

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> EvalClip:
        from probtalk3d_cli.data.dataset import load_clip_audio
        from probtalk3d_cli.evaluation.baselines import load_gt_motion

        key = self.keys[i]
        audio = load_clip_audio(self.root, key) if self.audio else None
        return EvalClip(key, load_gt_motion(self.root, key), audio)


def _collate(items: list) -> list:
    return items


def _prefetch(iterable: Iterable, depth: int = 2) -> Iterator:
    """Iterate `iterable` in a background thread, `depth` items ahead (exceptions are re-raised here)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def run():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                q.put((item, None))
            q.put((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((done, exc))

    t = threading.Thread(target=run, daemon=True, name="evaluate-loader")
    t.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while not q.empty():
            q.get_nowait()


def iterate_batches(dataset: ClipDataset, batch_size: int, num_workers: int) -> Iterator[list[EvalClip]]:
    """Batches of clips in order, from `num_workers` DataLoader processes (0: one background thread)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate, prefetch_factor=2 if num_workers else None)
    return iter(loader) if num_workers else _prefetch(loader)


# --------------------------------------------------------------------------------------------------------
# Vertices
# --------------------------------------------------------------------------------------------------------


def motion_vertices(conv, motion) -> "Any":
    """FLAME vertices of `[..., T, 53]` motion (zero shape; expression 0..49 + 50 zeros; jaw): `[..., T, V, 3]`
    torch tensor on the converter's device, all frames of all samples in one batched call."""
    import torch

    m = torch.as_tensor(np.ascontiguousarray(motion), dtype=conv.dtype, device=conv.device)
    lead = m.shape[:-1]  # [..., T]
    flat = m.reshape(-1, m.shape[-1])  # [N*T, 53]
    verts = conv.forward(flat[:, :N_EXP_USED], flat[:, N_EXP_USED:])  # [N*T, V, 3]
    return verts.view(*lead, conv.num_vertices, 3)


def _as_tensor(x, conv):
    """numpy array or tensor -> tensor of the converter's dtype on its device."""
    import torch

    return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x), dtype=conv.dtype, device=conv.device)


def lip_opening_vertices(neutral: np.ndarray, lip_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central upper and lower lip vertices of the lip region, for the lip-opening curve.

    Vertices of `lip_idx` within the middle 40 % of the lip region's width, split at the region's mean height in the
    neutral mesh. Lip opening (m) = mean height of the upper set − mean height of the lower set (y is up in FLAME).
    """
    lips = neutral[lip_idx]
    cx, half = lips[:, 0].mean(), max(1e-9, 0.5 * (lips[:, 0].max() - lips[:, 0].min()))
    central = np.abs(lips[:, 0] - cx) <= 0.4 * half
    if central.sum() < 2:
        central = np.ones(len(lips), bool)
    cy = lips[central, 1].mean()
    upper = lip_idx[central & (lips[:, 1] >= cy)]
    lower = lip_idx[central & (lips[:, 1] < cy)]
    if not len(upper) or not len(lower):
        upper, lower = lip_idx[lips[:, 1] >= cy], lip_idx[lips[:, 1] < cy]
    return upper, lower


def lip_opening(verts, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """`[..., T, V, 3]` -> `[..., T]` lip opening in metres (see `lip_opening_vertices`)."""
    v = verts
    return (v[..., upper, 1].mean(-1) - v[..., lower, 1].mean(-1)).double().cpu().numpy()


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------


class ClipScorer:
    """Scores each clip for every system: FLAME vertices of the ground truth once, of each system's samples in one
    batched call, then `compute_clip_metrics` into one `MetricAccumulator` per system (groups subject, emotion,
    intensity); with plots also per-vertex error sums and the curve data of the chosen clips.

    Args:
        systems: the systems in table order. conv: the FlameConverter (zero shape, device).
        lip_idx, upper_idx: region indices. seed: run seed (per-clip diversity shuffles).
        plots: collect plot data. plot_at: 0-based clip positions whose curves are plotted.
    """

    def __init__(self, systems: Sequence[System], conv, lip_idx, upper_idx, seed: int, plots: bool = False,
                 plot_at: Iterable[int] = ()):
        import torch

        from probtalk3d_cli.evaluation.metrics import MetricAccumulator

        self.systems = list(systems)
        self.conv = conv
        self.lip_idx, self.upper_idx = lip_idx, upper_idx
        self.seed = int(seed)
        self.plots = plots
        self.plot_at = set(plot_at)
        self.reference = conv.neutral()  # [V, 3]: FLAME with every parameter zero (shape, expression, pose)
        self.lips_up, self.lips_down = lip_opening_vertices(self.reference.cpu().numpy().astype(np.float64), lip_idx)
        self.accumulators = {x.name: MetricAccumulator() for x in self.systems}
        self._heat = {x.name: torch.zeros(conv.num_vertices, dtype=torch.float64, device=conv.device)
                      for x in self.systems}
        self._heat_frames = {x.name: 0 for x in self.systems}
        self.curves: list[dict] = []
        self.frames = 0
        self.clips = 0

    def add(self, clip: EvalClip, preds: dict[str, Optional[Prediction]]) -> None:
        """Score one clip; `preds` maps system name -> its prediction (None = no prediction for this clip)."""
        from probtalk3d_cli.evaluation.metrics import compute_clip_metrics

        conv = self.conv
        gt = motion_vertices(conv, clip.motion)  # [T, V, 3]
        curve = None
        if self.clips in self.plot_at:
            curve = {"key": str(clip.key), "gt_motion": clip.motion,
                     "gt_lip": lip_opening(gt, self.lips_up, self.lips_down), "systems": {}}
        for x in self.systems:
            p = preds.get(x.name)
            if p is None:
                continue
            verts = motion_vertices(conv, p.motion) if p.motion is not None else _as_tensor(p.verts, conv)  # [N,T,V,3]
            g = gt if p.gt_verts is None else _as_tensor(p.gt_verts, conv)
            ref = self.reference if p.reference is None else _as_tensor(p.reference, conv)
            m = compute_clip_metrics(g, verts, lip_idx=self.lip_idx, upper_idx=self.upper_idx, reference=ref,
                                     rng=_diversity_rng(self.seed, clip.key))
            self.accumulators[x.name].add(m, key=str(clip.key), subject=clip.key.subject,
                                          emotion=EMOTIONS[clip.key.emotion],
                                          intensity=INTENSITIES[clip.key.intensity])
            if self.plots:
                t = verts.shape[1]
                self._heat[x.name] += (g[:t] - verts[0]).double().norm(dim=-1).sum(0)  # [V]
                self._heat_frames[x.name] += t
                if curve is not None and x.kind != "baseline":
                    curve["systems"][x.name] = {"motion": None if p.motion is None else p.motion[:CURVE_SAMPLES],
                                                "lip": lip_opening(verts[:CURVE_SAMPLES], self.lips_up, self.lips_down)}
        if curve is not None:
            self.curves.append(curve)
        self.frames += clip.frames
        self.clips += 1

    def per_vertex_error(self) -> dict[str, np.ndarray]:
        """{system: [V] mean over all scored frames of ‖gt − P‖ in metres} (systems with frames only)."""
        return {name: (h / self._heat_frames[name]).cpu().numpy() for name, h in self._heat.items()
                if self._heat_frames[name]}


def _diversity_rng(seed: int, key: ClipKey) -> np.random.Generator:
    from probtalk3d_cli.generation.jobs import derive_seed

    return np.random.default_rng(derive_seed(seed, "diversity", str(key)))


def _plot_indices(n: int, k: int) -> list[int]:
    if n <= 0 or k <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def _check_out(out: Optional[str | Path]) -> Optional[Path]:
    if out is None:
        return None
    from probtalk3d_cli.io import check_output_dir

    return check_output_dir(out)  # a file in the way or a read-only folder: an error before any work


def evaluate(
    data_root: str | Path,
    checkpoints: Sequence[Any] = (),
    predictions: Sequence[str] = (),
    *,
    settings=None,
    flame=None,
    flame_config: Optional[str] = None,
    regions_dir: Optional[str | Path] = None,
    out: Optional[str | Path] = None,
    device=None,
    splits_spec: str = "auto",
    num_workers: int = 0,
    window_seconds: float = 60.0,
    overlap_seconds: float = 2.0,
    names: Optional[Sequence[Optional[str]]] = None,
    facediffuser=None,
) -> EvaluationResult:
    """Score one or more systems on a data split and write metrics.json, per_clip.csv and (optionally) plots.

    Args:
        data_root: DATA folder (param/*.npy, wav/*.wav, optional splits.json).
        checkpoints: predictor checkpoints (paths, run folders, `demo`), each optionally as `NAME=PATH`; loaded
            checkpoint payloads and in-memory `MotionPredictor`s also work (label "model" unless `names` says).
        predictions: folders of generated `.npy` files (ours or the official tool's), each optionally `NAME=DIR`.
        settings: `EvalConfig` (split, num_samples, seed, sampling, batch_size, baselines, plots, plot_clips,
            regions_dir); default: the dataclass defaults.
        flame: a `FlameModel`, `demo`, a path, or None (config value / env / default locations, see `load_flame`).
        flame_config: the config value `paths.flame_model` (used when `flame` is None).
        regions_dir: folder with lve.txt / fdd.txt (overrides settings.regions_dir); needed for a real FLAME model.
        out: output folder; None = compute only, write nothing.
        device: torch.device for the models, FLAME and the metrics (default CPU).
        splits_spec: config `data.splits`.
        num_workers: DataLoader worker processes (config `data.num_workers`); 0 = a background thread.
        window_seconds, overlap_seconds: windowing of long clips, as in `generate` (config generate.*).
        names: optional row labels for checkpoints then predictions (None entries = automatic).
        facediffuser: FaceDiffuserConfig with the sampler / sample_steps / eta of FaceDiffuser checkpoints (default:
            DDIM over the last 100 steps, eta 0). FaceDiffuser rows are scored on DATA/vertex (identity) with the
            subject template as FDD reference (reference §10; `systems.FaceDiffuserSystem`).

    Returns:
        EvaluationResult.

    Raises:
        FileNotFoundError / ValueError / RuntimeError: one line naming the bad input; raised before any file is
        written (inputs are all checked before the first clip is evaluated).
    """
    import torch

    from probtalk3d_cli.config import EvalConfig
    from probtalk3d_cli.evaluation import baselines as bl
    from probtalk3d_cli.evaluation import systems as sy
    from probtalk3d_cli.flame import FlameConverter, FlameModel, load_flame, load_regions
    from probtalk3d_cli.ui import progress

    t0 = time.perf_counter()
    s = settings or EvalConfig()
    device = device or torch.device("cpu")
    out_dir = _check_out(out)
    if not checkpoints and not predictions and not s.baselines:
        raise ValueError("nothing to evaluate: pass --checkpoint CKPT and/or --predictions DIR (and --baselines for "
                         "the trivial baselines)")

    keys, split_info = resolve_split(data_root, s.split, splits_spec)
    flame_model = flame if isinstance(flame, FlameModel) else load_flame(flame, flame_config)
    regions = regions_dir if regions_dir is not None else s.regions_dir
    lip_idx, upper_idx = load_regions(regions, flame_model)
    regions_source = str(Path(regions).resolve()) if regions is not None else "built into the demo head"
    if s.plots:
        from probtalk3d_cli.render import choose_gl_backend

        choose_gl_backend("auto")  # fail now, not after the evaluation, when no offscreen OpenGL exists

    # systems: all inputs are checked here, before any clip is evaluated
    labels = list(names) if names is not None else [None] * (len(checkpoints) + len(predictions))
    specs = []
    for i, spec in enumerate(list(checkpoints) + list(predictions)):
        given, path = sy.split_name(spec)
        specs.append((labels[i] if i < len(labels) and labels[i] else given or sy.default_name(path), path,
                      i < len(checkpoints)))
    row_names = sy.unique_names([n for n, _, _ in specs])
    systems: list[System] = []
    for name, (_, path, is_model) in zip(row_names, specs):
        if is_model:
            system = sy.load_model_system(path, name, device, s, (window_seconds, overlap_seconds),
                                          data_root=data_root, facediffuser=facediffuser,
                                          num_vertices=flame_model.num_vertices)
            if hasattr(system, "check_subjects"):
                system.check_subjects(keys)
        else:
            system = sy.PredictionsSystem(name, path, keys)
        systems.append(system)
    mean_baseline = None
    if s.baselines:
        mean_baseline = bl.build_mean_baseline(data_root, splits_spec, workers=max(2, num_workers))
        systems += [mean_baseline, bl.ShiftedGroundTruthBaseline()]

    conv = FlameConverter(flame_model, device=device)
    scorer = ClipScorer(systems, conv, lip_idx, upper_idx, s.seed, plots=s.plots,
                        plot_at=_plot_indices(len(keys), s.plot_clips) if s.plots else ())
    dataset = ClipDataset(data_root, keys, audio=any(x.needs_audio for x in systems))
    bar = progress([], total=len(keys), desc="evaluate", unit="clip")
    try:
        with torch.inference_mode():
            for batch in iterate_batches(dataset, s.batch_size, num_workers):
                preds = {x.name: x.predict_batch(batch) for x in systems}
                for j, clip in enumerate(batch):
                    scorer.add(clip, {name: p[j] for name, p in preds.items()})
                    bar.update(1)
    finally:
        bar.close()
    accs, reference = scorer.accumulators, scorer.reference
    frames_total = scorer.frames

    results = []
    for x in systems:
        if len(accs[x.name]) == 0:
            raise ValueError(f"{x.name} produced no prediction for any clip; nothing to score")
        notes = list(x.notes)
        if x is mean_baseline and mean_baseline.fallback_note():
            notes.append(mean_baseline.fallback_note())
        for n in notes:
            log.info("%s: %s", x.name, n)
        results.append(SystemResult(x.name, x.kind, x.describe(), accs[x.name].summary(), accs[x.name].rows(),
                                    list(getattr(x, "missing", [])), notes))

    from probtalk3d_cli.evaluation import report as rp

    context = {
        "data": str(Path(data_root).resolve()), "split": {**split_info, "clips": len(keys)}, "settings": s,
        "frames": frames_total, "flame": flame_model, "num_vertices": conv.num_vertices,
        "regions": {"source": regions_source, "lip_vertices": int(len(lip_idx)), "upper_vertices": int(len(upper_idx))},
        "device": str(device), "num_workers": num_workers,
    }
    seconds = time.perf_counter() - t0
    report = rp.build_report(results, context, seconds)
    files: list[Path] = []
    if out_dir is not None:
        images: dict[str, bytes] = {}
        if s.plots:
            from probtalk3d_cli.evaluation import plots as pl

            shown = {r.name for r in results if r.kind != "baseline"}
            per_vertex = {name: v for name, v in scorer.per_vertex_error().items() if name in shown}
            images = pl.make_plots(results, scorer.curves, per_vertex, flame_model, reference.cpu().numpy())
        files = rp.write_outputs(out_dir, report, results, images)
    return EvaluationResult(results, report, files, len(keys), frames_total, time.perf_counter() - t0,
                            list(report.get("notes", [])))
