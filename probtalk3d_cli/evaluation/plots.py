"""PNG figures for `evaluate --plots` (matplotlib Agg, offscreen pyrender for the face heat map).

* `error_heatmap.png` — per-vertex mean error ‖gt − P‖ (mm, frames of all clips pooled, first sample) shown as
  colours on the neutral face, one panel per system, one shared colour scale.
* `curves_<key>.png` — for a few clips: lip opening (mm), jaw opening (rad) and the per-frame mean of the 50
  expression coefficients (the official `animation_curve`) of the ground truth and up to 3 samples per system.
* `metrics_by_emotion.png` — every metric per emotion, bars grouped by system (mm / mm²).
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

from probtalk3d_cli.data.schema import EMOTIONS, FPS, N_EXP_USED
from probtalk3d_cli.evaluation.metrics import METRIC_UNITS, m2_to_mm2, m_to_mm

HEATMAP = "error_heatmap.png"
EMOTION_BARS = "metrics_by_emotion.png"
COLORMAP = "YlOrRd"
PANEL_PIXELS = 384


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def curves_name(key: str) -> str:
    return f"curves_{key}.png"


# --------------------------------------------------------------------------------------------------------
# Heat map on the face
# --------------------------------------------------------------------------------------------------------


def render_heat_panels(per_vertex_m: dict[str, np.ndarray], faces: np.ndarray, neutral: np.ndarray,
                       vmax_mm: float, size: int = PANEL_PIXELS, backend: str = "auto") -> dict[str, np.ndarray]:
    """Render the neutral mesh once per system with per-vertex colours (error in mm on [0, vmax_mm]) -> RGB images."""
    import matplotlib

    from probtalk3d_cli.render import MeshRenderer, frame_camera

    cmap = matplotlib.colormaps[COLORMAP]
    cam = frame_camera(neutral)
    images = {}
    for name, err in per_vertex_m.items():
        colors = cmap(np.clip(err * 1e3 / max(vmax_mm, 1e-12), 0.0, 1.0))[:, :3]
        with MeshRenderer(faces, len(neutral), cam, size=(size, size), color=(1.0, 1.0, 1.0), backend=backend,
                          vertex_colors=colors) as r:
            images[name] = r.render(np.asarray(neutral, dtype=np.float32))
    return images


def heatmap_figure(per_vertex_m: dict[str, np.ndarray], faces: np.ndarray, neutral: np.ndarray) -> bytes:
    """`error_heatmap.png`: one rendered panel per system, shared colour bar in mm."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    vmax = max(float(np.percentile(e, 99)) for e in per_vertex_m.values()) * 1e3
    vmax = vmax if vmax > 0 else 1.0
    images = render_heat_panels(per_vertex_m, faces, neutral, vmax)
    n = len(images)
    fig = _figure(3.2 * n + 1.2, 3.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, img) in zip(axes, images.items()):
        ax.imshow(img)
        ax.set_title(f"{name}\nmean {per_vertex_m[name].mean() * 1e3:.3g} mm", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(ScalarMappable(norm=Normalize(0.0, vmax), cmap=COLORMAP), ax=list(axes), shrink=0.8,
                 label="mean vertex error ‖gt − P‖ (mm)")
    fig.suptitle("Per-vertex mean error on the neutral face (first sample, all frames)", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------------------


def curves_figure(curve: dict) -> bytes:
    """`curves_<key>.png` for one clip (see the module docstring); `curve` as collected by `evaluate`."""
    fig = _figure(9.0, 7.0)
    axes = fig.subplots(3, 1, sharex=True)
    gt_m = curve["gt_motion"]
    t = np.arange(len(gt_m)) / FPS
    rows = (("lip", "lip opening (mm)", lambda lip, m: lip * 1e3),
            ("jaw", "jaw opening (rad)", lambda lip, m: None if m is None else m[..., N_EXP_USED]),
            ("exp", "mean of 50 expression coeff.", lambda lip, m: None if m is None else m[..., :N_EXP_USED].mean(-1)))
    colors = _colors(len(curve["systems"]))
    for ax, (_, label, pick) in zip(axes, rows):
        gt = pick(curve["gt_lip"], gt_m)
        ax.plot(t, gt, color="black", linewidth=2.0, label="ground truth")
        for color, (name, sysc) in zip(colors, curve["systems"].items()):
            ys = pick(sysc["lip"], sysc["motion"])
            if ys is None:
                continue
            for i, y in enumerate(np.atleast_2d(ys)):
                ax.plot(t[:len(y)], y, color=color, linewidth=1.4 if i == 0 else 0.8, alpha=0.9 if i == 0 else 0.45,
                        label=name if i == 0 else None)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{curve['key']}: ground truth vs samples (thick: sample 1)", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------------------------------------
# Bars per emotion
# --------------------------------------------------------------------------------------------------------


def emotion_bars_figure(results: Sequence) -> bytes:
    """`metrics_by_emotion.png`: one panel per metric, emotions on x, one bar per system (mm / mm²)."""
    from probtalk3d_cli.evaluation.report import TABLE_COLUMNS

    emotions = [e for e in EMOTIONS if any(e in r.summary["groups"].get("emotion", {}) for r in results)]
    cols = 4
    rows = math.ceil(len(TABLE_COLUMNS) / cols)
    fig = _figure(4.0 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colors = _colors(len(results))
    width = 0.8 / max(1, len(results))
    x = np.arange(len(emotions))
    for ax, (key, head, unit) in zip(axes, TABLE_COLUMNS):
        conv = m_to_mm if METRIC_UNITS[key] == "m" else m2_to_mm2
        for i, (r, color) in enumerate(zip(results, colors)):
            groups = r.summary["groups"].get("emotion", {})
            vals = [conv(groups[e][key]) if e in groups and groups[e][key] is not None else np.nan for e in emotions]
            ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, color=color, label=r.name)
        ax.set_title(f"{head} ({unit})", fontsize=10)
        ax.set_xticks(x, [e[:4] for e in emotions], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        if key in ("fdd",):
            ax.axhline(0.0, color="black", linewidth=0.6)
    for ax in axes[len(TABLE_COLUMNS):]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    (axes[len(TABLE_COLUMNS)] if len(axes) > len(TABLE_COLUMNS) else fig).legend(handles, labels, loc="center",
                                                                                fontsize=9)
    fig.suptitle("Metrics per emotion", fontsize=11)
    return _png(fig)


# --------------------------------------------------------------------------------------------------------


def make_plots(results: Sequence, curves: Sequence[dict], per_vertex_m: dict[str, np.ndarray], flame,
               neutral: np.ndarray) -> dict[str, bytes]:
    """All figures as {file name: PNG bytes} (nothing is written here).

    Args:
        results: SystemResults (table order).
        curves: per plotted clip: {"key", "gt_motion" [T, 53], "gt_lip" [T] m, "systems": {name: {"motion"
            [n, T, 53] or None, "lip" [n, T] m}}}.
        per_vertex_m: {system: [V] mean vertex error in m} (models and prediction folders).
        flame: the FlameModel (faces). neutral: [V, 3] the all-zero FLAME mesh.
    """
    images: dict[str, bytes] = {}
    if per_vertex_m:
        images[HEATMAP] = heatmap_figure(per_vertex_m, flame.faces, neutral)
    for c in curves:
        images[curves_name(c["key"])] = curves_figure(c)
    images[EMOTION_BARS] = emotion_bars_figure(results)
    return images


def is_png(data: bytes) -> bool:
    """True when `data` starts with the PNG signature."""
    return data[:8] == b"\x89PNG\r\n\x1a\n"


__all__ = ["make_plots", "heatmap_figure", "curves_figure", "emotion_bars_figure", "render_heat_panels",
           "curves_name", "is_png", "HEATMAP", "EMOTION_BARS"]
