"""The six ProbTalk3D evaluation metrics (reference §7) as pure functions, plus a clip-by-clip accumulator.

Inputs are FLAME vertices in metres: ground truth ``gt`` ``[T, V, 3]`` and ``N`` prediction samples
``[N, T, V, 3]`` (numpy or torch, any float dtype, any device). Everything is computed in float64 (on the
tensors' device; on Apple ``mps``, which has no float64, on the CPU). Results are SI: MVE and Diversity in
metres, LVE / MEE / CE / FDD in square metres. ``L`` = lip indices, ``U`` = upper-face indices, ``P`` = the
first prediction sample.

=========  ==========================================================================  ======================
metric     definition (per clip)                                                       pooling over clips
=========  ==========================================================================  ======================
MVE        per frame, mean over all V vertices of ``‖gt − P‖₂`` (not squared)          frames pooled
LVE        per frame, ``max_{v∈L} ‖gt_v − P_v‖₂²`` (squared)                           frames pooled
MEE        LVE between gt and the vertex-wise mean of the N samples                    frames pooled
CE         per-frame LVE of the sample whose summed per-frame LVE is smallest          frames pooled
FDD        ``S(gt) − S(P)``, ``S(V) = mean_{v∈U} std_t(‖V_t,v − R_v‖₂²)``, population   mean over clips
           std (ddof 0), R = reference mesh (FLAME zero pose; FaceDiffuser: template)
FDD_abs    ``|S(gt) − S(P)|`` — not in the official code, reported because the signed   mean over clips
           mean lets under- and over-animated clips cancel (§11.21)
Diversity  seeded shuffle of the N samples, pair k with k + ⌊N/2⌋ (k < ⌊N/2⌋), per pair   mean over clips with
           mean over frames and vertices of ``‖a − b‖₂``, mean over pairs               N ≥ 2
=========  ==========================================================================  ======================

"Frames pooled" means the per-frame values of all clips are averaged together (a long clip weighs more), as
the official ``evaluation.py`` does; FDD and Diversity are averages of per-clip values. N = 10 gives the
official 5 diversity pairs; an odd N leaves the last shuffled sample unpaired; N = 1 makes Diversity not
applicable (``None``, ``diversity_pairs == 0``) instead of crashing like the official script (§11.18).
Like the official script, a ground truth longer than the prediction is cut to the prediction's length; a
prediction longer than its ground truth is an error here (the official code would fail or misalign).

Units for tables: ``m_to_mm`` (×10³) for MVE / Diversity, ``m2_to_mm2`` (×10⁶) for LVE / MEE / CE / FDD.
Papers print squared errors in units of 10⁻⁵ m²: 1 mm² = 10⁻⁶ m² = 0.1 × 10⁻⁵ m², see ``m2_to_1e5_m2``.

Independent implementations compared in the tests (definitional differences, none affect our numbers):

* torchmetrics 1.9.0 ``functional.multimodal.lip_vertex_error(vertices_pred, vertices_gt, mouth_map)`` has
  the same formula (max over lip vertices of the *squared* L2 distance, mean over frames). It cuts *both*
  inputs to the shorter length (here a longer prediction is refused), computes in the input dtype (float32
  stays float32; here float64), and its ``LipVertexError`` module keeps every vertex of every update and
  concatenates them, i.e. it pools frames like this module but with memory growing with the test set.
* torchmetrics has no released FDD ("UpperFaceDynamicsDeviation"): it is only proposed in the open pull
  request Lightning-AI/torchmetrics#3238, as the mean over upper-face vertices of the per-vertex std
  difference — algebraically equal to ``S(gt) − S(P)`` here (signed). Whoever compares against it must check
  the std correction: ``torch.std`` defaults to Bessel's correction (ddof 1), the official code uses NumPy's
  population std (ddof 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor"]
IndexLike = Union[Sequence[int], np.ndarray, "torch.Tensor"]
RngLike = Union[np.random.Generator, int]

#: SI unit of each metric as computed and stored (e.g. in metrics.json).
METRIC_UNITS: dict[str, str] = {
    "mve": "m", "lve": "m^2", "mee": "m^2", "ce": "m^2", "fdd": "m^2", "fdd_abs": "m^2", "diversity": "m",
}
#: Unit of each metric after ``to_display_units`` (tables, plots).
DISPLAY_UNITS: dict[str, str] = {
    "mve": "mm", "lve": "mm^2", "mee": "mm^2", "ce": "mm^2", "fdd": "mm^2", "fdd_abs": "mm^2", "diversity": "mm",
}
#: SI unit of every numeric per-clip column of ``ClipMetrics.to_row()`` that has one.
COLUMN_UNITS: dict[str, str] = {**METRIC_UNITS, "fdd_gt": "m^2", "fdd_pred": "m^2"}


# ----------------------------------------------------------------------------------------------------------
# units


def m_to_mm(value: Optional[float]) -> Optional[float]:
    """Metres → millimetres (×10³), for MVE and Diversity; ``None`` (not applicable) passes through."""
    return None if value is None else value * 1e3


def m2_to_mm2(value: Optional[float]) -> Optional[float]:
    """Square metres → square millimetres (×10⁶), for LVE, MEE, CE and FDD; ``None`` passes through."""
    return None if value is None else value * 1e6


def m2_to_1e5_m2(value: Optional[float]) -> Optional[float]:
    """Square metres → multiples of 10⁻⁵ m² (×10⁵), the papers' convention: 1 mm² = 0.1 × 10⁻⁵ m²."""
    return None if value is None else value * 1e5


