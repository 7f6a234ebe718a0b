"""3DMEAD as processed by EMOTE (HDF5 FLAME parameters) + MEAD audio (m4a) -> DATA/param/KEY.npy and
DATA/wav/KEY.wav (reference §1.1-1.2), in parallel, resumable, with every skipped clip counted and listed.

Differences from the official scripts: the param file is float32 `[1, T, 403]` whatever the HDF5 dtype; the wav is
resampled to 16 kHz mono at preprocessing time (the official code keeps the source rate and resamples on load);
clips are discovered per folder instead of reusing M003's sentence list; nothing is skipped silently.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from probtalk3d_cli.data.schema import EMOTIONS, N_EXP, N_JAW, N_PARAMS, N_SHAPE, SAMPLE_RATE, ClipKey

log = logging.getLogger(__name__)

REPORT_FILE = "preprocess_report.json"
HDF5_NAME = "shape_pose_cam.hdf5"
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9]+$")
_LEVEL_RE = re.compile(r"^level_([123])$")
_SENTENCE_RE = re.compile(r"^\d{3}$")
STATUSES = ("written", "skipped_existing", "missing_audio", "missing_animation", "unreadable")


@dataclass
class _Found:
    keys: dict[ClipKey, Path]
    ignored: list[str]


def _parse_level_sentence(emotion: str, level: str, sentence: str) -> Optional[tuple[int, int, int]]:
    m = _LEVEL_RE.match(level)
    if emotion not in EMOTIONS or not m or not _SENTENCE_RE.match(sentence) or int(sentence) < 1:
        return None
    return EMOTIONS.index(emotion), int(m.group(1)) - 1, int(sentence)


def _subject_dirs(root: Path, subjects: Optional[list[str]]) -> list[Path]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and _SUBJECT_RE.match(d.name))
    if subjects is not None:
        dirs = [d for d in dirs if d.name in subjects]
    return dirs


def find_animation(root: Path, subjects: Optional[list[str]] = None) -> _Found:
    """`<subject>/front/<emotion>/level_<n>/<sentence>/shape_pose_cam.hdf5` -> {key: path}; odd folders listed."""
    keys: dict[ClipKey, Path] = {}
    ignored: list[str] = []
    for sdir in _subject_dirs(root, subjects):
        front = sdir / "front"
        if not front.is_dir():
            ignored.append(f"{sdir.relative_to(root)} (no front/ folder)")
            continue
        for edir in sorted(front.iterdir()):
            for ldir in sorted(edir.iterdir()) if edir.is_dir() else []:
                for cdir in sorted(ldir.iterdir()) if ldir.is_dir() else []:
                    parsed = _parse_level_sentence(edir.name, ldir.name, cdir.name) if cdir.is_dir() else None
                    rel = str(cdir.relative_to(root))
                    if parsed is None:
                        ignored.append(f"{rel} (not <emotion>/level_<1-3>/<3-digit sentence>)")
                        continue
                    f = cdir / HDF5_NAME
                    if not f.is_file():
                        ignored.append(f"{rel} (no {HDF5_NAME})")
                        continue
                    e, i, s = parsed
                    keys[ClipKey(sdir.name, s, e, i)] = f
    return _Found(keys, ignored)


def find_audio(root: Path, subjects: Optional[list[str]] = None) -> _Found:
    """`<subject>/audio/<emotion>/level_<n>/<sentence>.m4a` -> {key: path}; odd files listed."""
    keys: dict[ClipKey, Path] = {}
    ignored: list[str] = []
    for sdir in _subject_dirs(root, subjects):
        adir = sdir / "audio"
        if not adir.is_dir():
            ignored.append(f"{sdir.relative_to(root)} (no audio/ folder)")
            continue
        for edir in sorted(adir.iterdir()):
            for ldir in sorted(edir.iterdir()) if edir.is_dir() else []:
                for f in sorted(ldir.iterdir()) if ldir.is_dir() else []:
                    if f.name.startswith("."):
                        continue
                    parsed = _parse_level_sentence(edir.name, ldir.name, f.stem) if f.suffix == ".m4a" else None
                    if parsed is None:
                        ignored.append(f"{f.relative_to(root)} (not <emotion>/level_<1-3>/<3-digit sentence>.m4a)")
                        continue
                    e, i, s = parsed
                    keys[ClipKey(sdir.name, s, e, i)] = f
    return _Found(keys, ignored)


# --------------------------------------------------------------------------------------------------------
# Per-clip work (runs in worker processes)
# --------------------------------------------------------------------------------------------------------


def read_emote_hdf5(path: str | Path) -> np.ndarray:
    """Read `shape` [1,T,300], `exp` [1,T,100], `jaw` [1,T,3] and return float32 `[1, T, 403]` = shape | exp | jaw.

    Raises:
        ValueError: unreadable file, missing dataset, wrong shapes, mismatched T or non-finite values.
    """
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            parts = []
            for name, width in (("shape", N_SHAPE), ("exp", N_EXP), ("jaw", N_JAW)):
                if name not in fh:
                    raise ValueError(f"dataset '{name}' is missing")
                arr = np.asarray(fh[name][()], dtype=np.float32)
                if arr.ndim == 2:
                    arr = arr[None]
                if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[2] != width or arr.shape[1] < 1:
                    raise ValueError(f"dataset '{name}' has shape {list(arr.shape)}, expected [1, T, {width}]")
                parts.append(arr)
    except OSError as exc:
        raise ValueError(f"not a readable HDF5 file ({exc})") from None
    lengths = {p.shape[1] for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"shape/exp/jaw have different frame counts {[p.shape[1] for p in parts]}")
    params = np.concatenate(parts, axis=2)
    if not np.all(np.isfinite(params)):
        raise ValueError("contains NaN or infinite values")
    return params


def _hdf5_frames(path: Path) -> Optional[int]:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            shp = fh["exp"].shape
        return int(shp[-2])
    except (OSError, KeyError, IndexError):
        return None


def _valid_param(path: Path, frames: Optional[int]) -> bool:
    """An existing output is kept only when it loads as finite float `[1, T, 403]` with the source's T."""
    from probtalk3d_cli.io import load_npy

    if not path.is_file():
        return False
    try:
        arr = load_npy(path, "param")
    except (ValueError, OSError):
        return False
    return arr.ndim == 3 and arr.shape[0] == 1 and arr.shape[2] == N_PARAMS and arr.shape[1] >= 1 and (
        frames is None or arr.shape[1] == frames)


