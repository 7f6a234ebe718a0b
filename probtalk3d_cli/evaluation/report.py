"""What `evaluate` writes and prints: metrics.json (SI units), per_clip.csv, and the comparison tables.

Stored values are SI (m, m²); tables show mm and mm². Papers print the squared errors (LVE, MEE, CE, FDD) in
units of 10⁻⁵ m²: 1 mm² = 10⁻⁶ m² = 0.1 × 10⁻⁵ m², so divide the mm² figures by 10 to compare.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import platform
from pathlib import Path
from typing import Any, Optional, Sequence

from probtalk3d_cli import __version__
from probtalk3d_cli.data.schema import EMOTIONS, INTENSITIES
from probtalk3d_cli.evaluation.metrics import DISPLAY_UNITS, METRIC_UNITS, m2_to_mm2, m_to_mm

REPORT_FORMAT = "probtalk3d-evaluation"
REPORT_VERSION = 1

#: (key, header, display unit) of the comparison table, in order.
TABLE_COLUMNS = (("mve", "MVE", "mm"), ("lve", "LVE", "mm²"), ("mee", "MEE", "mm²"), ("ce", "CE", "mm²"),
                 ("fdd", "FDD", "mm²"), ("fdd_abs", "|FDD|", "mm²"), ("diversity", "Diversity", "mm"))
UNIT_NOTE = ("MVE and Diversity in mm; LVE, MEE, CE, FDD and |FDD| in mm². Papers print squared errors in "
             "units of 10⁻⁵ m²: 1 mm² = 0.1 × 10⁻⁵ m², so divide the mm² values by 10 to compare.")

#: per_clip.csv columns: (column, ClipMetrics.to_row() key) — SI units in the column names.
CSV_COLUMNS = (("frames", "frames"), ("gt_frames", "gt_frames"), ("num_samples", "num_samples"), ("mve_m", "mve"),
               ("lve_m2", "lve"), ("mee_m2", "mee"), ("ce_m2", "ce"), ("ce_sample", "ce_sample"),
               ("fdd_gt_m2", "fdd_gt"), ("fdd_pred_m2", "fdd_pred"), ("fdd_m2", "fdd"), ("fdd_abs_m2", "fdd_abs"),
               ("diversity_m", "diversity"), ("diversity_pairs", "diversity_pairs"))
CSV_HEADER = ("system", "key", "subject", "emotion", "intensity") + tuple(c for c, _ in CSV_COLUMNS)

CONVENTIONS = {
    "vertices": "FLAME with zero shape (300 zeros), expression = the first 50 coefficients + 50 zeros, pose = jaw "
                "only (global, neck, eyes zero); one converter for the whole run (reference §7, §9)",
    "ground_truth": "the first 50 of the 100 stored expression coefficients + jaw, like the predictions (official "
                    "evaluation.py; so the ground truth is the 50-coefficient reconstruction, reference §11.20); "
                    "cut to the prediction's length; predictions longer than the ground truth are cut to it",
    "fdd_reference": "FLAME with every parameter zero (shape, expression, pose)",
    "pooling": "MVE, LVE, MEE, CE: per-frame values of all clips averaged together; FDD, |FDD|, Diversity: mean "
               "of per-clip values",
    "fdd": "signed S(gt) - S(pred) averaged over clips as the official code (under- and over-animation cancel, "
           "reference §11.21); fdd_abs = mean of |S(gt) - S(pred)|",
    "diversity": "seeded shuffle of the N samples, floor(N/2) pairs (k, k + floor(N/2)); null when N < 2",
    "samples": "P (MVE, LVE, FDD) is the first sample; MEE uses the vertex-wise mean of the N samples; CE the "
               "sample with the smallest summed lip error",
}


def _versions() -> dict:
    import importlib.metadata as md

    out = {"probtalk3d": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "numpy", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:  # pragma: no cover
            out[pkg] = None
    return out


def display_value(value: Optional[float], si_unit: str) -> Optional[float]:
    """SI value -> table unit (m -> mm, m² -> mm²)."""
    return m_to_mm(value) if si_unit == "m" else m2_to_mm2(value)


def format_value(value: Optional[float], si_unit: str) -> str:
    """Table text of one SI value: 4 significant digits in mm / mm², "n/a" for None."""
    v = display_value(value, si_unit)
    return "n/a" if v is None else f"{v:.4g}"


def build_report(results: Sequence, context: dict, seconds: float) -> dict:
    """The metrics.json content (see the README for the field list)."""
    s = context["settings"]
    flame = context["flame"]
    systems = []
    notes: list[str] = []
    for r in results:
        block = dict(r.info)
        block["metrics"] = r.summary["overall"]
        groups = r.summary["groups"]
        block["by_emotion"] = {k: groups.get("emotion", {})[k] for k in EMOTIONS if k in groups.get("emotion", {})}
        block["by_intensity"] = {k: groups.get("intensity", {})[k] for k in INTENSITIES
                                 if k in groups.get("intensity", {})}
        block["by_subject"] = groups.get("subject", {})
        block["missing"] = list(r.missing)
        block["notes"] = list(r.notes)
        systems.append(block)
        notes += [f"{r.name}: {n}" for n in r.notes]
    models = [r for r in results if r.kind == "model"]
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "data": context["data"],
        "split": context["split"],
        "clips": context["split"]["clips"],
        "frames": context["frames"],
        "num_samples": s.num_samples,
        "seed": s.seed,
        "sampling": {"temperature": s.temperature, "k": s.k, "deterministic": s.deterministic, "fact": s.fact,
                     "mean": s.mean},
        "batch_size": s.batch_size,
        "checkpoints": [r.info.get("checkpoint", {}).get("path") or r.name for r in models],
        "predictions": [r.info.get("predictions") for r in results if r.kind == "predictions"],
        "baselines": [r.name for r in results if r.kind == "baseline"],
        "flame_model": {"source": flame.source, "vertices": context["num_vertices"]},
        "regions": context["regions"],
        "conventions": dict(CONVENTIONS),
        "units": dict(METRIC_UNITS),
        "display_units": dict(DISPLAY_UNITS),
        "unit_note": UNIT_NOTE,
        "systems": systems,
        "notes": notes,
        "device": context["device"],
        "num_workers": context["num_workers"],
        "seconds": round(seconds, 3),
        "clips_per_second": round(context["split"]["clips"] / seconds, 4) if seconds > 0 else None,
    }


def per_clip_csv(results: Sequence) -> str:
    """One row per clip per system (SI units in the column names; empty diversity = not applicable)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in results:
        for row in r.rows:
            vals = [row[k] for _, k in CSV_COLUMNS]
            w.writerow([r.name, row["key"], row["subject"], row["emotion"], row["intensity"]]
                       + ["" if v is None else repr(v) if isinstance(v, float) else v for v in vals])
    return buf.getvalue()


