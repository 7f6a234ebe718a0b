"""Animation files in, FLAME vertices out: reading params / motion / vertex `.npy` files and `probtalk3d to-vertices`.

Reference §8.4 (params -> vertices) and §8.5 (motion transfer to a custom mesh). Mesh sequences as `.npy`, OBJ or PLY.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from probtalk3d_cli.data.schema import N_PARAMS, N_SHAPE, NFEATS
from probtalk3d_cli.flame import (
    FlameConverter,
    as_converter,
    load_templates,
    motion_to_vertices,
    params_to_vertices,
    split_motion,
    split_params,
    transfer_motion,
)


def is_valid_vertices_file(path: Path, frames: int, num_vertices: int) -> bool:
    """True when `path` is a finished `[frames, V, 3]` float32 .npy (used to skip work on reruns)."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return a.shape == (frames, num_vertices, 3) and a.dtype == np.float32


# --------------------------------------------------------------------------------------------------------
# Animation files (params, motion or vertices)
# --------------------------------------------------------------------------------------------------------


@dataclass
class Animation:
    """One animation file: `kind` is "params" ([T, 403]), "motion" ([T, 53]) or "vertices" ([T, V, 3])."""

    path: Path
    kind: str
    data: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])


def load_animation(path: str | Path) -> Animation:
    """Read a `.npy` animation and tell params, motion and vertices apart by shape.

    Accepted: `[1, T, 403]` / `[T, 403]` params (ours or the official ones, float32/float64), `[T, 53]` / `[1, T, 53]`
    denormalised motion, `[T, V, 3]` or `[T, V*3]` vertices. No pickles; NaN/Inf are rejected.

    Raises:
        FileNotFoundError / ValueError: one line naming the file, its shape and what is accepted.
    """
    from probtalk3d_cli.io import load_npy

    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise ValueError(f"{p} is not a .npy file; pass [1, T, 403] params, [T, 53] motion or [T, V, 3] vertices")
    a = load_npy(p, what="animation")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{p} has dtype {a.dtype}; animation files hold float32 or float64 values")
    shp = list(a.shape)
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[2] in (N_PARAMS, NFEATS):
        a = a[0]
    if a.ndim == 2 and a.shape[1] == N_PARAMS:
        kind = "params"
    elif a.ndim == 2 and a.shape[1] == NFEATS:
        kind = "motion"
    elif a.ndim == 3 and a.shape[2] == 3 and a.shape[1] >= 3:
        kind = "vertices"
    elif a.ndim == 2 and a.shape[1] % 3 == 0 and a.shape[1] > N_PARAMS:
        kind, a = "vertices", a.reshape(a.shape[0], -1, 3)
    else:
        raise ValueError(f"{p} has shape {shp}; expected [1, T, 403] params, [T, 53] motion or [T, V, 3] vertices")
    if a.shape[0] == 0:
        raise ValueError(f"{p} has no frames (shape {shp}); pass a non-empty animation")
    return Animation(path=p, kind=kind, data=a)


def animation_vertices(anim: Animation, flame, shape: str | np.ndarray | None = "keep") -> np.ndarray:
    """Vertices `[T, V, 3]` float32 of any animation (params/motion through FLAME; vertices checked against V)."""
    conv = as_converter(flame)
    if anim.kind == "params":
        return params_to_vertices(anim.data, conv, shape=shape)
    if anim.kind == "motion":
        sh = None if (shape is None or isinstance(shape, str)) else shape
        return motion_to_vertices(anim.data, conv, shape=sh)
    if anim.data.shape[1] != conv.num_vertices:
        raise ValueError(f"{anim.path} has {anim.data.shape[1]} vertices but the FLAME model in use "
                         f"({conv.flame.source}) has {conv.num_vertices}; pass the matching --flame-model")
    return np.ascontiguousarray(anim.data, dtype=np.float32)


# --------------------------------------------------------------------------------------------------------
# `probtalk3d to-vertices`
# --------------------------------------------------------------------------------------------------------

VERTS_SUFFIX = "_verts"
FORMATS = ("npy", "obj", "ply")


@dataclass
class ToVerticesOutput:
    """What `to_vertices` did: written and skipped (already valid) outputs, frames converted, wall time."""

    written: list
    skipped: list
    frames: int
    seconds: float