def to_display_units(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``metrics`` with every key of ``COLUMN_UNITS`` in mm / mm²; other keys unchanged.

    Args:
        metrics: a dict such as ``ClipMetrics.to_row()`` or one block of ``MetricAccumulator.summary()``.

    Returns:
        A new dict; MVE / Diversity ×10³ (mm), LVE / MEE / CE / FDD / FDD_abs / fdd_gt / fdd_pred ×10⁶ (mm²);
        ``None`` stays ``None``.
    """
    out = dict(metrics)
    for name, unit in COLUMN_UNITS.items():
        if name in out:
            out[name] = m_to_mm(out[name]) if unit == "m" else m2_to_mm2(out[name])
    return out


# ----------------------------------------------------------------------------------------------------------
# input handling


def _compute_device(*arrays: Any) -> "torch.device":
    """The device of the first torch tensor among ``arrays`` (CPU for numpy; mps → CPU, it lacks float64)."""
    import torch

    for a in arrays:
        if isinstance(a, torch.Tensor):
            return torch.device("cpu") if a.device.type == "mps" else a.device
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return _compute_device(a[0])
    return torch.device("cpu")


def _as_f64(x: Any, name: str, device: "torch.device") -> "torch.Tensor":
    """``x`` (numpy array, torch tensor or nested sequence) as a float64 tensor on ``device``."""
    import torch

    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{name} has dtype {a.dtype}; expected a float array of vertex positions in metres.")
        if not a.flags.writeable or not a.flags.c_contiguous:
            a = np.array(a, order="C")  # torch.from_numpy needs a writeable array; copy read-only views
        t = torch.from_numpy(a)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {t.dtype}; expected a float array of vertex positions in metres.")
    t = t.to(device=device, dtype=torch.float64)
    # one reduction instead of an elementwise isfinite: NaN/inf propagate into the sum (only a sum over 1e308,
    # impossible for vertices in metres, could flag finite data)
    if not math.isfinite(float(t.sum())):
        raise ValueError(f"{name} contains NaN or infinite values; check the vertices that produced it.")
    return t


def _check_verts(t: "torch.Tensor", name: str) -> None:
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected [T, V, 3] vertex positions.")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has 0 frames; every clip needs at least one frame.")


def _split_samples(samples: Any) -> list[Any]:
    """``[N, T, V, 3]`` array/tensor, a single ``[T, V, 3]`` prediction, or a sequence of N ``[T, V, 3]``."""
    if isinstance(samples, (list, tuple)) and not samples:
        raise ValueError("samples is empty; pass at least one prediction [T, V, 3].")
    if isinstance(samples, (list, tuple)) and hasattr(samples[0], "shape"):
        return list(samples)
    if not hasattr(samples, "ndim"):
        samples = np.asarray(samples)  # nested lists
    ndim = samples.ndim
    if ndim == 3:
        return [samples]
    if ndim == 4:
        if samples.shape[0] == 0:
            raise ValueError("samples has N = 0; pass at least one prediction [T, V, 3].")
        return [samples[i] for i in range(samples.shape[0])]
    raise ValueError(f"samples has {ndim} dimensions; expected [N, T, V, 3] or one prediction [T, V, 3].")


def _check_lengths(t_gt: int, t_pred: int, v_gt: int, v_pred: int, what: str) -> None:
    if v_pred != v_gt:
        raise ValueError(f"{what} has {v_pred} vertices but the ground truth has {v_gt}; both must use the same "
                         "mesh topology (FLAME: 5023).")
    if t_pred > t_gt:
        raise ValueError(f"{what} has {t_pred} frames but the ground truth only {t_gt}; a prediction may not be "
                         "longer than its ground truth (cut it, or check that both are 25 fps).")


def _indices(idx: Any, num_vertices: int, name: str) -> np.ndarray:
    """Validated 1-D int64 vertex indices (non-empty, unique, in ``[0, num_vertices)``)."""
    import torch

    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    a = np.asarray(idx)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} has shape {a.shape}; expected a non-empty 1-D list of vertex indices.")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {a.dtype}; expected integer vertex indices.")
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= num_vertices:
        raise ValueError(f"{name} holds indices from {a.min()} to {a.max()} but the mesh has {num_vertices} "
                         f"vertices; use index files made for this topology.")
    if np.unique(a).size != a.size:
        raise ValueError(f"{name} contains duplicate vertex indices; each vertex may appear once.")
    return a


def load_region_indices(path: Union[str, Path], num_vertices: Optional[int] = None) -> np.ndarray:
    """Read a region file of comma-separated vertex indices (the official ``lve.txt`` / ``fdd.txt`` format).

    Args:
        path: text file, e.g. ``regions/lve.txt`` (428 lip indices) or ``regions/fdd.txt`` (1,501 upper-face
            indices); commas and/or whitespace separate the integers.
        num_vertices: when given, every index must be below it (FLAME: 5023).

    Returns:
        ``[K]`` int64 indices, in file order.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"region index file {p} does not exist; pass --regions-dir with lve.txt and "
                                f"fdd.txt.")
    tokens = p.read_text(encoding="utf-8").replace(",", " ").split()
    try:
        values = [int(tok) for tok in tokens]
    except ValueError:
        raise ValueError(f"region index file {p} holds a non-integer entry; expected comma-separated vertex "
                         f"indices.") from None
    a = np.asarray(values, dtype=np.int64)
    return _indices(a, num_vertices if num_vertices is not None else int(a.max(initial=-1)) + 1, str(p))


