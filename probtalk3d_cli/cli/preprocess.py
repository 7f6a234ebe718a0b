"""`probtalk3d preprocess ...`: turn source data into the DATA layout (param/*.npy, wav/*.wav, splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from probtalk3d_cli.cli import app
from probtalk3d_cli.cli._common import ConfigOpt, DeviceOpt, SetOpt, resolve, say

preprocess_app = typer.Typer(
    help="Prepare data: 3DMEAD/EMOTE + MEAD audio, or a synthetic corpus, into DATA/param and DATA/wav; vertex "
    "data for FaceDiffuser.\n\n"
    "Example: probtalk3d preprocess synthetic --out data/synth",
    no_args_is_help=True,
)
app.add_typer(preprocess_app, name="preprocess")

WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes (1 = no subprocesses).")]


@preprocess_app.command("mead")
def mead(
    animation_dir: Annotated[Path, typer.Option("--animation-dir", help="EMOTE EMICA-MEAD_flame2020 folder "
                                                "(<subject>/front/<emotion>/level_<n>/<sentence>/shape_pose_cam.hdf5).")],
    audio_dir: Annotated[Path, typer.Option("--audio-dir", help="MEAD audio folder "
                                            "(<subject>/audio/<emotion>/level_<n>/<sentence>.m4a).")],
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write (param/, wav/, preprocess_report.json).")],
    workers: WorkersOpt = 2,
    subjects: Annotated[Optional[str], typer.Option("--subjects", help="Only these subject IDs, comma-separated "
                                                    "(e.g. M003,W009); default: all.", show_default=False)] = None,
) -> None:
    """3DMEAD (EMOTE HDF5) + MEAD m4a audio -> DATA/param/KEY.npy [1,T,403] and DATA/wav/KEY.wav (16 kHz mono).

    Resumable: valid existing outputs are kept. Missing/unreadable clips are listed in DATA/preprocess_report.json.

    The official splits apply to this corpus (no splits.json is written).

    Example: probtalk3d preprocess mead --animation-dir EMICA-MEAD_flame2020 --audio-dir MEAD --out data/mead
    """
    from probtalk3d_cli.data.mead import preprocess_mead

    ids = [s for s in subjects.split(",")] if subjects is not None else None
    report = preprocess_mead(animation_dir, audio_dir, out, workers=workers, subjects=ids)
    say(report["summary"])
    say(f"report: {report['report_path']}")


@preprocess_app.command("synthetic")
def synthetic(
    out: Annotated[Path, typer.Option("--out", help="DATA folder to write (must be empty or hold the same corpus).")],
    subjects: Annotated[int, typer.Option("--subjects", min=1, help="Number of subjects (M001, W001, M002, ...).")] = 4,
    sentences: Annotated[int, typer.Option("--sentences", min=3, help="Sentences per emotion and level "
                                           "(neutral gets 4/3 as many); split 80/10/10 by sentence.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed (same seed = identical files).")] = 0,
    workers: WorkersOpt = 1,
) -> None:
    """Write a synthetic MEAD-shaped corpus: procedural speech-like audio and FLAME motion driven by it.

    Same layout and keys as `preprocess mead`, plus DATA/splits.json (by sentence), used by default later.

    Defaults: 4 subjects x 4 sentences = 360 clips, about 17 min of audio (a small model trains in minutes).

    Example: probtalk3d preprocess synthetic --out data/synth --subjects 4 --sentences 4 --seed 0
    """
    from probtalk3d_cli.data.synthetic import make_synthetic_corpus

    s = make_synthetic_corpus(out, subjects=subjects, sentences=sentences, seed=seed, workers=workers)
    sp = s["splits"]["pred"]
    say(f"preprocess synthetic: {s['clips']} clips of {len(s['subjects'])} subjects, {s['audio_seconds'] / 60:.1f} "
        f"min of audio, stage-2 train/val/test {sp['train']}/{sp['val']}/{sp['test']} clips ({s['seconds']:.1f} s)")
    say(f"splits: {s['splits_file']}")


@preprocess_app.command("vertices")
def vertices(
    data: Annotated[Path, typer.Option("--data", help="DATA folder with param/*.npy (from preprocess mead/synthetic).")],
    flame_model: Annotated[Optional[str], typer.Option(
        "--flame-model", help="FLAME 2020 generic_model.pkl, or `demo` (config paths.flame_model, env "
                              "PROBTALK3D_FLAME_MODEL).", show_default=False)] = None,
    batch_frames: Annotated[int, typer.Option("--batch-frames", min=1, help="Frames per FLAME call.")] = 4096,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rebuild every file (needed after changing the FLAME "
                                            "model).")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Vertex ground truth with identity for FaceDiffuser: DATA/vertex/KEY.npy [T, V, 3] float32 (FLAME with the clip's
    shape, 100 expression coefficients and jaw) and DATA/templates_vert.npz (per-subject mean-shape meshes).

    Resumable: complete files made with the same FLAME model are kept.

    Example: probtalk3d preprocess vertices --data data/synth --flame-model demo
    """
    from probtalk3d_cli.data.vertices_data import preprocess_vertices
    from probtalk3d_cli.device import resolve_device
    from probtalk3d_cli.flame import load_flame

    cfg = resolve(config, set_, {"paths.flame_model": flame_model})
    flame = load_flame(flame_model, cfg.paths.flame_model)
    report = preprocess_vertices(data, flame, resolve_device(device), batch_frames=batch_frames, overwrite=overwrite)
    say(report["summary"])
    say(f"vertex data: {report['vertex_dir']}, templates: {report['templates']}")
