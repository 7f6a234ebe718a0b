"""FLAME parameters -> vertices: safe loading of `generic_model.pkl` (or the built-in demo head) and a fast converter.

Reference §9: FLAME 2020, 300 shape + 100 expression coefficients, jaw pose (axis-angle); global, neck and eye pose
are zero in ProbTalk3D. The converter reproduces smplx's `lbs()` for that case exactly, but folds the expression and
jaw pose-corrective blend shapes into one matrix product and rotates only the vertices the jaw moves.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from probtalk3d_cli.data.schema import N_EXP, N_EXP_USED, N_JAW, N_PARAMS, N_SHAPE, NFEATS

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

ENV_VAR = "PROBTALK3D_FLAME_MODEL"
CONFIG_KEY = "paths.flame_model"
DEMO = "demo"
FLAME_URL = "https://flame.is.tue.mpg.de"
DEFAULT_LOCATIONS = (
    "~/.cache/probtalk3d/flame/generic_model.pkl",
    "~/.local/share/probtalk3d/flame/generic_model.pkl",
    "/usr/share/probtalk3d/flame/generic_model.pkl",
)
JAW = 2  # joint order of FLAME: root, neck, jaw, left eye, right eye
N_JOINTS = 5
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


def _how_to_get() -> str:
    return (f"download FLAME 2020 (generic_model.pkl) from {FLAME_URL} and pass it with --flame-model PATH, the config "
            f"key {CONFIG_KEY} or the environment variable {ENV_VAR}; or use --flame-model demo for the built-in head")


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


@dataclass
class FlameModel:
    """FLAME arrays in smplx's layout (float64 numpy).

    Attributes:
        v_template: [V, 3] template mesh, metres.
        shapedirs: [V, 3, 300] identity blend shapes.
        expdirs: [V, 3, 100] expression blend shapes.
        posedirs: [36, V*3] pose-corrective blend shapes (rows: (R_j - I) of joints 1..4, row-major).
        J_regressor: [5, V] joint regressor.
        weights: [V, 5] skinning weights.
        parents: [5] int64 kinematic tree, parents[0] = -1.
        faces: [F, 3] int64 triangles.
        source: file path, or "demo".
        lip_idx / upper_idx: built-in region lists (demo head only), int64.
    """

    v_template: np.ndarray
    shapedirs: np.ndarray
    expdirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    source: str
    lip_idx: Optional[np.ndarray] = None
    upper_idx: Optional[np.ndarray] = None

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def is_demo(self) -> bool:
        return self.source == DEMO


def flame_from_dict(d: dict, source: str) -> FlameModel:
    """Validate a FLAME-format dict (numpy arrays) and build a FlameModel.

    Raises:
        ValueError: one line naming the missing key or wrong shape and the expected file.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{source} is not a FLAME model (expected a dict of arrays, got {type(d).__name__}); "
                         + _how_to_get())
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ValueError(f"{source} is not a FLAME model (missing {', '.join(missing)}); " + _how_to_get())

    def arr(key, ndim):
        try:
            a = np.asarray(d[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{source} is not a FLAME model ({key} is not numeric); " + _how_to_get()) from None
        if a.ndim != ndim:
            raise ValueError(f"{source} is not a FLAME model ({key} has shape {list(a.shape)}); " + _how_to_get())
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{source} is not a usable FLAME model ({key} contains NaN or Inf); " + _how_to_get())
        return a

    v = arr("v_template", 2)
    n = v.shape[0]

    def bad(key, shape, want):
        return ValueError(f"{source} is not a FLAME model ({key} has shape {list(shape)}, expected {want}); "
                          + _how_to_get())

    if v.shape[1] != 3 or n < 3:
        raise bad("v_template", v.shape, "[V, 3]")
    sd = arr("shapedirs", 3)
    if sd.shape[:2] != (n, 3) or sd.shape[2] < N_SHAPE + N_EXP:
        raise bad("shapedirs", sd.shape, f"[{n}, 3, 400] (300 shape + 100 expression)")
    pd = np.asarray(d["posedirs"], dtype=np.float64)
    if pd.shape not in ((n, 3, 36), (n * 3, 36)):
        raise bad("posedirs", pd.shape, f"[{n}, 3, 36]")
    if not np.all(np.isfinite(pd)):
        raise ValueError(f"{source} is not a usable FLAME model (posedirs contains NaN or Inf); " + _how_to_get())
    jr = arr("J_regressor", 2)
    if jr.shape != (N_JOINTS, n):
        raise bad("J_regressor", jr.shape, f"[5, {n}]")
    w = arr("weights", 2)
    if w.shape != (n, N_JOINTS):
        raise bad("weights", w.shape, f"[{n}, 5]")
    kt = np.asarray(d["kintree_table"])
    if kt.shape != (2, N_JOINTS):
        raise bad("kintree_table", kt.shape, "[2, 5]")
    f = np.asarray(d["f"])
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer) or f.size == 0:
        raise bad("f", f.shape, "[F, 3] integer triangles")
    if f.min() < 0 or f.max() >= n:
        raise ValueError(f"{source} is not a FLAME model (faces index vertices outside 0..{n - 1}); " + _how_to_get())
    parents = kt[0].astype(np.int64)
    parents[0] = -1
    if list(parents[1:]) != [0, 1, 1, 1]:
        raise ValueError(f"{source} is not a FLAME model (kinematic tree {list(parents)} is not root/neck/jaw/eyes); "
                         + _how_to_get())

    def region(key):
        if key not in d:
            return None
        idx = np.asarray(d[key], dtype=np.int64).ravel()
        return idx if idx.size and idx.min() >= 0 and idx.max() < n else None

    return FlameModel(
        v_template=v, shapedirs=sd[:, :, :N_SHAPE].copy(), expdirs=sd[:, :, N_SHAPE:N_SHAPE + N_EXP].copy(),
        posedirs=pd.reshape(-1, 36).T.copy(), J_regressor=jr, weights=w, parents=parents,
        faces=f.astype(np.int64), source=source, lip_idx=region("lip_region_idx"),
        upper_idx=region("upper_face_region_idx"),
    )


# --------------------------------------------------------------------------------------------------------
# Finding and loading
# --------------------------------------------------------------------------------------------------------


def flame_search_locations(explicit: Optional[str] = None, config_value: Optional[str] = None) -> list[tuple]:
    """Where a FLAME model is looked for, in priority order: [(label, path, exists)].

    Labels: "--flame-model", "config paths.flame_model", "env PROBTALK3D_FLAME_MODEL", "default". The value `demo`
    (the built-in head) always "exists".
    """
    rows = []
    for label, value in (("--flame-model", explicit), (f"config {CONFIG_KEY}", config_value),
                         (f"env {ENV_VAR}", os.environ.get(ENV_VAR))):
        if value is None or str(value).strip() == "":
            continue
        value = str(value).strip()
        if value == DEMO:
            rows.append((label, DEMO, True))
        else:
            p = Path(value).expanduser()
            rows.append((label, str(p), p.is_file()))
    for loc in DEFAULT_LOCATIONS:
        p = Path(loc).expanduser()
        rows.append(("default", str(p), p.is_file()))
    return rows


def resolve_flame_source(explicit: Optional[str] = None, config_value: Optional[str] = None) -> str:
    """The FLAME model to use: `demo` or an existing file path (first given of flag, config, env, then defaults).

    A value given by flag/config/env that does not exist is an error (never silently skipped).

    Raises:
        FileNotFoundError: nothing usable; the message names the file, where to download it and how to pass it.
        ValueError: `explicit` (the --flame-model flag) is given but empty, e.g. an unset shell variable.
    """
    if explicit is not None and str(explicit).strip() == "":
        raise ValueError("--flame-model is empty; pass the path of FLAME 2020 generic_model.pkl or demo (an empty "
                         "value is not taken as 'look elsewhere')")
    for label, path, exists in flame_search_locations(explicit, config_value):
        if label == "default":
            if exists:
                return path
            continue
        if exists:
            return path
        raise FileNotFoundError(f"FLAME model {path} (from {label}) does not exist; " + _how_to_get())
    looked = ", ".join(p for label, p, _ in flame_search_locations() if label == "default")
    raise FileNotFoundError(f"no FLAME model found (looked in {looked}); " + _how_to_get())


def load_flame(explicit: Optional[str] = None, config_value: Optional[str] = None) -> FlameModel:
    """Resolve (see `resolve_flame_source`) and load a FLAME model, or the built-in demo head for `demo`.

    Loading goes through the restricted unpickler: chumpy arrays and sparse matrices become numpy, nothing is executed.
    """
    source = resolve_flame_source(explicit, config_value)
    if source == DEMO:
        return load_demo_flame()
    return load_flame_file(source)


@functools.lru_cache(maxsize=1)
def load_demo_flame() -> FlameModel:
    """The built-in procedural head (`--flame-model demo`), generated once per process."""
    from probtalk3d_cli.demo_head import demo_head_dict

    return flame_from_dict(demo_head_dict(), DEMO)


def load_flame_file(path: str | Path) -> FlameModel:
    """Load and validate a FLAME `generic_model.pkl` (or a file written by `write_demo_head`).

    Raises:
        FileNotFoundError: missing file. ValueError: empty, unreadable, unsafe or not a FLAME model.
    """
    from probtalk3d_cli.safe_pickle import safe_load_pickle

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"FLAME model {p} does not exist or is not a file; " + _how_to_get())
    if p.stat().st_size == 0:
        raise ValueError(f"FLAME model {p} is empty (0 bytes); " + _how_to_get())
    st = p.stat()
    return _load_flame_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _load_flame_cached(path: str, mtime_ns: int, size: int) -> FlameModel:
    from probtalk3d_cli.safe_pickle import safe_load_pickle

    try:
        d = safe_load_pickle(path, what="FLAME model")
    except ValueError as exc:
        raise type(exc)(f"{exc}; " + _how_to_get()) from None  # keeps UnsafePickleError recognisable
    return flame_from_dict(d, path)