def _valid_wav(path: Path) -> bool:
    import soundfile as sf

    if not path.is_file():
        return False
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # soundfile raises its own error types for damaged files
        return False
    return sr == SAMPLE_RATE and data.shape[1] == 1 and data.shape[0] > 0 and bool(np.all(np.isfinite(data)))


def _process_clip(job: tuple[str, Optional[str], Optional[str], str]) -> dict:
    """Convert one clip's available sources; returns {key, param, wav, errors} with per-file outcomes."""
    from probtalk3d_cli.io import atomic_save_npy, load_audio, save_wav

    key, hdf5, m4a, out = job
    out_p = Path(out)
    result: dict = {"key": key, "param": None, "wav": None, "errors": []}
    if hdf5 is not None:
        dst = out_p / "param" / f"{key}.npy"
        if _valid_param(dst, _hdf5_frames(Path(hdf5))):
            result["param"] = "skipped"
        else:
            try:
                atomic_save_npy(dst, read_emote_hdf5(hdf5))
                result["param"] = "written"
            except ValueError as exc:
                result["errors"].append({"file": hdf5, "reason": str(exc)})
    if m4a is not None:
        dst = out_p / "wav" / f"{key}.wav"
        if _valid_wav(dst):
            result["wav"] = "skipped"
        else:
            try:
                save_wav(dst, load_audio(m4a, SAMPLE_RATE))
                result["wav"] = "written"
            except (ValueError, FileNotFoundError) as exc:
                reason = str(exc)
                if m4a in reason:  # keep the reason short: the file is named next to it
                    reason = reason.replace(f"audio file {m4a} ", "")
                result["errors"].append({"file": m4a, "reason": reason})
    return result


def _status(r: dict) -> str:
    if r["errors"]:
        return "unreadable"
    if r["param"] is None:
        return "missing_animation"
    if r["wav"] is None:
        return "missing_audio"
    return "written" if "written" in (r["param"], r["wav"]) else "skipped_existing"


def _check_dirs(animation_dir: Path, audio_dir: Path, out: Path) -> None:
    for name, d in (("--animation-dir", animation_dir), ("--audio-dir", audio_dir)):
        if not d.exists():
            raise FileNotFoundError(f"{name} {d} does not exist; pass the folder that holds the subject folders")
        if not d.is_dir():
            raise ValueError(f"{name} {d} is not a folder; pass the folder that holds the subject folders")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder for DATA")
    from probtalk3d_cli.io import check_output_dir

    for folder in (out, out / "param", out / "wav"):  # created with the first file written into them
        check_output_dir(folder)