def expand_inputs(inputs, suffix: str = ".npy") -> list[Path]:
    """Files and folders -> sorted list of `.npy` files (folders: their `*.npy`, not our own `*_verts.npy` outputs,
    not temporary files). A folder with no inputs, or a missing path, is an error."""
    from probtalk3d_cli.io import is_temporary

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.glob(f"*{suffix}") if q.is_file() and not is_temporary(q)
                           and not q.stem.endswith(VERTS_SUFFIX))
            if not found:
                raise FileNotFoundError(f"folder {p} holds no {suffix} animation files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist; pass .npy files or folders of them")
    if not files:
        raise ValueError("no inputs given; pass .npy params/motion files or folders")
    stems = [f.stem for f in files]
    odd = [f for f in files if f.stem in ("", ".", "..")]
    if odd:  # the stem names the output: '..' would point outside --out
        raise ValueError(f"input {odd[0]} has no usable name (stem {odd[0].stem!r}) for its output; rename the file")
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise ValueError(f"several inputs share the name {dup[0]!r}; their outputs would collide, convert them "
                         "into separate --out folders")
    return files


def load_target_mesh(path: str | Path, num_vertices: int) -> np.ndarray:
    """A neutral target mesh for motion transfer: `.npy` [V, 3] or `.obj` / `.ply` with the FLAME vertex count."""
    from probtalk3d_cli.io import load_npy

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"target mesh {p} does not exist; pass a .npy [V, 3], .obj or .ply file")
    ext = p.suffix.lower()
    if ext == ".npy":
        v = load_npy(p, what="target mesh").astype(np.float64)
    elif ext == ".obj":  # read 'v' lines in file order (mesh libraries may reorder vertices)
        rows = []
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("v "):
                parts = line.split()
                try:
                    rows.append([float(parts[1]), float(parts[2]), float(parts[3])])
                except (IndexError, ValueError):
                    raise ValueError(f"target mesh {p} has a malformed vertex line: {line[:60]!r}") from None
        v = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    elif ext == ".ply":
        import trimesh

        try:
            v = np.asarray(trimesh.load(p, process=False, maintain_order=True).vertices, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - trimesh raises many types for broken files
            raise ValueError(f"target mesh {p} could not be read as PLY ({exc})") from None
    else:
        raise ValueError(f"target mesh {p} must be .npy, .obj or .ply")
    if v.shape != (num_vertices, 3):
        raise ValueError(f"target mesh {p} has shape {list(v.shape)}; it must have the FLAME model's {num_vertices} "
                         "vertices in FLAME order ([V, 3])")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"target mesh {p} contains NaN or infinite coordinates")
    return v