# ----------------------------------------------------------------------------------------------------------
# per-frame kernels on float64 tensors (gt and pred already cut to the same length)


def _vertex_error_frames(gt: "torch.Tensor", pred: "torch.Tensor") -> "torch.Tensor":
    # [T, V, 3] -> [T, V] Euclidean distances -> [T] mean over vertices
    return (gt - pred).norm(dim=-1).mean(dim=1)


def _lip_error_frames(gt: "torch.Tensor", pred: "torch.Tensor", lip: "torch.Tensor") -> "torch.Tensor":
    # [T, L, 3] -> [T, L] squared distances -> [T] max over lip vertices
    return (gt[:, lip] - pred[:, lip]).square().sum(dim=-1).amax(dim=1)


def _upper_dynamics(verts: "torch.Tensor", upper: "torch.Tensor", ref_upper: "torch.Tensor") -> float:
    # [T, U, 3] -> [T, U] squared distance to the reference -> [U] population std over time -> mean
    sq = (verts[:, upper] - ref_upper).square().sum(dim=-1)
    return float(sq.std(dim=0, correction=0).mean())


def _pair_distance(a: "torch.Tensor", b: "torch.Tensor") -> float:
    # mean over frames and vertices of ||a - b||_2
    return float((a - b).norm(dim=-1).mean())


def _diversity_pairs(num_samples: int, rng: RngLike) -> list[tuple[int, int]]:
    """Pairs ``(perm[k], perm[k + N//2])`` for ``k < N//2`` from a seeded permutation; [] when N < 2."""
    half = num_samples // 2
    if half == 0:
        return []
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    perm = gen.permutation(num_samples)
    return [(int(perm[k]), int(perm[k + half])) for k in range(half)]


# ----------------------------------------------------------------------------------------------------------
# single-metric functions (one clip; convenient for tests, notebooks and other tools)


