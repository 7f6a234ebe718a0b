"""`probtalk3d export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, SetOpt, resolve, say


@app.command("export")
def export_command(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="[1, T, 403] params, [T, 53] motion or [T, V, 3] "
                                                                 "vertices (.npy).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: FILE.glb, FILE.gltf, FILE.csv, or a folder for "
                                                          "an OBJ sequence. A sidecar <out stem>.json is written "
                                                          "next to it.", show_default=False)],
    fmt: Annotated[Optional[str], typer.Option(
        "--format", help="gltf | glb | csv | obj-seq (default: from the --out suffix; a mismatch is an error).",
        show_default=False)] = None,
    flame_model: Annotated[Optional[str], typer.Option(
        "--flame-model", help="FLAME 2020 generic_model.pkl, or `demo` (config paths.flame_model, env "
                              "PROBTALK3D_FLAME_MODEL); not needed for csv.", show_default=False)] = None,
    audio: Annotated[Optional[Path], typer.Option(
        "--audio", help="Audio to pair with the animation (recorded, not copied); default: the \"audio\" field of "
                        "INPUT's <stem>.json sidecar.", show_default=False)] = None,
    shape: Annotated[Optional[str], typer.Option(
        "--shape", help="Identity: keep (as stored; default for params), zero (mean face; default for motion) or "
                        "a .npy file with 300 shape coefficients.", show_default=False)] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of INPUT.")] = 25.0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export animation to glTF/GLB, CSV or an OBJ sequence for Blender, Unity, Unreal and web viewers.

    Example: probtalk3d export out/speech_M003_happy_medium.npy --out speech.glb --flame-model demo
    """
    from probtalk3d_cli.export import export, infer_format
    from probtalk3d_cli.flame import load_flame

    cfg = resolve(config, set_, {"paths.flame_model": flame_model})
    needs_mesh = infer_format(out, fmt) != "csv"
    flame = load_flame(flame_model, cfg.paths.flame_model) if needs_mesh else None
    res = export(input_, out, flame, fmt=fmt, audio=audio, shape=shape, fps=fps)
    exact = "exact" if res.exact else "approximate"
    targets = f", {res.morph_targets} morph targets" if res.morph_targets else ""
    audio_text = f"pair with audio {res.audio}" if res.audio else "no audio recorded"
    mode = f", {res.mode}" if res.mode != res.format else ""
    say(f"wrote {res.path} ({res.format}{mode}, {exact}, {res.frames} frames at {res.fps:g} fps{targets}, "
        f"{res.bytes / 1e6:.2f} MB) and {res.sidecar.name}; {audio_text}")
    for note in res.notes:
        say(f"note: {note}")
