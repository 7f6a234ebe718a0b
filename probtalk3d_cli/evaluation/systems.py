"""The systems `evaluate` scores side by side: trained checkpoints, folders of generated files, and baselines.

Every system answers `predict_batch(clips)` with one `Prediction` (or None = no prediction for that clip) per clip:
N motion samples in FLAME units (`[N, T, 53]`, 50 expression + 3 jaw) or N vertex sequences (`[N, T, V, 3]`).
New model families register a loader in `MODEL_KINDS` (checkpoint kind -> system factory).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES, NFEATS, ClipKey, params_to_motion, parse_key

log = logging.getLogger(__name__)


@dataclass
class EvalClip:
    """One clip of the evaluated split.

    Attributes:
        key: the clip key (subject, sentence, emotion, intensity).
        motion: [T, 53] float32 ground truth in FLAME units: expression coefficients 0..49 and the jaw pose. Only the
            first 50 of the 100 stored coefficients are kept, like the predictions (official §7, §11.20).
        audio: [S] float32 16 kHz mono, or None when no system needs audio.
    """

    key: ClipKey
    motion: np.ndarray
    audio: Optional[np.ndarray] = None

    @property
    def frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def job_name(self) -> str:
        """`<key>_<subject>_<emotion>_<intensity>`: the job name `generate` gives this clip's own wav and style."""
        k = self.key
        return f"{k}_{k.subject}_{EMOTIONS[k.emotion]}_{INTENSITIES[k.intensity]}"


@dataclass
class Prediction:
    """A system's output for one clip.

    Exactly one of `motion` / `verts` is set. `gt_verts` and `reference` let a system that works in another space
    (e.g. vertex models with identity shape, FDD against the subject template, reference §10) bring its own ground
    truth and FDD reference; by default the zero-shape FLAME ground truth and the all-zero FLAME mesh are used.

    Attributes:
        motion: [N, T, 53] FLAME units (expression 0..49 | jaw), T <= the clip's frames.
        verts: [N, T, V, 3] metres (numpy or torch).
        gt_verts: optional [T_gt, V, 3] ground truth for this system.
        reference: optional [V, 3] FDD reference for this system.
        cut_frames: frames dropped because the prediction was longer than the ground truth.
    """

    motion: Optional[np.ndarray] = None
    verts: Any = None
    gt_verts: Any = None
    reference: Any = None
    cut_frames: int = 0

    @property
    def num_samples(self) -> int:
        return int((self.motion if self.motion is not None else self.verts).shape[0])


def cut_to(arr, frames: int) -> tuple[Any, int]:
    """`arr` [N, T, ...] cut to at most `frames` frames; returns (array, frames dropped)."""
    extra = max(0, int(arr.shape[1]) - int(frames))
    return (arr[:, :frames] if extra else arr), extra


class System:
    """Base class: a named source of predictions.

    Attributes:
        name: row label in the comparison table (unique within a run).
        kind: "model" | "predictions" | "baseline".
        needs_audio: whether `predict_batch` reads `EvalClip.audio`.
    """

    kind = "system"
    needs_audio = False

    def __init__(self, name: str):
        self.name = name
        self.notes: list[str] = []

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}


# --------------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------------


