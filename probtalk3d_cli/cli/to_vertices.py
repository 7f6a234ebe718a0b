"""`probtalk3d to-vertices`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say


@app.command("to-vertices")
def to_vertices_command(
    inputs: Annotated[List[Path], typer.Argument(help="[1, T, 403] params or [T, 53] motion .npy files, or folders "
                                                      "of them.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: <stem>_verts.npy [T, V, 3] float32 "
                                                          "metres, or <stem>/frame_000000.obj|ply.")],
    flame_model: Annotated[Optional[str], typer.Option(
        "--flame-model", help="FLAME 2020 generic_model.pkl, or `demo` for the built-in head (config "
                              "paths.flame_model, env PROBTALK3D_FLAME_MODEL).", show_default=False)] = None,
    shape: Annotated[Optional[str], typer.Option(
        "--shape", help="Identity: keep (as stored, default), zero (mean face), a subject ID from --templates "
                        "(e.g. M003), or a .npy file with 300 shape coefficients.", show_default=False)] = None,
    templates: Annotated[Optional[Path], typer.Option(
        "--templates", help="Per-subject mean shapes (templates_mead_param.pkl) for --shape SUBJECT.",
        show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", help="npy (one [T, V, 3] array per input), obj or ply (one "
                                                      "mesh per frame in a folder per input).")] = "npy",
    target_mesh: Annotated[Optional[Path], typer.Option(
        "--target-mesh", help="Neutral mesh (.npy [V, 3], .obj, .ply) with FLAME's vertex order: output = mesh + "
                              "FLAME(exp, jaw) - FLAME(0) (motion transfer).", show_default=False)] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Convert params or motion files to FLAME vertices or mesh sequences.

    Reruns skip outputs that are already complete.

    Example: probtalk3d to-vertices out/*.npy --out verts/ --flame-model demo
    """
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.flame import load_flame
    from probtalk3d_cli.vertices import to_vertices

    cfg = resolve(config, set_, {"paths.flame_model": flame_model})
    dev = resolve_device(device)
    flame = load_flame(flame_model, cfg.paths.flame_model)
    res = to_vertices(inputs, out, flame, shape=shape, templates=templates, fmt=fmt.lower(), target_mesh=target_mesh,
                      device=dev)
    say(f"wrote {len(res.written)} file(s) to {out} ({res.frames} frames, {flame.num_vertices} vertices, "
        f"{res.seconds:.2f} s); skipped {len(res.skipped)} already complete")
