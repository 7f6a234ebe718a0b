"""`probtalk3d evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


@app.command("evaluate")
def evaluate_command(
    checkpoint: Annotated[Optional[List[str]], _opt("--checkpoint", "-m", help="Predictor (ProbTalk3D, VAE variant) or "
                                                    "FaceDiffuser checkpoint (.pt), run folder or `demo`; NAME=PATH sets "
                                                    "the row label (repeatable).")] = None,
    data: Annotated[Optional[Path], _opt("--data", help="DATA folder from `probtalk3d preprocess` (data.root).")] = None,
    split: Annotated[Optional[str], _opt("--split", help="test | val | train | FILE of clip keys or subject IDs "
                                         "(eval.split: test).")] = None,
    num_samples: Annotated[Optional[int], _opt("--num-samples", "-n", help="Samples per clip; Diversity needs >= 2 "
                                               "(eval.num_samples: 10).")] = None,
    flame_model: Annotated[Optional[str], _opt("--flame-model", help="FLAME 2020 generic_model.pkl or `demo` "
                                               "(paths.flame_model, env PROBTALK3D_FLAME_MODEL).")] = None,
    regions_dir: Annotated[Optional[Path], _opt("--regions-dir", help="Folder with lve.txt and fdd.txt (needed with a "
                                                "real FLAME model; eval.regions_dir).")] = None,
    out: Annotated[Optional[Path], _opt("--out", "-o", help="Output folder for metrics.json, per_clip.csv and plots "
                                        "(eval.out: evaluation).")] = None,
    seed: Annotated[Optional[int], _opt("--seed", help="Seed of the samples and diversity pairs (eval.seed: 1234).")] = None,
    temperature: Annotated[Optional[float], _opt("--temperature", help="VQ sampling temperature (eval.temperature: "
                                                 "0.2).")] = None,
    k: Annotated[Optional[int], _opt("--k", help="VQ: draw k codes, keep the last (official) (eval.k: 1).")] = None,
    deterministic: Annotated[bool, _opt("--deterministic", help="VQ: nearest code instead of sampling.")] = False,
    fact: Annotated[Optional[float], _opt("--fact", help="VAE: z = mu + fact*sigma*eps (eval.fact: 20).")] = None,
    mean: Annotated[bool, _opt("--mean", help="VAE: z = mu (deterministic).")] = False,
    baselines: Annotated[bool, _opt("--baselines", help="Also score the training-set mean motion per style and the "
                                    "ground truth shifted by 1 s.")] = False,
    plots: Annotated[bool, _opt("--plots", help="Write PNGs: error heat map on the face, curves, bars per "
                                "emotion.")] = False,
    predictions: Annotated[Optional[List[str]], _opt("--predictions", help="Folder of generated .npy files (ours or "
                                                     "the official tool's); NAME=DIR sets the label (repeatable).")] = None,
    precision: Annotated[Optional[str], _opt("--precision", help="auto | fp32 | bf16 (eval.precision: auto = bf16 "
                                             "where native; fp32 = official numerics).")] = None,
    batch_size: Annotated[Optional[int], _opt("--batch-size", help="Clips per padded model batch (eval.batch_size: 1 = "
                                              "bit-identical to `generate`; more helps on GPUs).")] = None,
    quiet: Annotated[bool, _opt("--quiet", "-q", help="Print nothing but errors (same as probtalk3d -q).")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Score checkpoints, generated files and baselines with MVE, LVE, MEE, CE, FDD and Diversity (one table).

    Example: probtalk3d evaluate --checkpoint demo --data data/synth --flame-model demo --out eval/ --baselines
    """
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.evaluation.evaluate import evaluate
    from probtalk3d_cli.ui import configure, is_debug

    if quiet:
        configure(quiet=True, debug=is_debug())
    cfg = resolve(config, set_, {
        "data.root": str(data) if data else None, "eval.split": split, "eval.num_samples": num_samples,
        "paths.flame_model": flame_model, "eval.regions_dir": str(regions_dir) if regions_dir else None,
        "eval.out": str(out) if out else None, "eval.seed": seed, "eval.temperature": temperature, "eval.k": k,
        "eval.deterministic": deterministic or None, "eval.fact": fact, "eval.mean": mean or None,
        "eval.baselines": baselines or None, "eval.plots": plots or None, "eval.batch_size": batch_size,
        "eval.precision": precision})
    if cfg.data.root is None:
        raise ValueError("no data folder given; pass --data DATA (a folder made by `probtalk3d preprocess`)")
    res = evaluate(cfg.data.root, checkpoint or [], predictions or [], settings=cfg.eval, flame=flame_model,
                   flame_config=cfg.paths.flame_model, out=cfg.eval.out, device=resolve_device(device),
                   splits_spec=cfg.data.splits, num_workers=cfg.data.num_workers,
                   window_seconds=cfg.generate.window_seconds, overlap_seconds=cfg.generate.overlap_seconds,
                   facediffuser=cfg.facediffuser)
    _print(res)


def _print(res) -> None:
    from probtalk3d_cli.evaluation.report import UNIT_NOTE, breakdown_table, comparison_table
    from probtalk3d_cli.ui import is_quiet

    if is_quiet():
        return
    from rich.console import Console

    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console = Console(width=160)
    console.print(comparison_table(res.report))
    say(f"units: {UNIT_NOTE}")
    console.print(breakdown_table(res.report, "lve"))
    for note in res.notes:
        say(f"note: {note}")
    say(f"evaluated {res.clips} clips ({res.frames} frames) x {len(res.systems)} system(s) in {res.seconds:.1f} s "
        f"({res.clips_per_second:.2f} clips/s); wrote {', '.join(f.name for f in res.files)} to "
        f"{res.files[0].parent if res.files else '-'}")