def write_outputs(out_dir: Path, report: dict, results: Sequence, images: dict[str, bytes]) -> list[Path]:
    """Write per_clip.csv, the PNGs and metrics.json (last) into `out_dir`, each atomically."""
    from probtalk3d_cli.io import atomic_write_bytes, atomic_write_json, atomic_write_text, safe_join

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_text(out_dir / "per_clip.csv", per_clip_csv(results))]
    for name, data in images.items():
        files.append(atomic_write_bytes(safe_join(out_dir, name), data))
    report = dict(report, files=[f.name for f in files] + ["metrics.json"])
    files.append(atomic_write_json(out_dir / "metrics.json", report))
    return files


# --------------------------------------------------------------------------------------------------------
# Terminal tables
# --------------------------------------------------------------------------------------------------------


def comparison_table(report: dict) -> Any:
    """A rich Table: one row per system, the metrics in mm / mm² (print `UNIT_NOTE` with it)."""
    from rich.table import Table

    split = report["split"]
    t = Table(title=f"evaluation — {split['name']} split, {report['clips']} clips, N = {report['num_samples']}, "
                    f"seed {report['seed']}")
    t.add_column("system", no_wrap=True)
    t.add_column("clips", justify="right")
    for _, head, unit in TABLE_COLUMNS:
        t.add_column(f"{head} ({unit})", justify="right")
    for sys_ in report["systems"]:
        m = sys_["metrics"]
        t.add_row(sys_["name"], str(m["clips"]), *[format_value(m[k], METRIC_UNITS[k]) for k, _, _ in TABLE_COLUMNS])
    return t


def breakdown_table(report: dict, metric: str = "lve") -> Any:
    """A rich Table of one metric per emotion and per intensity (rows = systems)."""
    from rich.table import Table

    unit = DISPLAY_UNITS[metric].replace("^2", "²")
    emotions = [e for e in EMOTIONS if any(e in s["by_emotion"] for s in report["systems"])]
    levels = [i for i in INTENSITIES if any(i in s["by_intensity"] for s in report["systems"])]
    t = Table(title=f"{metric.upper()} ({unit}) by emotion and intensity")
    t.add_column("system", no_wrap=True)
    for e in emotions + levels:
        t.add_column(e, justify="right")
    for s in report["systems"]:
        cells = [format_value(s["by_emotion"][e][metric], METRIC_UNITS[metric]) if e in s["by_emotion"] else "-"
                 for e in emotions]
        cells += [format_value(s["by_intensity"][i][metric], METRIC_UNITS[metric]) if i in s["by_intensity"] else "-"
                  for i in levels]
        t.add_row(s["name"], *cells)
    return t
