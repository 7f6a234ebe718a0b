"""`generate()`: audio files/folders/stdin + styles -> `.npy` motion files with JSON sidecars (reference §6).

Resumable: a rerun skips jobs whose outputs exist and are complete; outputs made with other settings are an
error unless `overwrite`. Every file is written atomically, the `.npy` before its sidecar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from probtalk3d_cli import __version__
from probtalk3d_cli.device import resolve_precision
from probtalk3d_cli.data.schema import FPS, N_PARAMS, NFEATS, SAMPLE_RATE, motion_to_params
from probtalk3d_cli.generation import facediffuser as _fd
from probtalk3d_cli.generation.core import (
    MIN_FRAMES,
    MIN_SAMPLES,
    ClipRequest,
    Sampling,
    check_window_fits,
    default_window_seconds,
    model_device,
    plan_windows,
    synthesize,
)
from probtalk3d_cli.generation.jobs import (
    AudioSource,
    Job,
    build_jobs,
    expand_inputs,
    flag_requests,
    job_generator,
    parse_shard,
    read_styles_csv,
    select_shard,
)

log = logging.getLogger(__name__)

FORMATS = ("params", "motion")
VERTEX_FORMAT = "vertices"  # FaceDiffuser checkpoints (reference §10)
LAYOUTS = {
    "params": "official [1, T, 403] float64: shape 300 (zeros) | expression 100 (50 predicted + 50 zeros) | jaw 3",
    "motion": "[T, 53] float32: expression 50 | jaw 3 (FLAME units)",
    VERTEX_FORMAT: "[T, V, 3] float32 vertex positions in metres, including the subject's template (identity)",
}
# Sidecar fields that must match for an existing output to count as done (anything else is an error).
SETTINGS_KEYS = ("checkpoint_sha256", "sampling", "seed", "num_samples", "format", "window", "precision")


@dataclass
class OutputFile:
    """One written (or kept) `.npy` file: its sidecar, job name, 1-based sample index, frames."""

    path: Path
    sidecar: Path
    job: str
    sample: int
    frames: int
    skipped: bool = False


@dataclass
class Failure:
    """An input that could not be processed (the rest of the run went on)."""

    input: str
    message: str


@dataclass
class GenerateResult:
    """What `generate` did.

    Attributes:
        outputs: every output file of the selected jobs (written now, or kept from an earlier run: `skipped`).
        failures: inputs that failed (unreadable or too short audio), with one-line reasons.
        jobs: jobs in this shard; jobs_skipped: of those, already complete; jobs_other_shards: left to other shards.
        warnings: one-line notes (e.g. flags that do not apply to this checkpoint).
        checkpoint: path / kind / sha256 of the model used.
        seconds: wall time.
    """

    outputs: list[OutputFile] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    jobs: int = 0
    jobs_skipped: int = 0
    jobs_other_shards: int = 0
    warnings: list[str] = field(default_factory=list)
    checkpoint: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def written(self) -> list[OutputFile]:
        return [o for o in self.outputs if not o.skipped]


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def file_sha256(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_model(checkpoint, device=None):
    """(model in eval mode on `device`, checkpoint info dict) from a path / run dir / `demo` / payload / model.

    The model is a MotionPredictor (kind "vq" / "vae") or, for a `facediffuser` checkpoint, a FaceDiffuser (kind
    "facediffuser").
    """
    import torch

    from probtalk3d_cli.models.facediffuser import FaceDiffuser
    from probtalk3d_cli.models.predictor import MotionPredictor

    if isinstance(checkpoint, FaceDiffuser):
        model = checkpoint if device is None else checkpoint.to(device)
        return model, {"path": None, "kind": model.kind, "sha256": None}
    if isinstance(checkpoint, MotionPredictor):
        model = checkpoint if device is None else checkpoint.to(device)
        return model, {"path": None, "kind": model.kind, "sha256": None,
                       "token_layout": getattr(model.config.prior, "token_layout", None)}
    if isinstance(checkpoint, dict):
        payload = checkpoint
    else:
        from probtalk3d_cli.checkpoint import load_checkpoint

        payload = load_checkpoint(checkpoint, expect=("predictor", "facediffuser"))
    if payload.get("kind") == "facediffuser":
        model = FaceDiffuser.from_checkpoint(payload).to(device or torch.device("cpu")).eval()
        path = payload.get("path")
        return model, {"path": str(Path(path).resolve()) if path else None, "kind": model.kind,
                       "sha256": file_sha256(path) if path and Path(path).is_file() else None}
    model = MotionPredictor.from_checkpoint(payload).to(device or torch.device("cpu")).eval()
    path = payload.get("path")
    meta = payload.get("meta") or {}
    info = {"path": str(Path(path).resolve()) if path else None, "kind": model.kind,
            "sha256": file_sha256(path) if path and Path(path).is_file() else None,
            "token_layout": getattr(model.config.prior, "token_layout", None)}
    if meta.get("source"):
        info["source"] = meta["source"]
    return model, info


def read_input_audio(src: AudioSource) -> tuple[np.ndarray, Optional[int]]:
    """(16 kHz mono float32 audio, the file's own sample rate or None when unknown) of a source."""
    from probtalk3d_cli.io import load_audio

    if src.path is not None:
        rate = None
        try:
            import soundfile as sf

            rate = int(sf.info(str(src.path)).samplerate)
        except Exception:  # formats soundfile cannot read (m4a, ...): the rate is simply not recorded
            rate = None
        return load_audio(src.path, SAMPLE_RATE), rate
    with tempfile.TemporaryDirectory(prefix="probtalk3d-stdin-") as tmp:
        p = Path(tmp) / "stdin.wav"
        p.write_bytes(src.data or b"")
        try:
            audio = load_audio(p, SAMPLE_RATE)
        except ValueError:
            raise ValueError("the audio on stdin could not be decoded; pipe a wav (or flac/mp3/ogg) file") from None
        try:
            import soundfile as sf

            rate = int(sf.info(str(p)).samplerate)
        except Exception:
            rate = None
    return audio, rate


def _npy_header(path: Path) -> Optional[tuple[tuple, np.dtype]]:
    """(shape, dtype) of a complete .npy file, or None if it is unreadable or truncated."""
    try:
        with open(path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
        if path.stat().st_size != offset + int(np.prod(shape)) * dtype.itemsize:
            return None
        return tuple(shape), dtype
    except (OSError, ValueError):
        return None


def _expected_layout(fmt: str, frames: int, num_vertices: Optional[int] = None) -> tuple[tuple, np.dtype]:
    if fmt == "params":
        return (1, frames, N_PARAMS), np.dtype(np.float64)
    if fmt == VERTEX_FORMAT:
        return (frames, int(num_vertices or 0), 3), np.dtype(np.float32)
    return (frames, NFEATS), np.dtype(np.float32)


def _done(npy: Path, sidecar: Path, settings: dict) -> bool:
    """True if `npy` + sidecar are a complete output made with `settings`; False if missing or damaged.

    Raises:
        ValueError: complete, but made with other settings (never mixed silently).
    """
    if not npy.is_file() or not sidecar.is_file():
        return False
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        frames = int(meta["frames"])
        old = {k: meta["settings"][k] for k in SETTINGS_KEYS}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    header = _npy_header(npy)
    n_v = meta["shape"][1] if meta.get("format") == VERTEX_FORMAT and len(meta.get("shape") or []) == 3 else None
    if header is None or header != _expected_layout(meta.get("format", ""), frames, n_v):
        return False
    new = json.loads(json.dumps(settings))  # the same JSON types as the stored copy
    diff = [k for k in SETTINGS_KEYS if old[k] != new[k]]
    if diff:
        detail = "; ".join(f"{k} {old[k]} -> {new[k]}" for k in diff[:3])
        raise ValueError(f"{npy} exists from a run with other settings ({detail}); pass --overwrite to replace it "
                         "or choose another --out")
    return True


def _fit_window(g, model, given: Sequence[str]):
    """Shorten the default window to the model's positional-encoding limit (an explicit window must fit)."""
    import copy

    from probtalk3d_cli.config import GenerateConfig

    limit = default_window_seconds(model)
    if g.window_seconds <= limit or "window_seconds" in given or g.window_seconds != GenerateConfig().window_seconds:
        check_window_fits(model, g.window_seconds)
        return g
    g = copy.copy(g)
    g.window_seconds = limit
    log.info("windows of %g s (this checkpoint's positional-encoding limit) instead of the default %g s",
             limit, GenerateConfig().window_seconds)
    return g


def _write(path: Path, motion: np.ndarray, fmt: str, sidecar: dict) -> None:
    from probtalk3d_cli.io import atomic_save_npy, atomic_write_json

    # params: [T, 53] -> [1, T, 403] float64; motion [T, 53] and vertices [T, V, 3] are written as float32
    array = motion_to_params(motion) if fmt == "params" else np.ascontiguousarray(motion, dtype=np.float32)
    atomic_save_npy(path, array)
    atomic_write_json(path.with_suffix(".json"), sidecar)


# --------------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------------


def generate(
    checkpoint,
    inputs: Iterable[Union[str, Path]] = (),
    out_dir: Union[str, Path] = "out",
    *,
    subject: Union[None, str, Sequence[str]] = None,
    emotion: Union[None, str, Sequence[str]] = None,
    intensity: Union[None, str, Sequence[str]] = None,
    styles_csv: Union[None, str, Path] = None,
    settings=None,
    device=None,
    shard: Union[None, str, tuple[int, int]] = None,
    overwrite: bool = False,
    allow_unseen_styles: bool = False,
    stdin_audio: Optional[bytes] = None,
    given: Sequence[str] = (),
    facediffuser=None,
) -> GenerateResult:
    """Generate motion files for audio inputs (the library behind `probtalk3d generate`).

    Jobs = every input x every style combination (flags accept comma-separated lists and `random`), plus one job
    per `--styles` CSV row. Each job writes `<audio key>_<subject>_<emotion>_<intensity>.npy` (or `_s1` ... `_sN`
    for N samples) and a `<same>.json` sidecar under `out_dir`; folder inputs mirror their sub-folders.

    Order of work: settings, shard and inputs are checked, the model loads, every style is resolved (all errors
    before any file is written), the shard is selected, finished jobs are skipped; then audio is processed.
    Unreadable or too short audio is reported in `failures` and the run goes on.

    Args:
        checkpoint: predictor checkpoint path, run directory, `demo`, loaded payload, or a MotionPredictor.
        inputs: audio files, folders (recursive; hidden and temporary files skipped) and `-` (stdin_audio).
        out_dir: output folder (created).
        subject, emotion, intensity: requested style (see `jobs.resolve_style` for defaults and `random`).
        styles_csv: CSV with columns audio,subject,emotion,intensity[,name] (see `jobs.read_styles_csv`).
        settings: GenerateConfig (num_samples, sampling, seed, format, windows, batch_size, precision);
            default GenerateConfig().
        device: torch.device (default CPU).
        shard: `K/N` or (K, N): this run does every N-th job (name order) starting at K (0-based).
        overwrite: regenerate outputs that already exist.
        allow_unseen_styles: permit neutral with medium/high intensity.
        stdin_audio: bytes of the audio given as `-`; it is also saved as `<out>/stdin.wav` for rendering.
        given: names of sampling settings the user set explicitly (for applicability warnings).
        facediffuser: FaceDiffuserConfig whose sampler / sample_steps / eta drive a FaceDiffuser checkpoint
            (default FaceDiffuserConfig(): DDIM over the last 100 steps, eta 0). A FaceDiffuser writes `[T, V, 3]`
            float32 vertex files with identity (format "vertices"; `generate.format` params/motion do not apply).

    Returns:
        GenerateResult.

    Raises:
        ValueError / FileNotFoundError: bad settings, inputs, styles, shard, or outputs from other settings.
    """
    from probtalk3d_cli.config import GenerateConfig
    from probtalk3d_cli.io import check_output_dir, safe_join, save_wav
    from probtalk3d_cli.ui import progress

    t0 = time.perf_counter()
    g = settings or GenerateConfig()
    if g.format not in FORMATS + (VERTEX_FORMAT,):
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {g.format!r} (--format / generate.format)")
    sampling = Sampling.from_config(g).validate()
    shard_kn = shard if isinstance(shard, tuple) or shard is None else parse_shard(shard)
    if isinstance(shard, tuple):
        parse_shard(f"{shard[0]}/{shard[1]}")
    inputs = [str(i) for i in inputs]
    if not inputs and styles_csv is None:
        raise ValueError("no inputs; pass audio files or folders, - for stdin, or --styles FILE.csv")
    flag_reqs = flag_requests(subject, emotion, intensity)
    pairs = [(src, req) for src in expand_inputs(inputs, stdin_audio) for req in flag_reqs]
    if styles_csv is not None:
        pairs += read_styles_csv(styles_csv, flag_reqs)
    out_dir = check_output_dir(out_dir)  # before the model is loaded

    model, info = load_model(checkpoint, device)
    kind = model.kind
    fd_sampling = None
    result = GenerateResult(checkpoint=info)
    if kind == "facediffuser":
        g, fd_sampling = _facediffuser_settings(g, model, given, facediffuser)
        result.warnings = _fd.probtalk3d_flags_note(given)
    else:
        if g.format == VERTEX_FORMAT:
            raise ValueError("--format vertices is for FaceDiffuser checkpoints; a ProbTalk3D checkpoint writes params "
                             "or motion (turn them into vertices with probtalk3d to-vertices)")
        sampling.validate(getattr(model.prior.cfg, "num_codes", None))
        g = _fit_window(g, model, given)
        result.warnings = sampling.warnings(kind, g.num_samples, given)
    for w in result.warnings:
        log.warning(w)

    all_jobs = build_jobs(pairs, model.identities, g.seed, allow_unseen_styles)
    jobs = select_shard(all_jobs, shard_kn)
    result.jobs, result.jobs_other_shards = len(jobs), len(all_jobs) - len(jobs)
    run_settings = {
        "checkpoint_sha256": info.get("sha256"),
        "sampling": fd_sampling.describe(model.schedule.steps) if fd_sampling else sampling.describe(kind),
        "seed": int(g.seed),
        "num_samples": int(g.num_samples),
        "format": g.format,
        "window": {"window_seconds": float(g.window_seconds), "overlap_seconds": float(g.overlap_seconds)},
        "precision": resolve_precision(g.precision, model_device(model)),
    }
    paths = {j.name: [safe_join(out_dir, n) for n in j.output_names(g.num_samples)] for j in jobs}
    todo = []
    for job in jobs:
        if not overwrite and all(_done(p, p.with_suffix(".json"), run_settings) for p in paths[job.name]):
            result.jobs_skipped += 1
            for k, p in enumerate(paths[job.name], 1):
                frames = json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))["frames"]
                result.outputs.append(OutputFile(p, p.with_suffix(".json"), job.name, k, frames, skipped=True))
        else:
            todo.append(job)
    log.info("%d job(s) to run, %d already done%s", len(todo), result.jobs_skipped,
             f", {result.jobs_other_shards} in other shards" if result.jobs_other_shards else "")

    groups: dict[AudioSource, list[Job]] = {}
    for job in todo:
        groups.setdefault(job.source, []).append(job)
    bar = progress(None, total=len(todo), desc="generate", unit="job", leave=False) if todo else _NoBar()
    try:
        items = list(groups.items())
        step = max(1, int(g.batch_size))
        for start in range(0, len(items), step):
            requests, ready = [], []
            for src, src_jobs in items[start:start + step]:
                try:
                    audio, rate = read_input_audio(src)
                    if len(audio) < MIN_SAMPLES:
                        raise ValueError(
                            f"audio is {len(audio) / SAMPLE_RATE:.3f} s long; at least {MIN_SAMPLES / SAMPLE_RATE:.3f} s "
                            f"({MIN_SAMPLES} samples at 16 kHz) is needed for {MIN_FRAMES} motion frames; pass a longer "
                            "recording"
                        )
                except (ValueError, FileNotFoundError, OSError) as exc:
                    result.failures.append(Failure(src.label, " ".join(str(exc).split())))
                    if len(items) > 1:  # a batch goes on: say so now (a single input's error is the result)
                        log.error("%s: %s", src.label, " ".join(str(exc).split()))
                    bar.update(len(src_jobs))
                    continue
                audio_path = src.path
                if src.path is None:  # stdin: keep the audio next to the outputs so `render` finds it
                    audio_path = save_wav(safe_join(out_dir, "stdin.wav"), audio).resolve()
                styles = [(model.identities.index(j.subject), j.emotion, j.intensity) for j in src_jobs]
                requests.append(ClipRequest(audio, styles, [job_generator(g.seed, j.name) for j in src_jobs]))
                ready.append((src_jobs, audio, rate, audio_path))
            if not requests:
                continue
            if fd_sampling is not None:
                motions = _fd.synthesize_vertices(model, requests, g.num_samples, fd_sampling,
                                                  window_seconds=g.window_seconds, overlap_seconds=g.overlap_seconds,
                                                  precision=g.precision)
            else:
                motions = synthesize(model, requests, g.num_samples, sampling, window_seconds=g.window_seconds,
                                     overlap_seconds=g.overlap_seconds, batch_size=g.batch_size, precision=g.precision)
            for (src_jobs, audio, rate, audio_path), per_style in zip(ready, motions):
                n_windows = len(plan_windows(len(audio), g.window_seconds, g.overlap_seconds))
                for job, samples in zip(src_jobs, per_style):
                    for k, (path, motion) in enumerate(zip(paths[job.name], samples), 1):
                        sidecar = _sidecar(path, job, k, motion.shape[0], audio, rate, audio_path, info,
                                           run_settings, n_windows, model)
                        _write(path, motion, g.format, sidecar)
                        result.outputs.append(OutputFile(path, path.with_suffix(".json"), job.name, k, motion.shape[0]))
                    bar.update(1)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def _facediffuser_settings(g, model, given: Sequence[str], fcfg):
    """(GenerateConfig with format "vertices", DiffusionSampling) for a FaceDiffuser checkpoint."""
    import copy

    from probtalk3d_cli.config import FaceDiffuserConfig

    if "format" in given and g.format != VERTEX_FORMAT:
        raise ValueError(f"--format {g.format} does not apply to a FaceDiffuser checkpoint, which writes [T, V, 3] vertex "
                         "files; drop --format or pass --format vertices")
    g = copy.copy(g)
    g.format = VERTEX_FORMAT
    return g, _fd.DiffusionSampling.from_config(fcfg or FaceDiffuserConfig()).validate(model.schedule.steps)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _sidecar(path: Path, job: Job, sample: int, frames: int, audio: np.ndarray, rate: Optional[int],
             audio_path: Path, info: dict, run_settings: dict, n_windows: int, model) -> dict:
    fd = run_settings["format"] == VERTEX_FORMAT
    shape, dtype = _expected_layout(run_settings["format"], frames, model.num_vertices if fd else None)
    return {
        "file": path.name,
        "probtalk3d_version": __version__,
        "format": run_settings["format"],
        "layout": LAYOUTS[run_settings["format"]],
        "shape": list(shape),
        "dtype": str(dtype),
        "frames": int(frames),
        "fps": FPS,
        "audio": str(audio_path),
        "audio_duration_s": round(len(audio) / SAMPLE_RATE, 6),
        "audio_sample_rate": rate,
        "model_sample_rate": SAMPLE_RATE,
        "subject": job.subject,
        "emotion": job.emotion_name,
        "intensity": job.intensity_name,
        "sample": sample,
        "num_samples": run_settings["num_samples"],
        "seed": run_settings["seed"],
        "sampling": run_settings["sampling"],
        "windows": n_windows,
        "checkpoint": {k: v for k, v in info.items() if k in ("path", "kind", "sha256", "token_layout", "source")},
        "settings": run_settings,
        "frame_rule": _fd.FRAME_RULE if fd else "T = floor(A / 2), A = HuBERT frames of the 16 kHz audio (reference §4.2)",
    }