def _run(jobs: list[tuple], workers: int) -> Iterable[dict]:
    from probtalk3d_cli.ui import progress

    if workers == 1:
        for job in progress(jobs, total=len(jobs), desc="preprocess", unit="clip"):
            yield _process_clip(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield from progress(ex.map(_process_clip, jobs, chunksize=4), total=len(jobs), desc="preprocess",
                            unit="clip")


def preprocess_mead(animation_dir: str | Path, audio_dir: str | Path, out: str | Path, workers: int = 2,
                    subjects: Optional[list[str]] = None) -> dict:
    """Convert 3DMEAD/EMOTE HDF5 + MEAD m4a into DATA/param/KEY.npy and DATA/wav/KEY.wav.

    A clip with animation but no audio still gets its param file (stage 1 can use it), and vice versa; both are
    listed in the report. Existing outputs that load with the right shape are kept (resumable); damaged ones
    are redone. Every file is written atomically.

    Args:
        animation_dir: EMOTE `EMICA-MEAD_flame2020` folder (`<subject>/front/<emotion>/level_<n>/<sentence>/`).
        audio_dir: MEAD folder (`<subject>/audio/<emotion>/level_<n>/<sentence>.m4a`).
        out: DATA folder.
        workers: worker processes (1 = inline).
        subjects: only these subject IDs (each must exist in at least one input folder).

    Returns:
        the report written to DATA/preprocess_report.json: counts (clips and one count per status), a sorted key
        list per status (written, skipped_existing, missing_audio, missing_animation), unreadable entries
        {key, file, reason}, ignored folder/file names, and a one-line `summary`.

    Raises:
        FileNotFoundError / ValueError / PermissionError: missing input folder, unknown subject, no clips found,
        output not writable.
    """
    from probtalk3d_cli.io import atomic_write_json

    animation_dir, audio_dir, out = Path(animation_dir), Path(audio_dir), Path(out)
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    _check_dirs(animation_dir, audio_dir, out)
    if subjects is not None:
        subjects = [s.strip() for s in subjects if s.strip()]
        unknown = [s for s in subjects if not (animation_dir / s).is_dir() and not (audio_dir / s).is_dir()]
        if unknown:
            raise ValueError(f"subject(s) {', '.join(unknown)} have no folder in {animation_dir} or {audio_dir}; "
                             "check --subjects")
    t0 = time.perf_counter()
    anim = find_animation(animation_dir, subjects)
    audio = find_audio(audio_dir, subjects)
    keys = sorted(set(anim.keys) | set(audio.keys))
    if not keys:
        raise ValueError(f"no clips found: expected {animation_dir}/<subject>/front/<emotion>/level_<n>/<sentence>/"
                         f"{HDF5_NAME} and {audio_dir}/<subject>/audio/<emotion>/level_<n>/<sentence>.m4a")
    jobs = [(str(k), str(anim.keys[k]) if k in anim.keys else None, str(audio.keys[k]) if k in audio.keys else None,
             str(out)) for k in keys]
    results = sorted(_run(jobs, workers), key=lambda r: r["key"])
    lists: dict[str, list] = {s: [] for s in STATUSES}
    for r in results:
        st = _status(r)
        if st == "unreadable":
            lists[st].extend({"key": r["key"], **e} for e in r["errors"])
        else:
            lists[st].append(r["key"])
    counts = {"clips": len(keys)}
    counts.update({s: len({e["key"] for e in lists[s]} if s == "unreadable" else lists[s]) for s in STATUSES})
    counts["with_param"] = sum(r["param"] is not None for r in results)
    counts["with_wav"] = sum(r["wav"] is not None for r in results)
    summary = (f"preprocess mead: {counts['clips']} clips: {counts['written']} written, {counts['skipped_existing']} "
               f"already done, {counts['missing_audio']} missing audio, {counts['missing_animation']} missing "
               f"animation, {counts['unreadable']} unreadable ({time.perf_counter() - t0:.1f} s)")
    report = {
        "animation_dir": str(animation_dir), "audio_dir": str(audio_dir), "out": str(out),
        "counts": counts, **lists, "ignored": sorted(anim.ignored + audio.ignored), "summary": summary,
    }
    path = atomic_write_json(out / REPORT_FILE, report)
    report["report_path"] = str(path)
    for kind in ("missing_audio", "missing_animation"):
        if lists[kind]:
            log.warning("%d clip(s) %s (e.g. %s); listed in %s", len(lists[kind]), kind.replace("_", " "),
                        lists[kind][0], path)
    if lists["unreadable"]:
        e = lists["unreadable"][0]
        log.warning("%d file(s) unreadable (e.g. %s: %s); listed in %s", len(lists["unreadable"]), e["file"],
                    e["reason"], path)
    return report
