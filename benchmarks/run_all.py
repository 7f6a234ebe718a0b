"""Run every benchmark (`make bench`) and print one summary against the official code's figures.

Each script writes its own JSON into --out (train.json, generate.json, evaluate.json, flame.json, render.json);
this runner then writes summary.json with the headline numbers and the targets from the issues.

    .venv/bin/python benchmarks/run_all.py --out benchmarks/results [--quick] [--only train,generate]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "flame": ["bench_flame.py"],
    "render": ["bench_render.py"],
    "train": ["bench_train.py"],
    "generate": ["bench_generate.py"],
    "evaluate": ["bench_evaluate.py"],
}
QUICK_FLAGS = {"train": ["--quick"], "generate": ["--quick"], "evaluate": ["--quick"]}


def _load(out: Path, name: str):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def summarise(out: Path) -> dict:
    """Headline figures from the per-benchmark JSON files that exist, each with its target."""
    rows = []
    train = _load(out, "train")
    if train:
        for c in train["cases"]:
            rows.append({"what": f"train {c['case']}", "value": c["s_per_clip"], "unit": "s/clip",
                         "vs_official": c.get("speedup_vs_official"), "peak_rss_mib": c["peak_rss_mib"],
                         "target": "pred: >= 2x official clips/s, <= official peak memory per clip"})
    gen = _load(out, "generate")
    if gen:
        for name, c in sorted(gen.get("cases", {}).items()):
            rows.append({"what": f"generate {name}", "value": c.get("median_s"), "unit": "s",
                         "vs_official": c.get("speedup_vs_official"), "peak_rss_mib": c.get("peak_rss_mib"),
                         "target": f">= {c.get('target_speedup')}x official"})
        long = gen.get("long_inputs", {})
        if "rss_ratio_10min_over_1min" in long:
            rows.append({"what": "generate peak RSS 10 min / 1 min", "value": long["rss_ratio_10min_over_1min"],
                         "unit": "ratio", "target": "<= 1.5"})
    ev = _load(out, "evaluate")
    if ev:
        for name, c in ev.get("cases", {}).items():
            rows.append({"what": f"evaluate {name}", "value": c.get("clips_per_s"), "unit": "clips/s"})
    fl = _load(out, "flame")
    if fl:
        for name, m in fl.get("models", {}).items():
            rows.append({"what": f"FLAME {name}", "value": m["converter"]["frames_per_s_into_buffer"],
                         "unit": "frames/s", "target": ">= 15000"})
    rd = _load(out, "render")
    if rd:
        for r in rd.get("runs", []):
            rows.append({"what": f"render {r['backend']} {r['size']}px", "value": r["render_encode_fps"],
                         "unit": "fps (render + encode)", "target": ">= 30"})
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}


def _print(summary: dict) -> None:
    for r in summary["rows"]:
        extra = f"  x{r['vs_official']} vs official" if r.get("vs_official") is not None else ""
        target = f"  (target {r['target']})" if r.get("target") else ""
        print(f"{r['what']:42s} {r['value']} {r['unit']}{extra}{target}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--quick", action="store_true", help="fewer repeats where a script supports it")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(SCRIPTS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}", file=sys.stderr)
        return 2
    failed = []
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for name in names:
        cmd = [sys.executable, str(HERE / SCRIPTS[name][0]), "--out", str(out)]
        if args.quick:
            cmd += QUICK_FLAGS.get(name, [])
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        started = time.time()
        rc = subprocess.call(cmd, env=env)
        print(f"== {name}: exit {rc} after {time.time() - started:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    summary = summarise(out)
    from probtalk3d_cli.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    _print(summary)
    print(f"wrote {out / 'summary.json'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