def resolve_shape_spec(spec: Optional[str], templates: Optional[str | Path] = None):
    """`--shape` -> "keep" | None (zero) | float64 [300] vector.

    `spec`: keep, zero, a subject ID from the templates file (e.g. M003), or a `.npy` 300-vector file.
    """
    from probtalk3d_cli.io import load_npy

    s = (spec or "keep").strip()
    if s == "keep":
        return "keep"
    if s == "zero":
        return None
    if s.lower().endswith(".npy"):
        a = load_npy(s, what="shape").astype(np.float64).reshape(-1)
        if a.shape != (N_SHAPE,):
            raise ValueError(f"shape file {s} must hold 300 FLAME shape coefficients, got {a.size} values")
        return a
    if templates is None:
        raise ValueError(f"--shape {s}: a subject's shape needs --templates FILE.pkl (templates_mead_param.pkl); "
                         "or use --shape zero|keep|FILE.npy")
    table = load_templates(templates)
    if s not in table:
        some = ", ".join(sorted(table)[:6])
        raise ValueError(f"subject {s!r} is not in {templates} (it has {len(table)} subjects, e.g. {some})")
    return table[s]


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY: float32 x y z per vertex, uchar-count int32 triangles."""
    v = np.ascontiguousarray(verts, dtype="<f4")
    f = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    f["n"] = 3
    f["i"] = faces
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\nproperty float y\n"
              f"property float z\nelement face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(v.tobytes())
        fh.write(f.tobytes())


def write_obj(path: Path, verts: np.ndarray, faces_text: str) -> None:
    """Wavefront OBJ with the given (precomputed, 1-based) face block."""
    with open(path, "w", encoding="ascii") as fh:
        np.savetxt(fh, np.asarray(verts, dtype=np.float64), fmt="v %.6f %.6f %.6f")
        fh.write(faces_text)


def _frame_name(i: int, fmt: str) -> str:
    return f"frame_{i:06d}.{fmt}"


def to_vertices(inputs, out_dir: str | Path, flame, *, shape: Optional[str] = None,
                templates: Optional[str | Path] = None, fmt: str = "npy", target_mesh: Optional[str | Path] = None,
                device=None) -> ToVerticesOutput:
    """`probtalk3d to-vertices`: params / motion files -> FLAME vertices in metres.

    Outputs (names keep the input stem): `npy` -> `OUT/<stem>_verts.npy` `[T, V, 3]` float32; `obj` / `ply` ->
    `OUT/<stem>/frame_000000.obj` ... one mesh per frame. Every input is validated before anything is written; each
    output appears atomically; outputs that already exist and are complete are skipped (reruns resume).

    Args:
        inputs: `.npy` files and/or folders of them ([1, T, 403] params or [T, 53] motion).
        flame: FlameModel. shape: keep (default) | zero | SUBJECT (needs `templates`) | FILE.npy.
        target_mesh: `.npy`/`.obj`/`.ply` neutral mesh with FLAME's vertex count: output = target +
            FLAME(0, exp, jaw) - FLAME(0) (reference §8.5); incompatible with `shape`.
        device: torch device for the conversion.
    """
    import shutil
    import tempfile
    import time

    from probtalk3d_cli.io import TMP_MARK, atomic_path, ensure_dir, explain_os_error
    from probtalk3d_cli.ui import progress

    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; use npy, obj or ply")
    if target_mesh is not None and shape is not None:
        raise ValueError("--target-mesh replaces the identity itself; drop --shape (or drop --target-mesh)")
    files = expand_inputs(inputs)
    conv = FlameConverter(flame, device=device)
    shape_v = resolve_shape_spec(shape, templates) if target_mesh is None else None
    target = load_target_mesh(target_mesh, conv.num_vertices) if target_mesh is not None else None
    anims = []
    for f in files:  # validate all inputs first: a bad file stops the run before any output is written
        a = load_animation(f)
        if a.kind == "vertices":
            raise ValueError(f"{f} already holds vertices (shape {list(a.data.shape)}); to-vertices converts "
                             "[1, T, 403] params or [T, 53] motion")
        anims.append(a)
    out_dir = ensure_dir(out_dir)
    faces_text = None
    written, skipped, frames = [], [], 0
    n = conv.num_vertices
    for a in progress(anims, total=len(anims), desc="to-vertices", unit="file"):
        t = a.frames
        if a.kind == "params":
            sh, exp, jaw = split_params(a.data)
            shp = sh if isinstance(shape_v, str) else shape_v
        else:
            exp, jaw = split_motion(a.data)
            shp = None if isinstance(shape_v, str) else shape_v  # motion carries no identity: keep = zero
        if fmt == "npy":
            dest = out_dir / f"{a.path.stem}{VERTS_SUFFIX}.npy"
            if dest.exists() and is_valid_vertices_file(dest, t, n):
                skipped.append(dest)
                continue
            with atomic_path(dest) as tmp:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(t, n, 3))
                if target is not None:
                    transfer_motion(exp, jaw, target, conv, out=mm)
                else:
                    conv.vertices(exp, jaw, shp, out=mm)
                mm.flush()
                del mm
            written.append(dest)
        else:
            dest = out_dir / a.path.stem
            if dest.is_dir():
                names = {q.name for q in dest.iterdir()}
                if all(_frame_name(i, fmt) in names for i in range(t)):
                    skipped.append(dest)
                    continue
                raise ValueError(f"output folder {dest} exists but does not hold the {t} frames of {a.path.name}; "
                                 "remove it and rerun")
            if fmt == "obj" and faces_text is None:
                faces_text = "".join(f"f {i + 1} {j + 1} {k + 1}\n" for i, j, k in conv.faces)
            tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}{TMP_MARK}", dir=out_dir))
            try:
                if target is not None:
                    chunks = iter([transfer_motion(exp, jaw, target, conv)])
                else:
                    chunks = (c.cpu().numpy() for c in conv.iter_vertices(exp, jaw, shp))
                i = 0
                for chunk in chunks:
                    for v in chunk:
                        if fmt == "ply":
                            write_ply(tmp_dir / _frame_name(i, fmt), v, conv.faces)
                        else:
                            write_obj(tmp_dir / _frame_name(i, fmt), v, faces_text)
                        i += 1
                os.replace(tmp_dir, dest)
            except BaseException as exc:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                if isinstance(exc, OSError):
                    raise explain_os_error(exc, dest) from exc
                raise
            written.append(dest)
        frames += t
    return ToVerticesOutput(written=written, skipped=skipped, frames=frames, seconds=time.perf_counter() - t0)
