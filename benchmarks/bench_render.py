"""Rendering speed: 512x512 frames of a ~5k-vertex head, render + H.264/AAC encode, on this machine.

Run alone: .venv/bin/python benchmarks/bench_render.py --out benchmarks/results   (writes render.json)
Each GL backend runs in its own process (the OpenGL platform is fixed per process): --backends osmesa,egl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def talking_motion(frames: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(frames) / fps
    exp = np.zeros((frames, 100), np.float32)
    jaw = np.zeros((frames, 3), np.float32)
    exp[:, 0] = 1.2 * np.maximum(np.sin(2 * np.pi * 3.1 * t), 0)
    exp[:, 1] = 0.8 * np.sin(2 * np.pi * 0.7 * t)
    exp[:, 2] = 0.6 * np.sin(2 * np.pi * 0.3 * t)
    exp[:, 3] = 0.5 * np.sin(2 * np.pi * 0.5 * t)
    jaw[:, 0] = 0.12 * np.maximum(np.sin(2 * np.pi * 3.1 * t + 0.3), 0)
    return exp, jaw


def run_one(backend: str, frames: int, size: int, panels: int) -> dict:
    """Time one backend in this process."""
    from probtalk3d_cli.flame import FlameConverter, load_flame
    from probtalk3d_cli.io import save_wav
    from probtalk3d_cli.render import MeshRenderer, frame_camera, render_video
    from probtalk3d_cli.ui import configure

    configure(quiet=True)
    flame = load_flame("demo")
    verts = FlameConverter(flame).vertices(*talking_motion(frames))
    out: dict = {"backend": backend, "frames": frames, "size": size, "vertices": flame.num_vertices,
                 "faces": int(len(flame.faces))}
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "audio.wav"
        save_wav(wav, 0.1 * np.sin(2 * np.pi * 200 * np.arange(int(frames / 25 * 16000)) / 16000), 16000)
        # 1) render only (no encoding), steady state
        cam = frame_camera(verts[:1])
        r = MeshRenderer(flame.faces, flame.num_vertices, cam, size=(size, size), backend=backend)
        r.render(verts[0])
        t = time.perf_counter()
        for v in verts:
            r.render(v)
        out["render_only_fps"] = round(frames / (time.perf_counter() - t), 1)
        out["gl_renderer"] = _gl_renderer()
        r.close()
        # 2) the whole command path: renderer set-up, frames, H.264 encode, AAC audio, mux, atomic write
        res = render_video([verts], flame.faces, Path(d) / "video.mp4", size=size, audio=wav, backend=backend)
        out["render_encode_fps"] = round(res.render_fps, 1)
        out["render_encode_seconds"] = round(res.seconds, 2)
        out["video_bytes"] = (Path(d) / "video.mp4").stat().st_size
        if panels > 1:
            res = render_video([verts] * panels, flame.faces, Path(d) / "sbs.mp4", size=size, audio=wav,
                               backend=backend, labels=[f"panel {k}" for k in range(panels)])
            out[f"side_by_side_{panels}_fps"] = round(res.render_fps, 1)
    out["backend_used"] = os.environ.get("PYOPENGL_PLATFORM")
    return out


def _gl_renderer() -> str:
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode()
    except Exception:  # noqa: BLE001 - the context may already be released
        return "unknown"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for render.json")
    ap.add_argument("--frames", type=int, default=250, help="frames per run (250 = 10 s at 25 fps)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--panels", type=int, default=3, help="also time a side-by-side video with this many panels")
    ap.add_argument("--backends", default="auto", help="comma-separated: auto, osmesa, egl")
    ap.add_argument("--single", default=None, help=argparse.SUPPRESS)  # internal: run one backend, print JSON
    args = ap.parse_args(argv)
    if args.single:
        print("RESULT " + json.dumps(run_one(args.single, args.frames, args.size, args.panels)))
        return {}
    from bench_flame import machine_info

    result = {"benchmark": "render", "machine": machine_info(), "target_fps": 30, "runs": []}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        proc = subprocess.run([sys.executable, __file__, "--single", backend, "--frames", str(args.frames), "--size",
                               str(args.size), "--panels", str(args.panels)], capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            err = proc.stderr.strip().splitlines()
            run = {"backend": backend, "error": err[-1] if err else f"exit code {proc.returncode}"}
        else:
            run = json.loads(lines[-1][len("RESULT "):])
            print(f"{backend:7s} ({run['backend_used']}, {run['gl_renderer']}): render only {run['render_only_fps']}"
                  f" fps; render + encode + audio {run['render_encode_fps']} fps at {args.size}x{args.size} "
                  f"({run['vertices']} vertices); {args.panels} panels side by side "
                  f"{run.get(f'side_by_side_{args.panels}_fps')} fps")
        result["runs"].append(run)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "render.json"
    tmp = path.with_name(".render.json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