def split_name(spec: str) -> tuple[Optional[str], str]:
    """`NAME=PATH` -> (NAME, PATH); a plain path (or one that exists although it contains '=') -> (None, spec)."""
    if not isinstance(spec, (str, Path)):
        return None, spec  # an in-memory model or checkpoint payload
    text = str(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if name and re.fullmatch(r"[\w.+()-][\w.+() -]*", name) and path:  # e.g. "ProbTalk3D (tiny)=runs/pred"
            return name, path
    return None, text


def default_name(spec) -> str:
    """A short row label from a checkpoint / folder spec: `demo`, the run folder, or the file stem."""
    if not isinstance(spec, (str, Path)):
        return "model"
    if str(spec) == "demo":
        return "demo"
    p = Path(spec)
    if p.is_dir():
        return p.resolve().name or str(p)
    if p.stem in ("best", "last"):
        parent = p.resolve().parent.name
        return parent if p.stem == "best" else f"{parent}/last"
    return p.stem


def unique_names(names: Sequence[str]) -> list[str]:
    """Make row labels unique by appending #2, #3, ... to repeats."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


# --------------------------------------------------------------------------------------------------------
# Trained checkpoints
# --------------------------------------------------------------------------------------------------------


class _CheckpointSystem(System):
    """What the model-checkpoint rows share: the model with its sampling settings, one identity slot per subject,
    and per-clip requests whose N samples come from `job_generator(seed, job_name)` (as `generate` draws them)."""

    kind = "model"
    needs_audio = True

    def __init__(self, name: str, model, info: dict, sampling, num_samples: int, seed: int, *,
                 window_seconds: float, overlap_seconds: float, precision: str = "fp32"):
        super().__init__(name)
        self.model = model
        self.info = info
        self.sampling = sampling
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.window_seconds = float(window_seconds)
        self.overlap_seconds = float(overlap_seconds)
        self.precision = precision
        self.cut_clips = 0

    def check_subjects(self, keys: Sequence[ClipKey]) -> None:
        """Raise ValueError when the split has clips of subjects without an identity slot in this checkpoint."""
        unknown = sorted({k.subject for k in keys} - set(self.model.identities))
        if unknown:
            raise ValueError(f"checkpoint {self.name} has no identity for subject(s) {', '.join(unknown)} of the split "
                             f"(it knows {', '.join(self.model.identities)}); evaluate on a split of its training "
                             "subjects")

    def _requests(self, clips: Sequence[EvalClip]) -> list:
        """One ClipRequest per clip: its audio, its own style, its own seeded generator."""
        from probtalk3d_cli.generation.core import ClipRequest
        from probtalk3d_cli.generation.jobs import job_generator

        ids = self.model.identities
        return [ClipRequest(c.audio, [(ids.index(c.key.subject), c.key.emotion, c.key.intensity)],
                            [job_generator(self.seed, c.job_name)]) for c in clips]


class PredictorSystem(_CheckpointSystem):
    """A ProbTalk3D predictor checkpoint (VQ or VAE prior) sampled with the run's settings (reference §4.5, §5.3).

    Each clip is generated from its own wav and its own style (subject, emotion, intensity). The N samples come
    from the generator `job_generator(seed, job_name)` (the one `generate` uses for the same wav and style), so
    `generate` with the same seed and batch size 1 reproduces them; the audio is encoded once for all N samples,
    which are decoded as one batch (`generation.synthesize`). Predictions longer than the ground truth are cut to
    its length (stage-2 alignment T' = min(T_gt, floor(A/2)), reference §4.2).
    """

    def __init__(self, name: str, model, info: dict, sampling, num_samples: int, seed: int, *,
                 window_seconds: float, overlap_seconds: float, batch_size: int, precision: str = "fp32"):
        super().__init__(name, model, info, sampling, num_samples, seed, window_seconds=window_seconds,
                         overlap_seconds=overlap_seconds, precision=precision)
        self.batch_size = int(batch_size)

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:
        from probtalk3d_cli.generation.core import synthesize

        out = synthesize(self.model, self._requests(clips), self.num_samples, self.sampling, window_seconds=self.window_seconds,
                         overlap_seconds=self.overlap_seconds, batch_size=self.batch_size, precision=self.precision)
        preds = []
        for clip, per_style in zip(clips, out):
            motion, extra = cut_to(per_style[0], clip.frames)  # [N, T, 53] FLAME units
            self.cut_clips += extra > 0
            preds.append(Prediction(motion=motion, cut_frames=extra))
        return preds

    def describe(self) -> dict:
        d = super().describe()
        d.update(checkpoint={k: v for k, v in self.info.items() if v is not None},
                 sampling=self.sampling.describe(self.model.kind), num_samples=self.num_samples, seed=self.seed,
                 batch_size=self.batch_size, clips_cut_to_gt=self.cut_clips)
        return d


def _fit_window(model, window: tuple[float, float]) -> tuple[float, float]:
    """The default window shortened to the checkpoint's positional-encoding limit; a non-default one must fit."""
    from probtalk3d_cli.config import GenerateConfig
    from probtalk3d_cli.data.schema import FPS
    from probtalk3d_cli.generation.core import check_window_fits

    limit = min(int(model.config.prior.max_len), int(model.config.predictor.max_len)) // FPS
    seconds, overlap = window
    if seconds > limit and seconds == GenerateConfig().window_seconds:
        seconds = float(limit)
        overlap = min(overlap, seconds / 4)
    check_window_fits(model, seconds)
    return seconds, overlap


def _predictor_system(payload, name: str, device, settings, window: tuple[float, float], **_context) -> System:
    from probtalk3d_cli.generation.api import load_model
    from probtalk3d_cli.generation.core import Sampling

    model, info = load_model(payload, device)
    sampling = Sampling(bool(settings.deterministic), float(settings.temperature), int(settings.k),
                        float(settings.fact), bool(settings.mean)).validate(getattr(model.prior.cfg, "num_codes", None))
    seconds, overlap = _fit_window(model, window)
    system = PredictorSystem(name, model, info, sampling, settings.num_samples, settings.seed,
                             window_seconds=seconds, overlap_seconds=overlap, batch_size=settings.batch_size,
                             precision=settings.precision)
    system.notes.extend(sampling.warnings(model.kind, settings.num_samples))
    from probtalk3d_cli.device import resolve_precision
    from probtalk3d_cli.generation.core import model_device

    system.info["precision"] = resolve_precision(settings.precision, model_device(model))
    return system


class FaceDiffuserSystem(_CheckpointSystem):
    """A FaceDiffuser checkpoint (reference §10), scored in vertex space with identity, as the original evaluation.

    Each clip is generated from its own wav and style with the generator `job_generator(seed, job_name)` (so
    `generate` with the same seed reproduces the samples). Its ground truth is DATA/vertex/<KEY>.npy (FLAME with the
    clip's shape and all 100 expression coefficients, `preprocess vertices`) and its FDD reference the subject's
    template, while ProbTalk3D rows use zero-shape vertices of the first 50 coefficients and the all-zero mesh. MVE,
    LVE, MEE, CE and Diversity are differences of meshes and so nearly shape-invariant (identity changes the jaw
    pivot and the mouth the jaw rotates); FDD measures motion relative to each row's own reference.
    """

    PROTOCOL = {
        "ground_truth": "DATA/vertex/<KEY>.npy: FLAME(clip shape, 100 expression coefficients, jaw), identity "
                        "included (reference §8.6, §10)",
        "predictions": "[N, T, V, 3] vertices with the subject's template (identity)",
        "fdd_reference": "the subject's template (DATA/templates_vert.npz, stored in the checkpoint)",
    }

    def __init__(self, name: str, model, info: dict, sampling, num_samples: int, seed: int, data_root, *,
                 window_seconds: float, overlap_seconds: float, precision: str = "fp32"):
        super().__init__(name, model, info, sampling, num_samples, seed, window_seconds=window_seconds,
                         overlap_seconds=overlap_seconds, precision=precision)
        self.data_root = Path(data_root)
        self.notes.append("FaceDiffuser protocol (reference §10): ground truth with identity from DATA/vertex, FDD "
                          "against the subject template; ProbTalk3D rows use zero shape and the all-zero mesh")

    def check_subjects(self, keys: Sequence[ClipKey]) -> None:
        """Subjects need an identity slot, and every clip its DATA/vertex file of the model's vertex count."""
        from probtalk3d_cli.data.vertices_data import INFO_FILE, read_vertex_info, vertex_path

        super().check_subjects(keys)
        info = read_vertex_info(self.data_root)
        missing = [str(k) for k in keys if not vertex_path(self.data_root, k).is_file()]
        if info is None or missing:
            raise FileNotFoundError(f"{self.name} is a FaceDiffuser checkpoint, scored against the vertex ground truth, "
                                    f"but {self.data_root} lacks {INFO_FILE if info is None else 'vertex/' + missing[0] + '.npy'}; "
                                    f"run `probtalk3d preprocess vertices --data {self.data_root} --flame-model ...`")
        if int(info.get("num_vertices", -1)) != self.model.num_vertices:
            raise ValueError(f"{self.name} outputs {self.model.num_vertices} vertices but the vertex data in "
                             f"{self.data_root} has {info.get('num_vertices')}; rebuild it with the FLAME model the "
                             "checkpoint was trained with (preprocess vertices --overwrite)")

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:
        from probtalk3d_cli.data.vertices_data import load_clip_vertices
        from probtalk3d_cli.generation.facediffuser import synthesize_vertices

        ids = self.model.identities
        out = synthesize_vertices(self.model, self._requests(clips), self.num_samples, self.sampling,
                                  window_seconds=self.window_seconds, overlap_seconds=self.overlap_seconds,
                                  precision=self.precision)
        preds = []
        for clip, per_style in zip(clips, out):
            verts, extra = cut_to(per_style[0], clip.frames)  # [N, T, V, 3]
            self.cut_clips += extra > 0
            gt = load_clip_vertices(self.data_root, clip.key, self.model.num_vertices)  # [T_gt, V, 3]
            template = self.model.templates[ids.index(clip.key.subject)].view(-1, 3).cpu().numpy()  # [V, 3]
            preds.append(Prediction(verts=verts, gt_verts=gt, reference=template, cut_frames=extra))
        return preds

    def describe(self) -> dict:
        d = super().describe()
        d.update(checkpoint={k: v for k, v in self.info.items() if v is not None},
                 sampling=self.sampling.describe(self.model.schedule.steps), num_samples=self.num_samples,
                 seed=self.seed, protocol=dict(self.PROTOCOL), clips_cut_to_gt=self.cut_clips)
        return d


def _facediffuser_system(payload, name: str, device, settings, window: tuple[float, float], *, data_root=None,
                         facediffuser=None, num_vertices=None, **_context) -> System:
    from probtalk3d_cli.config import FaceDiffuserConfig
    from probtalk3d_cli.device import resolve_precision
    from probtalk3d_cli.generation.api import load_model
    from probtalk3d_cli.generation.core import model_device
    from probtalk3d_cli.generation.facediffuser import DiffusionSampling, probtalk3d_flags_note

    if data_root is None:
        raise ValueError("a FaceDiffuser checkpoint is scored against DATA/vertex; evaluate needs the data folder")
    model, info = load_model(payload, device)
    if num_vertices is not None and model.num_vertices != int(num_vertices):
        raise ValueError(f"{name} is a FaceDiffuser trained on {model.num_vertices}-vertex meshes but the FLAME model of "
                         f"this evaluation has {num_vertices}; pass the --flame-model it was trained with")
    sampling = DiffusionSampling.from_config(facediffuser or FaceDiffuserConfig()).validate(model.schedule.steps)
    system = FaceDiffuserSystem(name, model, info, sampling, settings.num_samples, settings.seed, data_root,
                                window_seconds=window[0], overlap_seconds=window[1], precision=settings.precision)
    changed = [n for n in ("deterministic", "temperature", "k", "fact", "mean")
               if getattr(settings, n) != getattr(type(settings)(), n)]
    system.notes.extend(probtalk3d_flags_note(changed))
    system.info["precision"] = resolve_precision(settings.precision, model_device(model))
    return system


#: checkpoint kind -> factory(payload, name, device, EvalConfig, (window_s, overlap_s), **context) -> System;
#: context: data_root (DATA folder), facediffuser (FaceDiffuserConfig: sampling of FaceDiffuser checkpoints),
#: num_vertices (the evaluation's FLAME vertex count).
MODEL_KINDS: dict[str, Callable[..., System]] = {"predictor": _predictor_system, "facediffuser": _facediffuser_system}


def load_model_system(spec, name: str, device, settings, window: tuple[float, float], **context) -> System:
    """A model system from a checkpoint path / run folder / `demo` (any kind in `MODEL_KINDS`), a loaded checkpoint
    payload, or an in-memory `MotionPredictor` / `FaceDiffuser`.

    Args:
        context: extra inputs some kinds need (see `MODEL_KINDS`), e.g. data_root and facediffuser.

    Raises:
        FileNotFoundError / ValueError: missing file, not a checkpoint, or a kind that cannot be evaluated (e.g. a
            stage-1 prior), named with the command that makes the right one.
    """
    from probtalk3d_cli.checkpoint import MADE_BY, load_checkpoint

    if isinstance(spec, (str, Path)):
        payload = load_checkpoint(spec)
        if payload.get("kind") not in MODEL_KINDS:
            raise ValueError(f"checkpoint {payload['path']} is a {payload.get('kind')} checkpoint but a predictor "
                             f"checkpoint is needed (or a facediffuser one); make one with {MADE_BY['predictor']} or "
                             f"{MADE_BY['facediffuser']}")
    elif isinstance(spec, dict):
        payload = spec
        if payload.get("kind") not in MODEL_KINDS:
            raise ValueError(f"checkpoint {payload.get('path', '')} is a {payload.get('kind')} checkpoint; evaluate needs "
                             f"one of: {', '.join(MODEL_KINDS)}")
    else:  # an in-memory model: load_model passes it through
        if getattr(spec, "kind", None) == "facediffuser":
            return _facediffuser_system(spec, name, device, settings, window, **context)
        return _predictor_system(spec, name, device, settings, window)
    return MODEL_KINDS[payload["kind"]](payload, name, device, settings, window, **context)


# --------------------------------------------------------------------------------------------------------
# Folders of generated files
# --------------------------------------------------------------------------------------------------------

_KEY = r"(?P<key>[A-Za-z0-9]+_\d{3}_\d_\d)"
_STYLE = r"(?:_(?P<subject>[A-Za-z0-9]+)_(?P<emotion>[A-Za-z]+)_(?P<intensity>low|medium|high))?"
_SAMPLE = r"(?:_s(?P<ours>\d+)|\((?P<official>\d+)\))?"
PREDICTION_NAME = re.compile(_KEY + _STYLE + _SAMPLE)


@dataclass
class PredictionFiles:
    """What a predictions folder holds for the split.

    Attributes:
        files: clip key -> [(sample number, path)] sorted by sample number (unsuffixed = sample 1).
        unrecognised: `.npy` names that do not start with a clip key followed by an optional style and sample.
        other_style: files named with a style other than their clip's own (subject, emotion, intensity).
        outside_split: files of clips that are not in the evaluated split.
    """

    files: dict[ClipKey, list[tuple[int, Path]]] = field(default_factory=dict)
    unrecognised: list[str] = field(default_factory=list)
    other_style: list[str] = field(default_factory=list)
    outside_split: list[str] = field(default_factory=list)


def parse_prediction_name(name: str) -> Optional[tuple[ClipKey, Optional[tuple[str, str, str]], int, bool]]:
    """`M003_028_3_2_M003_surprised_high_s2.npy` / `..._high(2).npy` / `M003_028_3_2.npy` ->
    (key, (subject, emotion, intensity) or None, sample number (1 when unsuffixed), suffixed?); None if not a match.

    Our `generate` names files `<audio stem>_<subject>_<emotion>_<intensity>[_s<k>].npy`, the official tool
    `<stem>_<ID>_<emotion>_<low|medium|high>[(k)].npy` (reference §6); with the data's wavs the stem is the clip key.
    """
    if not name.endswith(".npy"):
        return None
    m = PREDICTION_NAME.fullmatch(name[:-4])
    if not m:
        return None
    try:
        key = parse_key(m["key"])
    except ValueError:
        return None
    style = (m["subject"], m["emotion"].lower(), m["intensity"]) if m["subject"] else None
    num = m["ours"] or m["official"]
    return key, style, int(num) if num else 1, num is not None


def scan_predictions(folder: str | Path, split_keys: Sequence[ClipKey]) -> PredictionFiles:
    """Match the `.npy` files of `folder` (not recursive) to the clips of the split by the key their name starts with.

    Raises:
        FileNotFoundError: the folder does not exist. ValueError: a clip has both an unsuffixed file and sample 1, or
            two files for the same sample number.
    """
    from probtalk3d_cli.io import is_temporary

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"predictions folder {root} does not exist; pass a folder of generated .npy files "
                                "(probtalk3d generate, or the official generation.py)")
    wanted = set(split_keys)
    found = PredictionFiles()
    seen: dict[tuple[ClipKey, int], tuple[Path, bool]] = {}
    for p in sorted(root.iterdir()):
        if p.suffix != ".npy" or not p.is_file() or is_temporary(p) or p.name.startswith("."):
            continue
        parsed = parse_prediction_name(p.name)
        if parsed is None:
            found.unrecognised.append(p.name)
            continue
        key, style, num, suffixed = parsed
        if key not in wanted:
            found.outside_split.append(p.name)
            continue
        if style is not None and (style[0].lower() != key.subject.lower() or style[1] != EMOTIONS[key.emotion]
                                  or style[2] != INTENSITIES[key.intensity]):
            found.other_style.append(p.name)
            continue
        if (key, num) in seen:
            other = seen[(key, num)][0]
            raise ValueError(f"predictions folder {root} holds two files for sample {num} of clip {key}: {other.name} "
                             f"and {p.name}; keep one naming scheme per folder")
        seen[(key, num)] = (p, suffixed)
        found.files.setdefault(key, []).append((num, p))
    for key in found.files:
        found.files[key].sort()
    return found


class PredictionsSystem(System):
    """Already generated files (ours: `[1, T, 403]` params or `[T, 53]` motion; official `[1, T, 403]`; vertex files
    `[T, V, 3]`) scored against the split's ground truth. Params keep only their first 50 expression coefficients
    and ignore their shape (zero shape, reference §7). Samples are ordered by their number; the lowest is P."""

    kind = "predictions"

    def __init__(self, name: str, folder: str | Path, split_keys: Sequence[ClipKey]):
        super().__init__(name)
        self.folder = Path(folder)
        self.scan = scan_predictions(folder, split_keys)
        self.missing = [str(k) for k in split_keys if k not in self.scan.files]
        self.cut_clips = 0
        if not self.scan.files:
            hint = ""
            if self.scan.other_style:
                hint = f" ({len(self.scan.other_style)} file(s) name another style than their clip, e.g. " \
                       f"{self.scan.other_style[0]})"
            elif self.scan.outside_split:
                hint = f" ({len(self.scan.outside_split)} file(s) belong to clips outside the split, e.g. " \
                       f"{self.scan.outside_split[0]})"
            raise ValueError(f"predictions folder {self.folder} holds no file for any of the {len(split_keys)} clips of "
                             f"the split{hint}; names must start with the clip key, e.g. M003_028_3_2_M003_surprised_"
                             "high.npy, generated from DATA/wav/<key>.wav")
        for what, items in (("name another style than their clip", self.scan.other_style),
                            ("are not named <clip key>[_<subject>_<emotion>_<intensity>][_s<k>|(k)].npy",
                             self.scan.unrecognised)):
            if items:
                self.notes.append(f"{len(items)} file(s) in {self.folder} {what} and were ignored (e.g. {items[0]})")
        if self.missing:
            self.notes.append(f"{len(self.missing)} of {len(split_keys)} clips have no prediction in {self.folder} "
                              f"(listed in metrics.json); the other {len(split_keys) - len(self.missing)} are evaluated")

    def _load(self, clip: EvalClip) -> Prediction:
        from probtalk3d_cli.vertices import load_animation

        arrays, kinds = [], set()
        for _, path in self.scan.files[clip.key]:
            anim = load_animation(path)
            kinds.add(anim.kind)
            data = params_to_motion(anim.data) if anim.kind == "params" else anim.data
            arrays.append(np.asarray(data, dtype=np.float32))
        if len(kinds) > 1 or len({a.shape for a in arrays}) > 1:
            names = ", ".join(p.name for _, p in self.scan.files[clip.key])
            raise ValueError(f"the predictions of clip {clip.key} in {self.folder} differ in kind or shape ({names}); all "
                             "samples of a clip must have the same layout and length")
        stacked = np.stack(arrays)  # [N, T, 53] or [N, T, V, 3]
        stacked, extra = cut_to(stacked, clip.frames)
        self.cut_clips += extra > 0
        if kinds == {"vertices"}:
            return Prediction(verts=stacked, cut_frames=extra)
        assert stacked.shape[-1] == NFEATS
        return Prediction(motion=stacked, cut_frames=extra)

    def predict_batch(self, clips: Sequence[EvalClip]) -> list[Optional[Prediction]]:
        return [self._load(c) if c.key in self.scan.files else None for c in clips]

    def describe(self) -> dict:
        d = super().describe()
        counts = sorted({len(v) for v in self.scan.files.values()})
        d.update(predictions=str(self.folder.resolve()), files=sum(len(v) for v in self.scan.files.values()),
                 num_samples=counts[0] if len(counts) == 1 else {"min": counts[0], "max": counts[-1]},
                 missing=list(self.missing), ignored={"unrecognised": len(self.scan.unrecognised),
                                                      "other_style": len(self.scan.other_style),
                                                      "outside_split": len(self.scan.outside_split)},
                 clips_cut_to_gt=self.cut_clips)
        return d
