"""`probtalk3d render`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say


def _parse_color(text: Optional[str]):
    if text is None:
        return None
    try:
        rgb = [float(x) for x in text.split(",")]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise typer.BadParameter(f"{text!r}: give three numbers in [0, 1], e.g. 0.7,0.7,0.8", param_hint="--color")
    return rgb


def _parse_camera(text: Optional[str]):
    if text is None:
        return None
    presets = {"front": [0.0, 0.0], "left": [60.0, 0.0], "right": [-60.0, 0.0], "above": [0.0, 30.0],
               "below": [0.0, -30.0]}
    if text.strip().lower() in presets:
        return presets[text.strip().lower()]
    try:
        angles = [float(x) for x in text.split(",")]
    except ValueError:
        angles = []
    if len(angles) != 2 or not all(-180.0 <= a <= 180.0 for a in angles) or abs(angles[1]) >= 90.0:
        raise typer.BadParameter(f"{text!r}: give YAW,PITCH in degrees (yaw -180..180, pitch -89..89), e.g. 30,10, "
                                 f"or one of {', '.join(presets)}", param_hint="--camera")
    return angles


@app.command("render")
def render_command(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="[1, T, 403] params, [T, 53] motion or [T, V, 3] "
                                                                 "vertices (.npy).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output video (.mp4, H.264 + AAC).")],
    audio: Annotated[Optional[Path], typer.Option(
        "--audio", help="Audio track (any format); default: the \"audio\" field of INPUT's <stem>.json sidecar.",
        show_default=False)] = None,
    flame_model: Annotated[Optional[str], typer.Option(
        "--flame-model", help="FLAME 2020 generic_model.pkl, or `demo` (config paths.flame_model, env "
                              "PROBTALK3D_FLAME_MODEL).", show_default=False)] = None,
    side_by_side: Annotated[Optional[List[Path]], typer.Option(
        "--side-by-side", help="Another animation shown next to INPUT (repeatable).", show_default=False)] = None,
    labels: Annotated[Optional[str], typer.Option(
        "--labels", help="Comma-separated panel labels (default: file names when side by side).",
        show_default=False)] = None,
    size: Annotated[Optional[int], typer.Option(
        "--size", help="Panel size in pixels, even (config render.size, default 512).", show_default=False)] = None,
    fps: Annotated[Optional[int], typer.Option("--fps", help="Frames per second (config render.fps, default 25).",
                                               show_default=False)] = None,
    camera_distance: Annotated[Optional[float], typer.Option(
        "--camera-distance", help="Camera distance from the head centre in metres; 0 = frame automatically "
                                  "[render.camera_distance: 0].", show_default=False)] = None,
    camera: Annotated[Optional[str], typer.Option(
        "--camera", help="View: YAW,PITCH in degrees around the head (+yaw shows the head's left side, +pitch looks "
                         "from above), or front | left | right | above | below (left/right: the head's side, 60°) "
                         "[render.camera: 0,0 = front].",
        show_default=False)] = None,
    color: Annotated[Optional[str], typer.Option("--color", help="Mesh colour R,G,B in [0, 1] (config render.color).",
                                                 show_default=False)] = None,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", help="Offscreen OpenGL: auto | egl | osmesa (config render.backend, default auto; env "
                          "PYOPENGL_PLATFORM).",
        show_default=False)] = None,
    crf: Annotated[Optional[int], typer.Option(
        "--crf", help="H.264 quality, lower is better (config render.crf, default 20).", show_default=False)] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Render params, motion or vertex files to an mp4 video with audio (offscreen).

    Example: probtalk3d render out/speech_M003_happy_medium.npy --out happy.mp4 --flame-model demo
    """
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.flame import load_flame
    from probtalk3d_cli.render import render

    cfg = resolve(config, set_, {"paths.flame_model": flame_model, "render.size": size, "render.fps": fps,
                                 "render.camera_distance": camera_distance, "render.color": _parse_color(color),
                                 "render.camera": _parse_camera(camera),
                                 "render.backend": backend, "render.crf": crf})
    r = cfg.render
    dev = resolve_device(device)
    flame = load_flame(flame_model, cfg.paths.flame_model)
    label_list = [t.strip() for t in labels.split(",")] if labels is not None else None
    res = render([input_] + list(side_by_side or []), out, flame, audio=audio, labels=label_list, fps=r.fps,
                 size=r.size, color=r.color[:3], camera_distance=r.camera_distance, backend=r.backend, crf=r.crf,
                 device=dev, camera=r.camera)
    audio_text = f"audio {res.audio.name} ({res.audio_note})" if res.audio else "no audio"
    say(f"wrote {res.path} ({res.frames} frames, {res.width}x{res.height}, {res.fps:g} fps, {audio_text}) in "
        f"{res.seconds:.1f} s ({res.render_fps:.1f} frames/s, {res.backend})")
