"""Generation speed and peak memory with the full-size default model (random weights, HuBERT-base architecture, no
download), against the official code's figures on this machine kind (../shared/reference/official-cpu-benchmark.json).

Cases as in the official file: 5 s and 20 s of audio, deterministic and temperature 0.2, 1 and 10 samples; one
call = `generate_motion` (audio -> N motion samples, model already loaded), median over repeats. Each case runs in
a fresh subprocess, so its peak resident memory (ru_maxrss) is its own. Also measured in the same subprocess: an
emulation of the official loop (HuBERT + predictor + decode re-run for every sample, batch 1) as a same-machine
baseline, and peak memory for 1-minute and 10-minute inputs (windowed). Results: benchmarks/results/generate.json.

    .venv/bin/python benchmarks/bench_generate.py --out benchmarks/results [--quick] [--precision fp32,bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OFFICIAL = ROOT.parent / "shared" / "reference" / "official-cpu-benchmark.json"

# official case name -> (audio seconds, deterministic, num_samples)
CASES = {
    "gen_5s_det_n1": (5, True, 1),
    "gen_5s_det_n10": (5, True, 10),
    "gen_5s_T0.2_n1": (5, False, 1),
    "gen_5s_T0.2_n10": (5, False, 10),
    "gen_20s_det_n1": (20, True, 1),
    "gen_20s_det_n10": (20, True, 10),
    "gen_20s_T0.2_n1": (20, False, 1),
    "gen_20s_T0.2_n10": (20, False, 10),
}
LONG = {"long_1min": 60, "long_10min": 600}
TARGETS = {1: 1.2, 10: 6.0}  # speed-up over the official figure, by num_samples
RSS_TARGET = 1.5  # peak RSS of 10 min / 1 min


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _audio(seconds: float):
    """Deterministic speech-like test signal: a gliding harmonic voice with a syllable envelope plus noise."""
    import numpy as np

    t = np.arange(int(seconds * 16000), dtype=np.float64) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(h * phase) / h for h in range(1, 6))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.2 * env * voice + 0.005 * noise).astype(np.float32)


def build_checkpoint(path: Path) -> Path:
    """The full-size default model with the official token layout and random weights, saved as a predictor."""
    import torch

    from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS
    from probtalk3d_cli.models.audio import HUBERT_BASE_CONFIG, AudioEncoder
    from probtalk3d_cli.models.official_keys import official_config
    from probtalk3d_cli.models.predictor import MotionPredictor, save_predictor
    from probtalk3d_cli.models.prior import MotionPrior

    torch.manual_seed(0)
    cfg = official_config("vq")
    model = MotionPredictor(cfg, OFFICIAL_TRAIN_SUBJECTS, MotionPrior(cfg.prior), AudioEncoder(cfg.audio, HUBERT_BASE_CONFIG))
    return save_predictor(path, model)


# --------------------------------------------------------------------------------------------------------
# Workers (run in a fresh process each)
# --------------------------------------------------------------------------------------------------------


def _threads(spec: dict) -> None:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))


def worker(spec: dict) -> dict:
    import torch

    from probtalk3d_cli.generation import Sampling, generate_motion, load_model

    _threads(spec)

    model = load_model(spec["checkpoint"])[0]
    rss_model = _peak_rss_mib()
    audio = _audio(spec["seconds"])
    sampling = Sampling(deterministic=spec["deterministic"])
    n = spec["num_samples"]

    def call(seed: int):
        return generate_motion(model, audio, "M003", "happy", "medium", n, sampling=sampling,
                               generator=torch.Generator().manual_seed(seed), precision=spec["precision"])

    times = []
    out = None
    for r in range(spec["warmup"] + spec["repeats"]):
        t = time.perf_counter()
        out = call(r)
        if r >= spec["warmup"]:
            times.append(time.perf_counter() - t)
    res = {"times_s": [round(x, 4) for x in times], "median_s": round(statistics.median(times), 4),
           "min_s": round(min(times), 4), "max_s": round(max(times), 4), "peak_rss_mib": round(_peak_rss_mib(), 1),
           "rss_after_model_load_mib": round(rss_model, 1), "frames_out": int(out.shape[1]),
           "threads": torch.get_num_threads()}
    if spec.get("emulate_official"):
        res["official_loop_emulation_s"] = round(emulate_official(model, audio, n, sampling, spec["precision"]), 4)
    return res


def emulate_official(model, audio, n: int, sampling, precision: str) -> float:
    """The official generation loop on our modules: for each sample, HuBERT + pairing + predictor + quantiser +
    decoder at batch 1 (reference §6, §11.10). One timed call (kernels are warm from the measurement above)."""
    import torch

    from probtalk3d_cli.device import autocast
    from probtalk3d_cli.generation.core import sample_latents

    x = torch.from_numpy(audio)[None]
    lengths = torch.tensor([audio.size])
    style = (torch.tensor([0]), torch.tensor([1]), torch.tensor([1]))
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    with torch.inference_mode(), autocast(torch.device("cpu"), precision == "bf16"):
        for _ in range(n):
            feats, _ = model.encode_audio(x, lengths)
            z = model.predict_latent(feats, None, *style)
            model.prior.decode(sample_latents(model, z, 1, sampling, g), None)
    return time.perf_counter() - t


def long_worker(spec: dict) -> dict:
    from probtalk3d_cli.generation import Sampling, generate_motion, load_model

    _threads(spec)
    model = load_model(spec["checkpoint"])[0]
    rss_model = _peak_rss_mib()
    audio = _audio(spec["seconds"])
    t = time.perf_counter()
    out = generate_motion(model, audio, "M003", "happy", "medium", 1, sampling=Sampling(deterministic=True),
                          precision=spec["precision"])
    return {"seconds": round(time.perf_counter() - t, 2), "peak_rss_mib": round(_peak_rss_mib(), 1),
            "rss_after_model_load_mib": round(rss_model, 1), "frames_out": int(out.shape[1]),
            "audio_s": spec["seconds"]}


def _spawn(kind: str, spec: dict) -> dict:
    cmd = [sys.executable, __file__, f"--{kind}", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------


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
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for generate.json")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="fp32,bf16", help="comma list of fp32 / bf16")
    ap.add_argument("--quick", action="store_true", help="2 repeats, 5 s cases only, no 10-minute input")
    ap.add_argument("--skip-long", action="store_true", help="skip the 1-minute / 10-minute memory cases")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0 = torch's default)")
    ap.add_argument("--cases", default="", help="comma list of case names (default: all)")
    ap.add_argument("--merge", action="store_true", help="update the cases measured now in an existing generate.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--long-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    if args.long_worker:
        print(json.dumps(long_worker(json.loads(args.long_worker))))
        return {}

    official = json.loads(OFFICIAL.read_text())["cases"] if OFFICIAL.exists() else {}
    repeats = 2 if args.quick else args.repeats
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    cases = {k: v for k, v in CASES.items() if (not args.quick or v[0] == 5) and (not wanted or k in wanted)}
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    result = {"benchmark": "generate", "machine": machine_info(),
              "what": "seconds per generate_motion call (audio -> N samples, model loaded; median), peak RSS of a fresh "
                      "process per case; full-size default model (official token layout, HuBERT-base architecture), "
                      "random weights",
              "threads_requested": args.threads or "torch default",
              "official_reference": str(OFFICIAL), "targets": {"speedup_n1": TARGETS[1], "speedup_n10": TARGETS[10],
                                                               "rss_10min_over_1min": RSS_TARGET},
              "cases": {}, "long_inputs": {}}
    with tempfile.TemporaryDirectory(prefix="probtalk3d-bench-") as tmp:
        ckpt = build_checkpoint(Path(tmp) / "full.pt")
        for precision in precisions:
            for name, (seconds, det, n) in cases.items():
                spec = {"checkpoint": str(ckpt), "seconds": seconds, "deterministic": det, "num_samples": n,
                        "precision": precision, "warmup": 1, "threads": args.threads, "repeats": repeats if n == 1 else max(2, repeats // 2),
                        "emulate_official": precision == "fp32"}
                r = _spawn("worker", spec)
                ref = official.get(name, {})
                if ref:
                    r["official_median_s"] = ref["median_s"]
                    r["official_peak_rss_mib"] = ref["peak_rss_mib"]
                    r["speedup_vs_official"] = round(ref["median_s"] / r["median_s"], 2)
                    r["target_speedup"] = TARGETS[n]
                    r["meets_target"] = r["speedup_vs_official"] >= TARGETS[n]
                if "official_loop_emulation_s" in r:
                    r["speedup_vs_emulated_official_loop"] = round(r["official_loop_emulation_s"] / r["median_s"], 2)
                key = f"{name}_{precision}"
                result["cases"][key] = r
                print(f"{key:24s} {r['median_s']:7.3f} s  (official {ref.get('median_s', float('nan')):6.2f} s, "
                      f"x{r.get('speedup_vs_official', float('nan')):.2f}; emulated official loop "
                      f"{r.get('official_loop_emulation_s', float('nan')):.2f} s)  peak RSS {r['peak_rss_mib']:.0f} MiB",
                      flush=True)
        if not args.skip_long:
            longs = {"long_1min": 60} if args.quick else LONG
            for name, seconds in longs.items():
                r = _spawn("long-worker", {"checkpoint": str(ckpt), "seconds": seconds, "precision": "fp32",
                                           "threads": args.threads})
                result["long_inputs"][name] = r
                print(f"{name:24s} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mib']:.0f} MiB "
                      f"(after model load {r['rss_after_model_load_mib']:.0f} MiB)", flush=True)
            if len(result["long_inputs"]) == 2:
                one, ten = result["long_inputs"]["long_1min"], result["long_inputs"]["long_10min"]
                ratio = round(ten["peak_rss_mib"] / one["peak_rss_mib"], 3)
                result["long_inputs"]["rss_ratio_10min_over_1min"] = ratio
                result["long_inputs"]["meets_target"] = ratio <= RSS_TARGET
                print(f"peak RSS 10 min / 1 min = {ratio}")
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "generate.json"
    if args.merge and path.exists():
        old = json.loads(path.read_text())
        old["cases"].update(result["cases"])
        old["long_inputs"].update(result["long_inputs"])
        old.setdefault("runs", []).append({"cases": sorted(result["cases"]), "machine": result["machine"]})
        result = old
    tmp_path = path.with_name(".generate.json.tmp")
    tmp_path.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_path, path)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
