"""Vertex-space data for the FaceDiffuser comparison model (reference §8.6, §10): `probtalk3d preprocess vertices`.

DATA/vertex/<KEY>.npy   [T, V, 3] float32, metres: FLAME(the clip's per-frame shape, all 100 expression
                        coefficients, jaw; global/neck/eyes zero) — the ground truth WITH identity.
DATA/templates_vert.npz per-subject templates, a plain NumPy archive (no pickles; `np.load(allow_pickle=False)`):
                        `subjects` [S] str, `templates` [S, V, 3] float32 = FLAME(mean shape, 0, 0),
                        `mean_shapes` [S, 300] float64 = mean shape over all frames of all the subject's clips,
                        `frames` [S] int64 = the frames averaged.
DATA/vertex_info.json   which FLAME model made them (source, vertex count, fingerprint) and counts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from probtalk3d_cli.data.dataset import AudioMotionDataset
from probtalk3d_cli.data.schema import N_EXP, N_PARAMS, N_SHAPE, ClipKey

log = logging.getLogger(__name__)

VERTEX_DIR = "vertex"
TEMPLATES_FILE = "templates_vert.npz"
INFO_FILE = "vertex_info.json"
INFO_FORMAT = "probtalk3d-vertex-data"
INFO_VERSION = 1


def _command(data_root) -> str:
    return f"probtalk3d preprocess vertices --data {data_root} --flame-model PATH|demo"


def flame_fingerprint(flame) -> str:
    """SHA-256 (first 16 hex digits) of the FLAME arrays that shape vertices: template, shape/expression/pose bases."""
    h = hashlib.sha256()
    for a in (flame.v_template, flame.shapedirs, flame.expdirs, flame.posedirs, flame.J_regressor, flame.weights):
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def vertex_path(data_root: str | Path, key) -> Path:
    """DATA/vertex/<KEY>.npy."""
    return Path(data_root) / VERTEX_DIR / f"{key}.npy"


# --------------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------------


@dataclass
class VertexTemplates:
    """Per-subject neutral meshes with identity (reference §1.6 `templates_mead_vert.pkl`, §8.6).

    Attributes:
        subjects: subject IDs.
        templates: [S, V, 3] float32 metres, FLAME(mean shape, zero expression, zero pose).
        mean_shapes: [S, 300] float64 mean shape coefficients.
        frames: [S] frames each mean was taken over.
    """

    subjects: list[str]
    templates: np.ndarray
    mean_shapes: np.ndarray
    frames: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.templates.shape[1])

    def template(self, subject: str) -> np.ndarray:
        """[V, 3] template of one subject (ValueError naming the known subjects otherwise)."""
        return self.select([subject])[0]

    def select(self, subjects: Sequence[str], where: str = "") -> np.ndarray:
        """[len(subjects), V, 3] templates in the given order.

        Raises:
            ValueError: a subject without a template (re-run `preprocess vertices`).
        """
        index = {s: i for i, s in enumerate(self.subjects)}
        missing = [s for s in subjects if s not in index]
        if missing:
            raise ValueError(f"{where or TEMPLATES_FILE} has no template for subject(s) {', '.join(missing)} (it has "
                             f"{', '.join(self.subjects)}); re-run `probtalk3d preprocess vertices` on this DATA folder")
        return self.templates[[index[s] for s in subjects]]


def save_vertex_templates(path: str | Path, t: VertexTemplates) -> Path:
    """Write the templates archive atomically (plain arrays only)."""
    from probtalk3d_cli.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, subjects=np.array(t.subjects, dtype=str), templates=t.templates.astype(np.float32),
                     mean_shapes=t.mean_shapes.astype(np.float64), frames=t.frames.astype(np.int64))
    return Path(path)


def load_vertex_templates(data_root: str | Path) -> VertexTemplates:
    """Read DATA/templates_vert.npz.

    Raises:
        FileNotFoundError: absent (names the command that makes it). ValueError: damaged or inconsistent.
    """
    path = Path(data_root) / TEMPLATES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; make the vertex data first with `{_command(data_root)}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            subjects = [str(s) for s in z["subjects"]]
            templates = np.asarray(z["templates"], dtype=np.float32)
            mean_shapes = np.asarray(z["mean_shapes"], dtype=np.float64)
            frames = np.asarray(z["frames"], dtype=np.int64)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{path} is unreadable or incomplete ({type(exc).__name__}); re-run `{_command(data_root)}`"
                         ) from None
    s = len(subjects)
    if (templates.ndim != 3 or templates.shape[0] != s or templates.shape[2] != 3 or mean_shapes.shape != (s, N_SHAPE)
            or frames.shape != (s,) or not np.all(np.isfinite(templates))):
        raise ValueError(f"{path} has inconsistent arrays (templates {list(templates.shape)} for {s} subjects); "
                         f"re-run `{_command(data_root)}`")
    return VertexTemplates(subjects, templates, mean_shapes, frames)


# --------------------------------------------------------------------------------------------------------
# Reading clips
# --------------------------------------------------------------------------------------------------------


def load_clip_vertices(data_root: str | Path, key, num_vertices: Optional[int] = None) -> np.ndarray:
    """[T, V, 3] float32 ground truth with identity of one clip (DATA/vertex/KEY.npy).

    Raises:
        FileNotFoundError: the file is missing (names `preprocess vertices`). ValueError: wrong shape / vertex count.
    """
    from probtalk3d_cli.io import load_npy

    p = vertex_path(data_root, key)
    if not p.is_file():
        raise FileNotFoundError(f"vertex ground truth {p} does not exist; make it with `{_command(data_root)}`")
    a = load_npy(p, "vertex")
    if a.ndim != 3 or a.shape[2] != 3 or (num_vertices is not None and a.shape[1] != num_vertices):
        want = f"[T, {num_vertices}, 3]" if num_vertices else "[T, V, 3]"
        raise ValueError(f"vertex file {p} has shape {list(a.shape)}, expected {want}; re-run "
                         f"`{_command(data_root)}` with the FLAME model the model was trained with")
    return np.ascontiguousarray(a, dtype=np.float32)


def read_vertex_info(data_root: str | Path) -> Optional[dict]:
    """DATA/vertex_info.json as a dict, or None when absent/unreadable."""
    p = Path(data_root) / INFO_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_vertex_data(data_root: str | Path, keys: Sequence[ClipKey], subjects: Sequence[str]) -> dict:
    """Make sure `preprocess vertices` ran completely for these clips and subjects (before a long training run).

    Returns:
        The vertex_info.json content.

    Raises:
        FileNotFoundError / ValueError: naming the first missing piece and the command that makes it.
    """
    root = Path(data_root)
    info = read_vertex_info(root)
    if info is None or not (root / VERTEX_DIR).is_dir():
        raise FileNotFoundError(f"{root} has no vertex data ({VERTEX_DIR}/, {INFO_FILE}); FaceDiffuser trains in vertex "
                                f"space — run `{_command(root)}` first")
    missing = [str(k) for k in keys if not vertex_path(root, k).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} clip(s) have no {VERTEX_DIR}/<KEY>.npy in {root} (e.g. {missing[0]}); "
                                f"run `{_command(root)}` (it resumes and fills the gaps)")
    load_vertex_templates(root).select(list(subjects), where=str(root / TEMPLATES_FILE))
    return info


# --------------------------------------------------------------------------------------------------------
# preprocess vertices
# --------------------------------------------------------------------------------------------------------


def _param_frames(path: Path) -> int:
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, not .npy, or object arrays (pickles are refused)
        raise ValueError(f"param file {path} is unreadable or not a plain numeric .npy ({' '.join(str(exc).split())}); "
                         "rerun `probtalk3d preprocess` or delete it") from None
    if a.ndim != 3 or a.shape[0] != 1 or a.shape[2] != N_PARAMS or a.shape[1] < 1:
        raise ValueError(f"param file {path} has shape {list(a.shape)}; expected [1, T, 403] — rerun `probtalk3d "
                         "preprocess`")
    return int(a.shape[1])


def _load_params(path: Path) -> np.ndarray:
    from probtalk3d_cli.io import load_npy

    a = load_npy(path, "param")
    if a.ndim != 3 or a.shape[0] != 1 or a.shape[2] != N_PARAMS or a.shape[1] < 1:
        raise ValueError(f"param file {path} has shape {list(a.shape)}; expected [1, T, 403] — rerun `probtalk3d "
                         "preprocess`")
    return a[0].astype(np.float64)


def _check_info(root: Path, flame, fingerprint: str, overwrite: bool) -> None:
    info = read_vertex_info(root)
    if info is None or overwrite:
        return
    if info.get("flame_fingerprint") != fingerprint or int(info.get("num_vertices", -1)) != flame.num_vertices:
        raise ValueError(f"{root / VERTEX_DIR} was made with another FLAME model ({info.get('flame_model')}, "
                         f"{info.get('num_vertices')} vertices); pass --overwrite to rebuild it with "
                         f"{flame.source}, or use that model")


def preprocess_vertices(data_root: str | Path, flame, device=None, *, batch_frames: int = 4096,
                        overwrite: bool = False) -> dict:
    """Write the FaceDiffuser vertex data of every clip in DATA/param (reference §8.6; layout in the module doc).

    Clips are converted in batches of about `batch_frames` frames on `device` (consecutive clips share one FLAME
    call); each clip's file is written atomically. Resumable: a complete `[T, V, 3]` float32 file made with the same
    FLAME model is kept (the model is recorded in DATA/vertex_info.json). The templates are recomputed every run
    from all clips (cheap), so they always describe the whole DATA folder.

    Args:
        data_root: DATA folder with param/*.npy.
        flame: FlameModel (see `flame.load_flame`).
        device: torch.device for FLAME (default CPU).
        batch_frames: frames per FLAME call.
        overwrite: rebuild every file (required when DATA/vertex came from another FLAME model).

    Returns:
        Summary dict: clips, written, skipped, frames, subjects, num_vertices, vertex_dir, templates, seconds,
        summary (one line).

    Raises:
        FileNotFoundError / ValueError: no DATA/param clips, bad param files, vertex data of another FLAME model.
    """
    from probtalk3d_cli.data.splits import scan_keys
    from probtalk3d_cli.flame import FlameConverter
    from probtalk3d_cli.io import atomic_save_npy, atomic_write_json
    from probtalk3d_cli.ui import progress
    from probtalk3d_cli.vertices import is_valid_vertices_file

    t0 = time.perf_counter()
    root = Path(data_root)
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be at least 1, got {batch_frames}")
    keys, bad = scan_keys(root / "param", ".npy")
    if bad:
        log.warning("ignored %d file(s) in %s whose names are not clip keys (e.g. %s)", len(bad), root / "param", bad[0])
    if not keys:
        raise FileNotFoundError(f"{root} holds no clips (param/*.npy); run `probtalk3d preprocess mead` or "
                                f"`probtalk3d preprocess synthetic --out {root}` first")
    keys = sorted(keys)
    n_v = flame.num_vertices
    fingerprint = flame_fingerprint(flame)
    _check_info(root, flame, fingerprint, overwrite)
    info = {"format": INFO_FORMAT, "format_version": INFO_VERSION, "flame_model": flame.source,
            "flame_fingerprint": fingerprint, "num_vertices": n_v, "complete": False,
            "rule": "FLAME(per-frame shape 300, expression 100, jaw 3; global/neck/eyes 0), float32 metres "
                    "(reference §8.6)"}
    atomic_write_json(root / INFO_FILE, info)  # before any file: an interrupted run is resumed with the same model

    conv = FlameConverter(flame, device=device)
    shape_sum: dict[str, np.ndarray] = {}
    shape_frames: dict[str, int] = {}
    written = skipped = frames_total = 0
    pending: list[tuple[ClipKey, np.ndarray]] = []
    pending_frames = 0

    def flush():
        nonlocal pending, pending_frames, written
        if not pending:
            return
        params = np.concatenate([p for _, p in pending], 0)  # [sum T, 403]
        # exp = all 100 coefficients, jaw, per-frame shape (constant runs take the converter's fast path)
        verts = conv.vertices(params[:, N_SHAPE:N_SHAPE + N_EXP], params[:, N_SHAPE + N_EXP:], params[:, :N_SHAPE])
        pos = 0
        for key, p in pending:
            atomic_save_npy(vertex_path(root, key), np.ascontiguousarray(verts[pos:pos + len(p)], dtype=np.float32))
            pos += len(p)
            written += 1
        pending, pending_frames = [], 0

    bar = progress(keys, total=len(keys), desc="preprocess vertices", unit="clip")
    try:
        for key in bar:
            ppath = root / "param" / f"{key}.npy"
            t = _param_frames(ppath)
            done = not overwrite and is_valid_vertices_file(vertex_path(root, key), t, n_v)
            params = _load_params(ppath)  # [T, 403]; the shape columns feed the templates in either case
            shape_sum[key.subject] = shape_sum.get(key.subject, 0.0) + params[:, :N_SHAPE].sum(0)
            shape_frames[key.subject] = shape_frames.get(key.subject, 0) + t
            frames_total += t
            if done:
                skipped += 1
                continue
            pending.append((key, params))
            pending_frames += t
            if pending_frames >= batch_frames:
                flush()
        flush()
    finally:
        if hasattr(bar, "close"):
            bar.close()

    subjects = sorted(shape_sum)
    mean_shapes = np.stack([shape_sum[s] / shape_frames[s] for s in subjects])  # [S, 300]
    templates = np.stack([conv.neutral(ms[None]).cpu().numpy() for ms in mean_shapes]).astype(np.float32)
    tpl = VertexTemplates(subjects, templates, mean_shapes, np.array([shape_frames[s] for s in subjects]))
    save_vertex_templates(root / TEMPLATES_FILE, tpl)
    seconds = time.perf_counter() - t0
    info.update(complete=True, clips=len(keys), frames=frames_total, subjects=subjects,
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    atomic_write_json(root / INFO_FILE, info)
    size_gb = frames_total * n_v * 3 * 4 / 1e9
    summary = (f"preprocess vertices: {len(keys)} clips ({written} written, {skipped} already done), {frames_total} "
               f"frames x {n_v} vertices ({size_gb:.2f} GB), {len(subjects)} subject templates, {seconds:.1f} s")
    return {"clips": len(keys), "written": written, "skipped": skipped, "frames": frames_total, "subjects": subjects,
            "num_vertices": n_v, "vertex_dir": str(root / VERTEX_DIR), "templates": str(root / TEMPLATES_FILE),
            "info": str(root / INFO_FILE), "seconds": seconds, "summary": summary}


# --------------------------------------------------------------------------------------------------------
# Training dataset
# --------------------------------------------------------------------------------------------------------


class VertexAudioDataset(AudioMotionDataset):
    """A stage-2-style dataset whose `motion` is the clip's vertex ground truth flattened to [T, V*3] (metres, with
    identity); audio, style indices, random crops and `collate_clips` work as in `AudioMotionDataset`.

    Args:
        data_root, keys, identities, cache, max_frames, seed: as `AudioMotionDataset`.
        num_vertices: V expected in every DATA/vertex file (the model's vertex count).
    """

    def __init__(self, data_root: str | Path, keys: Sequence, identities: Sequence[str], num_vertices: int,
                 cache: bool = True, max_frames: Optional[int] = None, seed: int = 0):
        super().__init__(data_root, keys, identities, cache=cache, max_frames=max_frames, seed=seed)
        self.num_vertices = int(num_vertices)

    def _get_motion(self, key):
        v = self._motion.get(key)
        if v is None:
            v = load_clip_vertices(self.data_root, key, self.num_vertices).reshape(-1, self.num_vertices * 3)
            if self.cache:
                self._motion[key] = v
        return v
