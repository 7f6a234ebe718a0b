"""FLAME parameters -> vertices speed: our FlameConverter vs a plain smplx `lbs()` forward, on this machine.

Run alone: .venv/bin/python benchmarks/bench_flame.py --out benchmarks/results   (writes flame.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # other work skews the timings


def flame_sized_model(num_vertices: int = 5023, jaw_vertices: int = 2000, run: int = 5, seed: int = 0):
    """A random model with FLAME 2020's sizes (5,023 vertices, 9,976 faces, 400 + 36 bases); the jaw moves
    `jaw_vertices` of them (a generous guess for FLAME's lower face, so the timing is not flattered), in runs of
    `run` consecutive indices (FLAME's official lip and upper-face regions come in runs of about 5)."""
    from probtalk3d_cli.flame import flame_from_dict

    rng = np.random.default_rng(seed)
    n = num_vertices
    w = np.zeros((n, 5))
    w[:, 1] = 1.0
    starts = np.sort(rng.choice(n // run, jaw_vertices // run, replace=False)) * run
    jaw = (starts[:, None] + np.arange(run)).ravel()
    w[jaw, 2] = rng.uniform(0.05, 1.0, len(jaw))
    w[jaw, 1] = 1.0 - w[jaw, 2]
    jr = rng.random((5, n))
    return flame_from_dict({
        "v_template": rng.normal(size=(n, 3)) * 0.05, "shapedirs": rng.normal(size=(n, 3, 400)) * 1e-3,
        "posedirs": rng.normal(size=(n, 3, 36)) * 1e-3, "J_regressor": jr / jr.sum(1, keepdims=True), "weights": w,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "f": rng.integers(0, n, size=(9976, 3)),
    }, f"random FLAME-sized model ({n} vertices, {len(jaw)} on the jaw in runs of {run})")


def inputs(frames: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    exp = rng.normal(size=(frames, 100)).astype(np.float32)
    jaw = (np.abs(rng.normal(size=(frames, 3))) * np.array([0.2, 0.02, 0.02])).astype(np.float32)
    return exp, jaw


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_converter(flame, frames: int, chunk_size: int, repeats: int) -> dict:
    from probtalk3d_cli.flame import FlameConverter

    conv = FlameConverter(flame, chunk_size=chunk_size)
    exp, jaw = inputs(frames)
    shape = np.random.default_rng(2).normal(size=300).astype(np.float32)
    out = np.empty((frames, flame.num_vertices, 3), np.float32)
    conv.vertices(exp[:chunk_size], jaw[:chunk_size], shape)  # warm-up
    reused = best_of(lambda: conv.vertices(exp, jaw, shape, out=out), repeats)
    fresh = best_of(lambda: conv.vertices(exp, jaw, shape), repeats)  # a new output array each call
    return {"frames": frames, "chunk_size": chunk_size, "jaw_vertices": int(len(conv.jaw_idx_np)),
            "frames_per_s_into_buffer": round(frames / reused, 1),
            "frames_per_s_new_array": round(frames / fresh, 1)}


def bench_smplx(flame, frames: int, repeats: int) -> dict:
    """The plain route: smplx.lbs over the full 400-coefficient blend and 5-joint skinning."""
    import torch
    from smplx.lbs import lbs

    t = torch.float32
    sd = torch.as_tensor(np.concatenate([flame.shapedirs, flame.expdirs], 2), dtype=t)
    args = (torch.as_tensor(flame.v_template, dtype=t), sd, torch.as_tensor(flame.posedirs, dtype=t),
            torch.as_tensor(flame.J_regressor, dtype=t), torch.as_tensor(flame.parents),
            torch.as_tensor(flame.weights, dtype=t))
    exp, jaw = inputs(frames)
    betas = torch.cat([torch.zeros(frames, 300), torch.as_tensor(exp)], 1)
    pose = torch.zeros(frames, 15)
    pose[:, 6:9] = torch.as_tensor(jaw)

    def run():
        with torch.no_grad():
            for s in range(0, frames, 256):
                lbs(betas[s:s + 256], pose[s:s + 256], *args)

    run()
    return {"frames": frames, "batch": 256, "frames_per_s": round(frames / best_of(run, repeats), 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for flame.json")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from probtalk3d_cli.flame import load_flame

    models = {"demo_head": load_flame("demo"), "flame_sized": flame_sized_model()}
    result = {"benchmark": "flame", "machine": machine_info(), "target_frames_per_s": 15000, "models": {}}
    for name, fl in models.items():
        entry = {"source": fl.source, "vertices": fl.num_vertices, "faces": int(len(fl.faces))}
        entry["converter"] = bench_converter(fl, args.frames, args.chunk_size, args.repeats)
        entry["smplx_lbs"] = bench_smplx(fl, min(args.frames, 2048), args.repeats)
        entry["speedup_vs_smplx"] = round(entry["converter"]["frames_per_s_into_buffer"]
                                          / entry["smplx_lbs"]["frames_per_s"], 2)
        result["models"][name] = entry
        c = entry["converter"]
        print(f"{name:12s} V={fl.num_vertices}: converter {c['frames_per_s_into_buffer']:9.0f} frames/s "
              f"(new array each call: {c['frames_per_s_new_array']:.0f}), smplx lbs "
              f"{entry['smplx_lbs']['frames_per_s']:.0f} frames/s, x{entry['speedup_vs_smplx']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "flame.json"
    tmp = path.with_name(".flame.json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
