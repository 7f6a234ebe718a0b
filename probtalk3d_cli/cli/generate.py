"""`probtalk3d generate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


@app.command("generate")
def generate_command(
    inputs: Annotated[Optional[List[str]], typer.Argument(
        metavar="INPUT...", help="Audio files (wav, flac, mp3, m4a, ogg; any rate/channels), folders (recursive) or - "
                                 "for a wav on stdin.", show_default=False)] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-m", help="Predictor or FaceDiffuser checkpoint (.pt), "
                                            "run folder, or `demo`.")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = ...,
    subject: Annotated[Optional[str], _opt("--subject", help="Identity ID, comma list, or `random` (default the "
                                           "checkpoint's first ID).")] = None,
    emotion: Annotated[Optional[str], _opt("--emotion", help="Name or index 0-7, comma list, or `random` (default "
                                           "neutral).")] = None,
    intensity: Annotated[Optional[str], _opt("--intensity", help="low|medium|high|0|1|2, comma list, or `random` "
                                             "(default low for neutral, else medium).")] = None,
    styles: Annotated[Optional[Path], _opt("--styles", help="CSV with a header audio,subject,emotion,intensity[,name]: "
                                           "one job per row.")] = None,
    num_samples: Annotated[Optional[int], _opt("--num-samples", "-n", help="Samples per job (generate.num_samples: "
                                               "1).")] = None,
    temperature: Annotated[Optional[float], _opt("--temperature", help="VQ sampling temperature (generate."
                                                 "temperature: 0.2).")] = None,
    k: Annotated[Optional[int], _opt("--k", help="VQ: draw k codes, keep the last (official) (generate.k: 1).")] = None,
    deterministic: Annotated[bool, _opt("--deterministic", help="VQ: nearest code instead of sampling.")] = False,
    fact: Annotated[Optional[float], _opt("--fact", help="VAE: z = mu + fact*sigma*eps (generate.fact: 20).")] = None,
    mean: Annotated[bool, _opt("--mean", help="VAE: z = mu (deterministic).")] = False,
    seed: Annotated[Optional[int], _opt("--seed", help="Random seed (generate.seed: 1234).")] = None,
    fmt: Annotated[Optional[str], _opt("--format", help="params ([1,T,403] float64, official) | motion ([T,53] "
                                       "float32) (generate.format: params); FaceDiffuser checkpoints always write "
                                       "vertices ([T,V,3] float32).")] = None,
    shard: Annotated[Optional[str], _opt("--shard", help="K/N: do every N-th job starting at K (0-based).")] = None,
    overwrite: Annotated[bool, _opt("--overwrite", help="Regenerate outputs that already exist.")] = False,
    allow_unseen_styles: Annotated[bool, _opt("--allow-unseen-styles", help="Allow neutral with medium/high "
                                              "intensity.")] = False,
    batch_size: Annotated[Optional[int], _opt("--batch-size", help="Windows/jobs per padded batch (generate."
                                              "batch_size: 1 = bit-identical per job).")] = None,
    precision: Annotated[Optional[str], _opt("--precision", help="auto | fp32 | bf16 (generate.precision: auto = bf16 "
                                                  "where the device computes it natively; fp32 = official numerics).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Audio -> FLAME motion (.npy + .json sidecar per file) with a trained or imported predictor; a FaceDiffuser
    checkpoint writes [T, V, 3] vertex files (DDIM over the last --set facediffuser.sample_steps=100 steps).

    Example: probtalk3d generate --checkpoint demo speech.wav --out out/ --emotion happy
    """
    import sys

    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.generation import generate

    flags = {"generate.num_samples": num_samples, "generate.temperature": temperature, "generate.k": k,
             "generate.deterministic": deterministic or None, "generate.fact": fact, "generate.mean": mean or None,
             "generate.seed": seed, "generate.format": fmt, "generate.batch_size": batch_size,
             "generate.precision": precision}
    cfg = resolve(config, set_, flags)
    given = [key.split(".")[1] for key, v in flags.items() if v is not None]
    stdin = sys.stdin.buffer.read() if "-" in (inputs or []) else None
    res = generate(checkpoint, inputs or [], out, subject=subject, emotion=emotion, intensity=intensity,
                   styles_csv=styles, settings=cfg.generate, device=resolve_device(device), shard=shard,
                   overwrite=overwrite, allow_unseen_styles=allow_unseen_styles, stdin_audio=stdin, given=given,
                   facediffuser=cfg.facediffuser)
    shards = f", {res.jobs_other_shards} left to other shards" if res.jobs_other_shards else ""
    say(f"wrote {len(res.written)} file(s) for {len({o.job for o in res.written})} job(s) to {out} "
        f"({res.jobs_skipped} job(s) already done{shards}) in {res.seconds:.1f} s")
    if len(res.failures) == 1 and not res.outputs:  # the only input failed: its reason is the one error line
        raise ValueError(f"{res.failures[0].input}: {res.failures[0].message}")
    for f in res.failures:
        typer.echo(f"failed: {f.input}: {f.message}", err=True)
    if res.failures:
        raise RuntimeError(f"{len(res.failures)} input(s) failed (listed above); the other outputs were written — fix "
                           "or remove those inputs and rerun (finished outputs are skipped)")