def _prepare_pair(gt: ArrayLike, pred: ArrayLike) -> tuple["torch.Tensor", "torch.Tensor"]:
    device = _compute_device(pred, gt)
    g = _as_f64(gt, "gt", device)
    p = _as_f64(pred, "prediction", device)
    _check_verts(g, "gt")
    _check_verts(p, "prediction")
    _check_lengths(g.shape[0], p.shape[0], g.shape[1], p.shape[1], "the prediction")
    return g[: p.shape[0]], p


def vertex_error_per_frame(gt: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """Per-frame mean vertex error (the MVE term).

    Args:
        gt: ``[T_gt, V, 3]`` ground-truth vertices in metres; cut to ``T`` frames if longer.
        pred: ``[T, V, 3]`` predicted vertices in metres, ``T <= T_gt``.

    Returns:
        ``[T]`` float64, metres: for each frame the mean over all V vertices of ``‖gt − pred‖₂``.
    """
    g, p = _prepare_pair(gt, pred)
    return _vertex_error_frames(g, p).cpu().numpy()


def lip_error_per_frame(gt: ArrayLike, pred: ArrayLike, lip_idx: IndexLike) -> np.ndarray:
    """Per-frame lip vertex error (the LVE / MEE / CE term).

    Args:
        gt: ``[T_gt, V, 3]`` ground-truth vertices in metres; cut to ``T`` frames if longer.
        pred: ``[T, V, 3]`` predicted vertices in metres, ``T <= T_gt``.
        lip_idx: ``[L]`` lip vertex indices (official: 428).

    Returns:
        ``[T]`` float64, m²: for each frame ``max_{v∈L} ‖gt_v − pred_v‖₂²``.
    """
    import torch

    g, p = _prepare_pair(gt, pred)
    lip = torch.as_tensor(_indices(lip_idx, g.shape[1], "lip_idx"), device=g.device)
    return _lip_error_frames(g, p, lip).cpu().numpy()


def mean_vertex_error(gt: ArrayLike, pred: ArrayLike) -> float:
    """MVE of one clip in metres: mean over frames and vertices of ``‖gt − pred‖₂`` (see module table)."""
    return float(vertex_error_per_frame(gt, pred).mean())


def lip_vertex_error(gt: ArrayLike, pred: ArrayLike, lip_idx: IndexLike) -> float:
    """LVE of one clip in m²: mean over frames of ``max_{v∈L} ‖gt_v − pred_v‖₂²`` (see module table)."""
    return float(lip_error_per_frame(gt, pred, lip_idx).mean())


def upper_face_dynamics(verts: ArrayLike, upper_idx: IndexLike, reference: ArrayLike) -> float:
    """``S(V)``, the upper-face dynamics of one sequence (the FDD term, reference §7).

    Args:
        verts: ``[T, V, 3]`` vertices in metres.
        upper_idx: ``[U]`` upper-face vertex indices (official: 1,501).
        reference: ``[V, 3]`` reference mesh in metres (FLAME zero pose; FaceDiffuser: subject template).

    Returns:
        m²: ``mean_{v∈U} std_t(‖V_t,v − R_v‖₂²)`` with the population std (ddof 0); 0 for a single frame.
    """
    import torch

    device = _compute_device(verts, reference)
    v = _as_f64(verts, "verts", device)
    _check_verts(v, "verts")
    ref = _as_f64(reference, "reference", device)
    if tuple(ref.shape) != (v.shape[1], 3):
        raise ValueError(f"reference has shape {tuple(ref.shape)}; expected [{v.shape[1]}, 3] like the vertices.")
    upper = torch.as_tensor(_indices(upper_idx, v.shape[1], "upper_idx"), device=device)
    return _upper_dynamics(v, upper, ref[upper])


def upper_face_dynamics_deviation(gt: ArrayLike, pred: ArrayLike, upper_idx: IndexLike,
                                  reference: ArrayLike) -> float:
    """FDD of one clip in m², signed as the official code: ``S(gt) − S(pred)`` (gt cut to pred's length).

    Positive: the prediction moves the upper face less than the ground truth; negative: more.
    """
    g, p = _prepare_pair(gt, pred)
    return upper_face_dynamics(g, upper_idx, reference) - upper_face_dynamics(p, upper_idx, reference)


def sample_diversity(samples: ArrayLike, rng: RngLike = 0) -> Optional[float]:
    """Diversity of one clip's N samples in metres, or ``None`` when N < 2 (not applicable).

    Args:
        samples: ``[N, T, V, 3]`` (or a sequence of N ``[T, V, 3]``) predicted vertices in metres.
        rng: a ``numpy.random.Generator`` (consumed: one permutation) or an int seed.

    Returns:
        Mean over the ⌊N/2⌋ pairs ``(perm[k], perm[k + ⌊N/2⌋])`` of the mean over frames and vertices of
        ``‖a − b‖₂``; with odd N the last shuffled sample is unused.
    """
    items = _split_samples(samples)
    pairs = _diversity_pairs(len(items), rng)
    if not pairs:
        return None
    device = _compute_device(items)
    first = _as_f64(items[0], "samples[0]", device)
    _check_verts(first, "samples[0]")
    for i, s in enumerate(items):
        if tuple(s.shape) != tuple(first.shape):
            raise ValueError(f"samples[{i}] has shape {tuple(s.shape)} but samples[0] has {tuple(first.shape)}; "
                             "all samples of a clip must have the same shape.")
    values = [_pair_distance(_as_f64(items[a], f"samples[{a}]", device), _as_f64(items[b], f"samples[{b}]", device))
              for a, b in pairs]
    return math.fsum(values) / len(values)


# ----------------------------------------------------------------------------------------------------------
# one clip, all metrics


@dataclass(frozen=True)
class ClipMetrics:
    """All metrics of one clip, with the per-frame sums needed for frame pooling (SI units).

    Attributes:
        frames: frames evaluated (the prediction's length ``T``).
        gt_frames: ground-truth frames before cutting to ``T``.
        num_samples: ``N``.
        mve_sum: Σ over frames of the per-frame MVE term (m · frames); ``mve = mve_sum / frames``.
        lve_sum: Σ over frames of the per-frame lip error of sample 0 (m² · frames).
        mee_sum: Σ over frames of the per-frame lip error of the sample mean (m² · frames).
        ce_sum: Σ over frames of the per-frame lip error of the closest sample (m² · frames).
        ce_sample: index (0-based, input order) of the closest sample; the first one on ties.
        mve, lve, mee, ce: per-clip frame means (m, m², m², m²).
        fdd_gt, fdd_pred: ``S(gt)`` and ``S(P)`` (m²).
        fdd: ``fdd_gt − fdd_pred`` (m², signed as the official code).
        fdd_abs: ``|fdd|`` (m²).
        diversity: m, or ``None`` when N < 2.
        diversity_pairs: number of pairs used (⌊N/2⌋; 0 = not applicable).
    """

    frames: int
    gt_frames: int
    num_samples: int
    mve_sum: float
    lve_sum: float
    mee_sum: float
    ce_sum: float
    ce_sample: int
    mve: float
    lve: float
    mee: float
    ce: float
    fdd_gt: float
    fdd_pred: float
    fdd: float
    fdd_abs: float
    diversity: Optional[float]
    diversity_pairs: int

    @property
    def diversity_applicable(self) -> bool:
        """False when the clip had fewer than two samples."""
        return self.diversity_pairs > 0

    def to_row(self) -> dict[str, Any]:
        """Per-clip values for a CSV row / JSON (SI units; ``diversity`` is ``None`` when not applicable)."""
        row = asdict(self)
        for k in ("mve_sum", "lve_sum", "mee_sum", "ce_sum"):
            del row[k]
        return row


def compute_clip_metrics(gt: ArrayLike, samples: Any, *, lip_idx: IndexLike, upper_idx: IndexLike,
                         reference: ArrayLike, rng: RngLike = 0) -> ClipMetrics:
    """Every metric of one clip (reference §7); memory: the float64 copies of gt, two samples and their mean.

    Args:
        gt: ``[T_gt, V, 3]`` ground-truth vertices in metres (cut to the prediction's length ``T``).
        samples: ``[N, T, V, 3]`` predicted vertices in metres (a single ``[T, V, 3]`` means N = 1; a list of N
            ``[T, V, 3]`` arrays also works). Sample 0 is ``P`` (MVE, LVE, FDD).
        lip_idx: ``[L]`` lip vertex indices (official ``lve.txt``, 428).
        upper_idx: ``[U]`` upper-face vertex indices (official ``fdd.txt``, 1,501).
        reference: ``[V, 3]`` FDD reference mesh in metres (FLAME zero pose; FaceDiffuser: subject template).
        rng: ``numpy.random.Generator`` (one permutation is drawn when N ≥ 2) or int seed, for Diversity.

    Returns:
        ``ClipMetrics`` in SI units.

    Raises:
        ValueError: bad shapes, a prediction longer than the ground truth, different vertex counts,
            out-of-range indices, or non-finite values.
    """
    import torch

    items = _split_samples(samples)
    device = _compute_device(items, gt, reference)
    g = _as_f64(gt, "gt", device)
    _check_verts(g, "gt")
    t_gt, num_v = g.shape[0], g.shape[1]
    shape0 = tuple(items[0].shape)
    if len(shape0) != 3 or shape0[-1] != 3:
        raise ValueError(f"samples[0] has shape {shape0}; expected [T, V, 3] vertex positions.")
    _check_lengths(t_gt, shape0[0], num_v, shape0[1], "the prediction")
    if shape0[0] == 0:
        raise ValueError("the prediction has 0 frames; every clip needs at least one frame.")
    t = shape0[0]
    g = g[:t]  # official behaviour: GT cut to the predicted length
    ref = _as_f64(reference, "reference", device)
    if tuple(ref.shape) != (num_v, 3):
        raise ValueError(f"reference has shape {tuple(ref.shape)}; expected [{num_v}, 3] like the vertices.")
    lip = torch.as_tensor(_indices(lip_idx, num_v, "lip_idx"), device=device)
    upper = torch.as_tensor(_indices(upper_idx, num_v, "upper_idx"), device=device)
    ref_upper = ref[upper]

    total = torch.zeros_like(g)  # running sum of the samples, for MEE
    lip_sums: list[float] = []
    mve_sum = lve_sum = fdd_pred = 0.0
    for i, item in enumerate(items):
        if tuple(item.shape) != shape0:
            raise ValueError(f"samples[{i}] has shape {tuple(item.shape)} but samples[0] has {shape0}; all "
                             "samples of a clip must have the same shape.")
        p = _as_f64(item, f"samples[{i}]", device)
        lip_frames = _lip_error_frames(g, p, lip)
        lip_sum = float(lip_frames.sum())
        lip_sums.append(lip_sum)
        if i == 0:
            mve_sum = float(_vertex_error_frames(g, p).sum())
            lve_sum = lip_sum
            fdd_pred = _upper_dynamics(p, upper, ref_upper)
        total += p
        del p
    n = len(items)
    mee_sum = float(_lip_error_frames(g, total / n, lip).sum())
    del total
    ce_sample = int(np.argmin(lip_sums))  # first minimum on ties
    ce_frames_sum = lip_sums[ce_sample]
    fdd_gt = _upper_dynamics(g, upper, ref_upper)

    pairs = _diversity_pairs(n, rng)
    diversity: Optional[float] = None
    if pairs:
        values = [_pair_distance(_as_f64(items[a], f"samples[{a}]", device), _as_f64(items[b], f"samples[{b}]", device))
                  for a, b in pairs]
        diversity = math.fsum(values) / len(values)

    fdd = fdd_gt - fdd_pred
    return ClipMetrics(
        frames=t, gt_frames=t_gt, num_samples=n,
        mve_sum=mve_sum, lve_sum=lve_sum, mee_sum=mee_sum, ce_sum=ce_frames_sum, ce_sample=ce_sample,
        mve=mve_sum / t, lve=lve_sum / t, mee=mee_sum / t, ce=ce_frames_sum / t,
        fdd_gt=fdd_gt, fdd_pred=fdd_pred, fdd=fdd, fdd_abs=abs(fdd),
        diversity=diversity, diversity_pairs=len(pairs),
    )


# ----------------------------------------------------------------------------------------------------------
# accumulation over clips


class _Totals:
    """Running sums for one group of clips."""

    __slots__ = ("clips", "frames", "mve", "lve", "mee", "ce", "fdd", "fdd_abs", "diversity", "diversity_clips")

    def __init__(self) -> None:
        self.clips = self.frames = self.diversity_clips = 0
        self.mve: list[float] = []
        self.lve: list[float] = []
        self.mee: list[float] = []
        self.ce: list[float] = []
        self.fdd: list[float] = []
        self.fdd_abs: list[float] = []
        self.diversity: list[float] = []

    def add(self, c: ClipMetrics) -> None:
        self.clips += 1
        self.frames += c.frames
        self.mve.append(c.mve_sum)
        self.lve.append(c.lve_sum)
        self.mee.append(c.mee_sum)
        self.ce.append(c.ce_sum)
        self.fdd.append(c.fdd)
        self.fdd_abs.append(c.fdd_abs)
        if c.diversity is not None:
            self.diversity.append(c.diversity)
            self.diversity_clips += 1

    def result(self) -> dict[str, Any]:
        # math.fsum: exactly rounded sums, so the result does not depend on the order clips arrive in
        f, n = self.frames, self.clips
        return {
            "clips": n,
            "frames": f,
            "mve": math.fsum(self.mve) / f,
            "lve": math.fsum(self.lve) / f,
            "mee": math.fsum(self.mee) / f,
            "ce": math.fsum(self.ce) / f,
            "fdd": math.fsum(self.fdd) / n,
            "fdd_abs": math.fsum(self.fdd_abs) / n,
            "diversity": math.fsum(self.diversity) / self.diversity_clips if self.diversity_clips else None,
            "diversity_clips": self.diversity_clips,
        }


class MetricAccumulator:
    """Collects ``ClipMetrics`` clip by clip; pools frames (MVE, LVE, MEE, CE) and averages clips (FDD, Div.).

    Memory per clip is a handful of floats (no vertices are kept). Example::

        acc = MetricAccumulator()
        for key, gt, samples in clips:
            m = compute_clip_metrics(gt, samples, lip_idx=lip, upper_idx=upper, reference=ref, rng=gen)
            acc.add(m, key=key, emotion="angry", intensity="2")
        acc.summary()["overall"]["lve"]          # m², frames of all clips pooled
        acc.summary()["groups"]["emotion"]["angry"]
        acc.rows()                               # one dict per clip
    """

    def __init__(self) -> None:
        self._overall = _Totals()
        self._groups: dict[str, dict[str, _Totals]] = {}
        self._rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return self._overall.clips

    def add(self, clip: ClipMetrics, key: Optional[str] = None, **groups: Any) -> None:
        """Add one clip.

        Args:
            clip: the clip's metrics.
            key: clip identifier for the per-clip row (e.g. ``M003_028_3_2``).
            **groups: breakdown labels, e.g. ``emotion="angry", intensity=2`` (values are stored as ``str``).
        """
        if not isinstance(clip, ClipMetrics):
            raise ValueError(f"MetricAccumulator.add expects ClipMetrics, got {type(clip).__name__}; "
                             "compute it with compute_clip_metrics().")
        row = clip.to_row()
        clash = sorted(set(groups) & (set(row) | {"key"}))
        if clash:
            raise ValueError(f"group name(s) {clash} clash with per-clip columns; use other names such as "
                             "emotion=... or intensity=....")
        self._overall.add(clip)
        labels = {name: str(value) for name, value in groups.items()}
        for name, value in labels.items():
            self._groups.setdefault(name, {}).setdefault(value, _Totals()).add(clip)
        self._rows.append({"key": key, **labels, **row})

    def summary(self) -> dict[str, Any]:
        """Pooled metrics in SI units.

        Returns:
            ``{"overall": block, "groups": {group: {label: block}}, "units": METRIC_UNITS}`` where a block is
            ``{"clips", "frames", "mve", "lve", "mee", "ce", "fdd", "fdd_abs", "diversity", "diversity_clips"}``;
            ``diversity`` is ``None`` when no clip had N ≥ 2. Group labels are sorted.

        Raises:
            ValueError: when no clip was added.
        """
        if self._overall.clips == 0:
            raise ValueError("no clips were evaluated, so there are no metrics; check the split and data paths.")
        return {
            "overall": self._overall.result(),
            "groups": {name: {label: labels[label].result() for label in sorted(labels)}
                       for name, labels in self._groups.items()},
            "units": dict(METRIC_UNITS),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One dict per clip in the order added: ``key``, the group labels, then ``ClipMetrics.to_row()``."""
        return [dict(r) for r in self._rows]