# --------------------------------------------------------------------------------------------------------
# Regions (lip / upper face vertex lists, reference §1.6)
# --------------------------------------------------------------------------------------------------------


def read_region_file(path: str | Path, num_vertices: Optional[int] = None) -> np.ndarray:
    """Read a region file like the official `lve.txt` / `fdd.txt`: comma-separated vertex indices (int64, sorted)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"region file {p} does not exist; pass --regions-dir with lve.txt and fdd.txt")
    text = p.read_text(encoding="utf-8", errors="replace").replace("\n", ",").replace(" ", "")
    try:
        idx = np.array([int(t) for t in text.split(",") if t.strip() != ""], dtype=np.int64)
    except ValueError:
        raise ValueError(f"region file {p} must hold comma-separated vertex indices (like lve.txt)") from None
    if idx.size == 0:
        raise ValueError(f"region file {p} is empty; it must hold comma-separated vertex indices")
    if idx.min() < 0 or (num_vertices is not None and idx.max() >= num_vertices):
        raise ValueError(f"region file {p} has indices outside 0..{(num_vertices or 1) - 1}; it does not match the "
                         f"FLAME model in use ({num_vertices} vertices)")
    return np.unique(idx)


def load_regions(regions_dir: Optional[str | Path] = None, flame: Optional[FlameModel] = None):
    """Lip and upper-face vertex indices: (lip_idx, upper_idx), int64 arrays.

    From `regions_dir/lve.txt` and `regions_dir/fdd.txt` when given (the official files for real FLAME), else the
    demo head's built-in lists.

    Raises:
        ValueError / FileNotFoundError: no regions for a real FLAME model without `regions_dir`, or bad files.
    """
    n = flame.num_vertices if flame is not None else None
    if regions_dir is not None:
        d = Path(regions_dir)
        if not d.is_dir():
            raise FileNotFoundError(f"regions folder {d} does not exist; pass a folder holding lve.txt and fdd.txt")
        return read_region_file(d / "lve.txt", n), read_region_file(d / "fdd.txt", n)
    if flame is not None and flame.lip_idx is not None and flame.upper_idx is not None:
        return flame.lip_idx.copy(), flame.upper_idx.copy()
    raise ValueError("no lip/upper-face region lists for this FLAME model; pass --regions-dir DIR with the official "
                     "lve.txt and fdd.txt (ProbTalk3D datasets/regions), or use --flame-model demo")


# --------------------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------------------


def rodrigues(aa: "torch.Tensor") -> "torch.Tensor":
    """Axis-angle [N, 3] -> rotation matrices [N, 3, 3] (stable at zero angle)."""
    import torch

    theta2 = (aa * aa).sum(-1, keepdim=True)  # [N, 1]
    theta = theta2.sqrt()
    small = theta2 < 1e-8
    safe = torch.where(small, torch.ones_like(theta), theta)
    s = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(safe) / safe)  # sin(t)/t
    c = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(safe)) / (safe * safe))  # (1-cos t)/t^2
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + s[..., None] * k + c[..., None] * torch.bmm(k, k)


class FlameConverter:
    """FLAME(shape, expression, jaw) -> vertices on any device, in chunks, with the pose fixed except the jaw.

    Equal to smplx `lbs()` with global, neck and eye rotations zero (reference §9):
    v = T + S.shape + E.exp + P_jaw.vec(R_jaw - I), then v' = v + w_jaw (R_jaw - I)(v - J_jaw) for the vertices with
    jaw weight (all other joint transforms are the identity); J_jaw = J_regressor[jaw] . (T + S.shape + E.exp).

    Args:
        flame: the model (see `load_flame`).
        device: torch device (default CPU).
        dtype: computation and output dtype (float32 default; float64 for golden checks).
        chunk_size: frames per matrix product (bounds the scratch memory: about 120 KB per frame in float32).
    """

    def __init__(self, flame: FlameModel, device=None, dtype=None, chunk_size: int = 1024):
        import torch

        self.flame = flame
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.float32
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        n = flame.num_vertices
        t = functools.partial(torch.as_tensor, dtype=self.dtype, device=self.device)
        wsum = flame.weights.sum(1)
        self._scale = None if np.allclose(wsum, 1.0, atol=1e-6) else t(wsum).repeat_interleave(3)  # [V*3]
        jaw_w = flame.weights[:, JAW]
        self.jaw_idx_np = np.flatnonzero(jaw_w != 0.0)
        self.jaw_idx = torch.as_tensor(self.jaw_idx_np, device=self.device)
        wj = jaw_w[self.jaw_idx_np][:, None]  # [NJ, 1]: folded into the jaw bases below (w (R - I)(v - J) is linear)
        # Contiguous runs of jaw vertices: adding into a few slices is much faster than a scatter (index_add).
        breaks = np.flatnonzero(np.diff(self.jaw_idx_np) != 1) + 1
        starts = np.concatenate([[0], breaks]).astype(int)
        stops = np.concatenate([breaks, [len(self.jaw_idx_np)]]).astype(int)
        self._jaw_runs = [(int(self.jaw_idx_np[a]), int(self.jaw_idx_np[a]) + int(b - a), int(a), int(b))
                          for a, b in zip(starts, stops)]
        if len(starts) > 64 and len(self.jaw_idx_np) < 2.5 * len(starts):
            self._jaw_runs = None  # many short runs: one scatter is faster
        self.faces = flame.faces
        jr_jaw = flame.J_regressor[JAW]  # [V]
        cols = (self.jaw_idx_np[:, None] * 3 + np.arange(3)).ravel()
        # Basis of all vertex offsets: rows = 100 expression components, then the 9 jaw pose features.
        exp_rows = flame.expdirs.transpose(2, 0, 1).reshape(N_EXP, n * 3)  # [100, V*3]
        pose_rows = flame.posedirs[(JAW - 1) * 9:JAW * 9]  # [9, V*3]
        basis = np.concatenate([exp_rows, pose_rows], 0)  # [109, V*3]
        # The jaw joint moves with the expression (it is regressed from the shaped mesh): J = J0 + exp . EJ.
        ej = np.einsum("v,vck->kc", jr_jaw, flame.expdirs)  # [100, 3]
        # Offsets of jaw vertices from the jaw joint: same products, minus the joint's own motion.
        jb = basis[:, cols].reshape(-1, len(cols) // 3, 3).copy()  # [109, NJ, 3]
        jb[:N_EXP] -= ej[:, None, :]
        jb *= wj[None]
        self._basis = t(basis)
        self._jaw_basis = t(jb.reshape(basis.shape[0], -1))
        self._shape_basis = t(flame.shapedirs.transpose(2, 0, 1).reshape(N_SHAPE, n * 3))  # [300, V*3]
        sj_joint = np.einsum("v,vck->kc", jr_jaw, flame.shapedirs)  # [300, 3]: how identity moves the jaw joint
        sj = (flame.shapedirs[self.jaw_idx_np].transpose(2, 0, 1) - sj_joint[:, None]) * wj[None]
        self._shape_jaw_basis = t(sj.reshape(N_SHAPE, -1))  # [300, NJ*3]
        self._template = t(flame.v_template.reshape(-1))
        self._template_jaw = t(((flame.v_template[self.jaw_idx_np] - jr_jaw @ flame.v_template) * wj).reshape(-1))
        self._scratch: dict = {}
        self._shape_cache: dict = {}
        if self._scale is not None:
            self._basis_scaled = self._basis * self._scale
            self._shape_basis_scaled = self._shape_basis * self._scale
        else:
            self._basis_scaled, self._shape_basis_scaled = self._basis, self._shape_basis

    @property
    def num_vertices(self) -> int:
        return self.flame.num_vertices

    # ---- inputs ---------------------------------------------------------------------------------------
    def _tensor(self, x, name, cols):
        import torch

        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if x.ndim == 1 and cols is not None and x.shape[0] == cols:
            x = x[None]
        if x.ndim != 2 or (cols is not None and x.shape[1] != cols):
            raise ValueError(f"{name} must have shape [T, {cols}], got {list(x.shape)}")
        return x

    def _prepare(self, exp, jaw, shape):
        import torch

        exp = self._tensor(exp, "exp", None)
        if exp.shape[1] > N_EXP:
            raise ValueError(f"exp must have at most {N_EXP} columns, got {exp.shape[1]}")
        if exp.shape[1] < N_EXP:  # motion files carry 50; the rest are zero (reference §1.3)
            exp = torch.nn.functional.pad(exp, (0, N_EXP - exp.shape[1]))
        jaw = self._tensor(jaw, "jaw", N_JAW)
        if jaw.shape[0] != exp.shape[0]:
            raise ValueError(f"exp has {exp.shape[0]} frames but jaw has {jaw.shape[0]}")
        if shape is not None:
            shape = self._tensor(shape, "shape", N_SHAPE)
            if shape.shape[0] not in (1, exp.shape[0]):
                raise ValueError(f"shape must be [300] or [T, 300] with T = {exp.shape[0]}, got {list(shape.shape)}")
            if shape.shape[0] > 1 and bool((shape == shape[:1]).all()):
                shape = shape[:1]
        return exp, jaw, shape

    # ---- outputs --------------------------------------------------------------------------------------
    def neutral(self, shape=None) -> "torch.Tensor":
        """FLAME(shape, 0, 0): [V, 3]."""
        import torch

        v = self._template.clone()
        if shape is not None:
            s = self._tensor(shape, "shape", N_SHAPE)[:1]
            v = v + (s @ self._shape_basis)[0]
        if self._scale is not None:
            v = v * self._scale
        return v.view(-1, 3)

    def iter_vertices(self, exp, jaw, shape=None, chunk_size: Optional[int] = None) -> Iterator["torch.Tensor"]:
        """Yield vertices chunk by chunk: tensors [t, V, 3] (t <= chunk_size) covering all T frames in order.

        The yielded tensor is a reused buffer: copy it before asking for the next chunk.

        Args:
            exp: [T, <=100] expression coefficients (missing columns are zero).
            jaw: [T, 3] jaw axis-angle, radians.
            shape: None (zero), [300] or [T, 300] identity coefficients.
        """
        exp, jaw, shape = self._prepare(exp, jaw, shape)
        cs = min(chunk_size or self.chunk_size, max(1, exp.shape[0]))
        buf = None
        for s in range(0, exp.shape[0], cs):
            e = min(exp.shape[0], s + cs)
            if buf is None:
                import torch

                buf = torch.empty((cs, self.num_vertices * 3), dtype=self.dtype, device=self.device)
            out = buf[:e - s]
            self._chunk(exp, jaw, shape, s, e, out)
            yield out.view(e - s, self.num_vertices, 3)

    def _chunk(self, exp, jaw, shape, s: int, e: int, out: "torch.Tensor") -> None:
        """Write frames s..e into `out` [e - s, V*3] (no large temporaries: page faults cost more than the maths)."""
        import torch

        t = e - s
        if self._scratch.get("rows", 0) < t:  # grown on demand, reused across calls and the last short chunk
            nj = len(self.jaw_idx_np)
            self._scratch = {"rows": t,
                             "coef": torch.empty((t, self._basis.shape[0]), dtype=self.dtype, device=self.device),
                             "d": torch.empty((t, nj * 3), dtype=self.dtype, device=self.device),
                             "r": torch.empty((t, nj, 3), dtype=self.dtype, device=self.device)}
        scratch = {k: v[:t] for k, v in self._scratch.items() if k != "rows"}
        per_frame_shape = shape is not None and shape.shape[0] > 1
        base, base_j = self._template, self._template_jaw
        if shape is not None and not per_frame_shape:
            base, base_j = self._shaped_bases(shape)
        base_scaled = base * self._scale if self._scale is not None else base
        with torch.no_grad():
            m = rodrigues(jaw[s:e])
            m.diagonal(dim1=1, dim2=2).sub_(1.0)  # R - I
            coef = scratch["coef"]
            coef[:, :N_EXP] = exp[s:e]
            coef[:, N_EXP:] = m.reshape(-1, 9)
            torch.addmm(base_scaled, coef, self._basis_scaled, out=out)
            if per_frame_shape:
                out.addmm_(shape[s:e], self._shape_basis_scaled)
            nj = len(self.jaw_idx_np)
            if nj:
                d = torch.addmm(base_j, coef, self._jaw_basis, out=scratch["d"])  # w (v - J_jaw), jaw vertices
                if per_frame_shape:
                    d.addmm_(shape[s:e], self._shape_jaw_basis)
                r = torch.bmm(d.view(e - s, nj, 3), m.transpose(1, 2), out=scratch["r"])  # w (R - I)(v - J)
                out3 = out.view(e - s, -1, 3)
                if self._jaw_runs is None:
                    out3.index_add_(1, self.jaw_idx, r)
                else:
                    for v0, v1, r0, r1 in self._jaw_runs:
                        out3[:, v0:v1].add_(r[:, r0:r1])

    def _shaped_bases(self, shape):
        key = shape.cpu().numpy().tobytes()
        if self._shape_cache.get("key") != key:
            self._shape_cache = {"key": key, "base": self._template + (shape @ self._shape_basis)[0],
                                 "base_j": self._template_jaw + (shape @ self._shape_jaw_basis)[0]}
        return self._shape_cache["base"], self._shape_cache["base_j"]

    def forward(self, exp, jaw, shape=None) -> "torch.Tensor":
        """All frames at once: a new [T, V, 3] tensor on the converter's device (see `iter_vertices`)."""
        import torch

        exp, jaw, shape = self._prepare(exp, jaw, shape)
        out = torch.empty((exp.shape[0], self.num_vertices * 3), dtype=self.dtype, device=self.device)
        for s in range(0, exp.shape[0], self.chunk_size):
            e = min(exp.shape[0], s + self.chunk_size)
            self._chunk(exp, jaw, shape, s, e, out[s:e])
        return out.view(-1, self.num_vertices, 3)

    __call__ = forward

    def vertices(self, exp, jaw, shape=None, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Like `forward` but fills a numpy `[T, V, 3]` array (float32, or float64 for a float64 converter).

        `out` may be a preallocated array or a memory map (e.g. `np.lib.format.open_memmap`) so that any number of
        frames is converted with bounded memory.
        """
        import torch

        exp, jaw, shape = self._prepare(exp, jaw, shape)
        n_t, n = exp.shape[0], self.num_vertices
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        if out is None:
            out = np.empty((n_t, n, 3), dtype=np_dtype)
        elif out.shape != (n_t, n, 3) or out.dtype != np_dtype:
            raise ValueError(f"out must be {np.dtype(np_dtype).name} with shape {[n_t, n, 3]}, got "
                             f"{out.dtype.name} {list(out.shape)}")
        direct = self.device.type == "cpu" and out.flags.c_contiguous and out.flags.writeable
        buf = None
        for s in range(0, n_t, self.chunk_size):
            e = min(n_t, s + self.chunk_size)
            if direct:
                self._chunk(exp, jaw, shape, s, e, torch.from_numpy(out[s:e]).view(e - s, n * 3))
            else:
                if buf is None:
                    buf = torch.empty((min(self.chunk_size, n_t), n * 3), dtype=self.dtype, device=self.device)
                self._chunk(exp, jaw, shape, s, e, buf[:e - s])
                out[s:e] = buf[:e - s].view(e - s, n, 3).cpu().numpy()
        return out


# --------------------------------------------------------------------------------------------------------
# Params / motion helpers
# --------------------------------------------------------------------------------------------------------


def split_params(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[1, T, 403] or [T, 403] params -> (shape [T, 300], exp [T, 100], jaw [T, 3])."""
    p = np.asarray(params)
    if p.ndim == 3 and p.shape[0] == 1:
        p = p[0]
    if p.ndim != 2 or p.shape[1] != N_PARAMS:
        raise ValueError(f"params must have shape [1, T, 403] or [T, 403], got {list(np.shape(params))}")
    return p[:, :N_SHAPE], p[:, N_SHAPE:N_SHAPE + N_EXP], p[:, N_SHAPE + N_EXP:]


def split_motion(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, 53] denormalised motion -> (exp [T, 50], jaw [T, 3])."""
    m = np.asarray(motion)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or m.shape[1] != NFEATS:
        raise ValueError(f"motion must have shape [T, 53], got {list(np.shape(motion))}")
    return m[:, :N_EXP_USED], m[:, N_EXP_USED:]


def as_converter(flame, device=None) -> FlameConverter:
    """`flame` itself when it is a FlameConverter, else a new converter for the FlameModel."""
    return flame if isinstance(flame, FlameConverter) else FlameConverter(flame, device=device)


def params_to_vertices(params: np.ndarray, flame, shape: str | np.ndarray | None = "keep",
                       device=None) -> np.ndarray:
    """FLAME vertices of a params array (reference §8.4): `[1, T, 403]` or `[T, 403]` -> `[T, V, 3]` float32, metres.

    Args:
        params: shape(300) | exp(100) | jaw(3) per frame.
        flame: a FlameModel or a FlameConverter (reused; pass one when converting many files).
        shape: "keep" (as stored), "zero"/None (mean face), or a [300] vector.
        device: torch device when `flame` is a FlameModel.
    """
    conv = as_converter(flame, device)
    sh, exp, jaw = split_params(params)
    if isinstance(shape, str):
        if shape == "keep":
            shape_v = sh
        elif shape == "zero":
            shape_v = None
        else:
            raise ValueError(f"shape must be 'keep', 'zero' or a 300-vector, got {shape!r}")
    else:
        shape_v = None if shape is None else np.asarray(shape, dtype=np.float64).reshape(-1, N_SHAPE)
    return conv.vertices(exp, jaw, shape_v)


def motion_to_vertices(motion: np.ndarray, flame, shape: Optional[np.ndarray] = None, device=None) -> np.ndarray:
    """FLAME vertices of a denormalised `[T, 53]` motion (50 exp + jaw; other coefficients zero) -> `[T, V, 3]`."""
    conv = as_converter(flame, device)
    exp, jaw = split_motion(motion)
    return conv.vertices(exp, jaw, None if shape is None else np.asarray(shape, dtype=np.float64).reshape(-1, N_SHAPE))


def transfer_motion(exp: np.ndarray, jaw: np.ndarray, target: np.ndarray, flame,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Motion transfer to a mesh with FLAME's topology (reference §8.5): target + FLAME(0, exp, jaw) - FLAME(0).

    Args:
        exp: [T, <=100]; jaw: [T, 3]; target: [V, 3] neutral mesh in metres; out: optional [T, V, 3] float32 array
            (or memory map) to fill.
    Returns:
        [T, V, 3] float32.
    """
    conv = as_converter(flame)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (conv.num_vertices, 3):
        raise ValueError(f"target mesh has shape {list(target.shape)}; it must have the FLAME model's "
                         f"{conv.num_vertices} vertices ([V, 3])")
    verts = conv.vertices(exp, jaw, None, out=out)
    offset = (target - conv.neutral(None).cpu().numpy().astype(np.float64)).astype(verts.dtype)
    for s in range(0, len(verts), conv.chunk_size):
        verts[s:s + conv.chunk_size] += offset
    return verts


def load_templates(path: str | Path) -> dict:
    """Per-subject mean shapes from a templates file like the official `templates_mead_param.pkl` (§1.6).

    Returns:
        {subject: float64 [300]}. Legacy torch pickles are read with the restricted loader (weights only).
    """
    from probtalk3d_cli.safe_pickle import safe_load_pickle

    d = safe_load_pickle(path, what="templates file", allow_torch=True)
    if not isinstance(d, dict) or not d:
        raise ValueError(f"templates file {path} must hold a dict subject -> [1, 1, 300] shape (like "
                         "templates_mead_param.pkl)")
    out = {}
    for k, v in d.items():
        a = np.asarray(v, dtype=np.float64).reshape(-1)
        if a.shape != (N_SHAPE,) or not np.all(np.isfinite(a)):
            raise ValueError(f"templates file {path}: entry {k!r} is not a finite 300-vector (shape "
                             f"{list(np.shape(v))}); pass templates_mead_param.pkl, not templates_mead_vert.pkl")
        out[str(k)] = a
    return out
