"""`probtalk3d demo` and `probtalk3d demo-train`: the bundled demo model, used and rebuilt."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_out"),
    audio: Annotated[Optional[Path], _opt("--audio", help="Your own speech (any format); default: a synthetic demo "
                                          "clip the model has not seen.")] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-m", help="Predictor checkpoint, run folder, or `demo` "
                                            "(the bundled model).")] = "demo",
    emotions: Annotated[str, typer.Option("--emotions", help="Comma-separated emotions, one video each.")]
    = "happy,sad,angry",
    subject: Annotated[Optional[str], _opt("--subject", help="Identity of the checkpoint (default its first).")] = None,
    intensity: Annotated[str, typer.Option("--intensity", help="low | medium | high.")] = "high",
    size: Annotated[Optional[int], _opt("--size", help="Video panel size in pixels, even (render.size: 512).")] = None,
    flame_model: Annotated[str, typer.Option("--flame-model", help="`demo` (built-in head) or a FLAME 2020 "
                                             "generic_model.pkl.")] = "demo",
    backend: Annotated[Optional[str], _opt("--backend", help="Offscreen OpenGL: auto | egl | osmesa "
                                           "(render.backend).")] = None,
    seed: Annotated[Optional[int], _opt("--seed", help="Sampling seed (generate.seed: 1234).")] = None,
    deterministic: Annotated[bool, _opt("--deterministic", help="Nearest codes instead of sampling.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Animate a clip in three emotions with the bundled model and render mp4 videos with the demo head and audio.

    Example: probtalk3d demo --out demo_out --audio my_speech.wav --emotions happy,sad,surprised
    """
    from probtalk3d_cli.demo import run_demo
    from probtalk3d_cli.device import resolve_device

    cfg = resolve(config, set_, {"render.size": size, "render.backend": backend, "generate.seed": seed,
                                 "generate.deterministic": deterministic or None})
    res = run_demo(out, audio=audio, checkpoint=checkpoint, emotions=[e.strip() for e in emotions.split(",")],
                   subject=subject, intensity=intensity, settings=cfg.generate, size=cfg.render.size,
                   flame=flame_model, backend=cfg.render.backend, device=resolve_device(device))
    say(f"animated {res.audio} ({res.frames} frames) as {res.subject}, {', '.join(res.emotions)} ({res.intensity}) "
        f"in {res.seconds:.1f} s")
    for video in res.videos:
        say(f"video: {video}")
    say(f"side by side: {res.side_by_side}")
    say(f"motion files: {res.motions[0].parent}")


@app.command("demo-train")
def demo_train_command(
    work: Annotated[Path, typer.Option("--work", help="Work folder: data/, prior/, pred/, eval/ (reused when "
                                                      "rerun).")] = Path("work_demo"),
    bundle: Annotated[Optional[Path], _opt("--bundle", help="Where to write the bundled checkpoint (default: the "
                                           "package's assets/demo_model.pt, what `--checkpoint demo` loads).")] = None,
    config: Annotated[Optional[list[Path]], _opt("--config", "-c", help="Config file(s) instead of configs/demo.yaml "
                                                 "(repeatable).")] = None,
    set_: SetOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Rebuild the demo model: synthetic corpus -> train-prior -> train-pred -> evaluate -> bundle (stages reused).

    Example: probtalk3d demo-train --work work_demo
    """
    from probtalk3d_cli.demo import demo_config, demo_train
    from probtalk3d_cli.device import resolve_device

    res = demo_train(work, demo_config(config or [], set_ or []), resolve_device(device), bundle=bundle)
    for s in res.stages:
        say(f"{s.name:12s} {'reused ' if s.skipped else ''}{s.seconds:7.1f} s  {s.detail}")
    ev = res.evaluation
    say(f"test LVE {ev['systems']['demo']['lve'] * 1e6:.2f} mm^2 vs mean-motion baseline "
        f"{ev['systems']['baseline: mean motion']['lve'] * 1e6:.2f} mm^2 (ratio {ev['lve_ratio_vs_mean_baseline']:.2f})")
    say(f"bundled {res.bundle} ({res.bundle_bytes / 2**20:.2f} MB) in {res.seconds / 60:.1f} min")
