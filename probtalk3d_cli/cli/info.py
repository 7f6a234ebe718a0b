"""`probtalk3d info`: versions, devices, offscreen GL backends and where assets were looked for."""

from __future__ import annotations

import json
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve


@app.command("info")
def info(
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
    flame_model: Annotated[Optional[str], typer.Option("--flame-model", help="FLAME generic_model.pkl to check "
                                                                           "(or `demo`).")] = None,
    no_gl: Annotated[bool, typer.Option("--no-gl", help="Skip the offscreen OpenGL probe (about 2 s).")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Show versions, devices, offscreen GL backends and where FLAME and HuBERT were looked for.

    Example: probtalk3d info --json > info.json
    """
    from probtalk3d_cli.info import collect_info

    cfg = resolve(config, set_, {})
    report = collect_info(device=device, flame_model=flame_model, probe_gl=not no_gl,
                          config_flame_model=cfg.paths.flame_model, hubert_model=cfg.audio.model)
    if json_:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_row("probtalk3d", report["probtalk3d"])
    table.add_row("python", report["python"])
    for name, ver in report["versions"].items():
        table.add_row(name, ver or "not installed")
    dev = report["device"]
    table.add_row("device (--device)", dev.get("resolved") or f"unavailable: {dev.get('resolve_error')}")
    table.add_row("CUDA", f"{dev['cuda_available']} {', '.join(dev['cuda_devices'])}".strip())
    table.add_row("MPS", str(dev["mps_available"]))
    if "gl" in report:
        gl = report["gl"]
        states = [f"{k}: {'ok' if gl[k].get('ok') else 'no'}" for k in ("egl", "osmesa") if k in gl]
        table.add_row("offscreen GL", ", ".join(states) + f"  -> using {gl.get('auto') or 'none'}")
    fl = report["flame"]
    table.add_row("FLAME model", fl["where"] or "not found (use --flame-model PATH, or `demo`)")
    for row in fl["looked_in"]:
        table.add_row("", f"{'found' if row['exists'] else 'absent'}  {row['source']}: {row['path']}")
    hb = report["hubert"]
    table.add_row("HuBERT", f"{hb['model']}: " + (hb["where"] if hb["found"] else "not cached (needs network once, "
                                                   "or --set audio.model=/local/dir)"))
    Console().print(table)
