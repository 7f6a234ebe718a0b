"""Import the official ProbTalk3D PyTorch-Lightning checkpoints into self-contained probtalk3d checkpoints.

The released weights unzip to `model_weights/ProbTalk3D/stage_{1,2}` and `model_weights/VAE_variant/stage_{1,2}`
(reference §12). Files are read with `torch.load(weights_only=True)`; when Lightning's hyper-parameter extras
(omegaconf containers, pathlib paths, argparse namespaces) stop that, the file's globals are listed first and only
an explicit allow-list of such data types is admitted, each rebuilt as an inert stand-in record — nothing from the
file is ever called. Key mapping lives in models/official_keys.py.
"""

from __future__ import annotations

import logging
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Optional, Union

log = logging.getLogger(__name__)

STAGES = ("prior", "pred")
VARIANTS = ("vq", "vae")

_PATH_TYPES = ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path")
# Globals an official Lightning checkpoint may hold besides tensors (all plain data containers).
ADMITTED = frozenset(
    [f"pathlib.{n}" for n in _PATH_TYPES] + [f"pathlib._local.{n}" for n in _PATH_TYPES]
    + ["argparse.Namespace", "typing.Any", "collections.defaultdict", "builtins.dict", "builtins.list",
       "builtins.tuple", "builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.object",
       "lightning.fabric.utilities.data.AttributeDict", "lightning_fabric.utilities.data.AttributeDict",
       "lightning.pytorch.utilities.parsing.AttributeDict", "pytorch_lightning.utilities.parsing.AttributeDict"]
)
ADMITTED_PREFIXES = ("omegaconf.",)  # DictConfig, ListConfig, nodes, metadata: configuration data only
_DICT_LIKE = ("AttributeDict", "builtins.dict")


class _Record:
    """Inert stand-in for an admitted foreign object: keeps constructor args and pickled state, runs nothing."""

    source = "object"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.source} stand-in>"


def _empty_dict(*args, **kwargs) -> dict:
    """Stand-in for collections.defaultdict (its items follow as plain SETITEMS)."""
    return {}


def _stand_in(name: str):
    if name == "collections.defaultdict":
        return _empty_dict
    if any(name.endswith(d) for d in _DICT_LIKE):
        return dict  # dict subclasses are rebuilt as plain dicts (their items follow as SETITEMS)
    return type(name.rsplit(".", 1)[-1], (_Record,), {"source": name})


def admitted(name: str) -> bool:
    return name in ADMITTED or name.startswith(ADMITTED_PREFIXES)


def to_plain(obj: Any) -> Any:
    """Turn stand-ins into plain Python: paths -> str, omegaconf containers -> dict/list, namespaces -> dict."""
    if isinstance(obj, type) and issubclass(obj, _Record):
        return obj.source
    if isinstance(obj, _Record):
        name = obj.source.rsplit(".", 1)[-1]
        if obj.source.startswith("pathlib.") and name in _PATH_TYPES:
            flavour = PureWindowsPath if "Windows" in name else PurePosixPath
            return str(flavour(*[str(a) for a in obj.args])) if obj.args else ""
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig
                return to_plain(state["_content"])
            if "_val" in state:  # omegaconf value node
                return to_plain(state["_val"])
            return {k: to_plain(v) for k, v in state.items() if not str(k).startswith("_")}
        return to_plain(state) if state is not None else [to_plain(a) for a in obj.args]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_plain(v) for v in obj)
    return obj


def load_lightning_checkpoint(path: Union[str, Path]) -> dict:
    """Read an official `.ckpt` safely.

    `torch.load(weights_only=True)` first; if Lightning extras stop it, the pickle's globals are listed without
    running it and, if every one is on the allow-list (`ADMITTED`, `omegaconf.*`), the file is loaded again by the
    same weights-only unpickler with inert stand-ins registered under those names.

    Returns:
        The checkpoint dict with stand-ins turned into plain Python (see `to_plain`).

    Raises:
        FileNotFoundError: missing file. ValueError: empty, corrupt, not a torch checkpoint, or holding
        anything outside the allow-list (for example code such as os.system).
    """
    import torch

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"official checkpoint {p} does not exist; pass the .ckpt from model_weights/.../stage_N")
    if p.is_dir():
        raise ValueError(f"{p} is a directory; pass the Lightning .ckpt file inside it (e.g. last.ckpt)")
    if p.stat().st_size == 0:
        raise ValueError(f"official checkpoint {p} is empty (0 bytes); download it again")
    # damaged files raise any of these (KeyError, struct.error, ... from the pickle reader); refusals are
    # UnpicklingError, handled separately
    corrupt = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, AttributeError, ValueError, IndexError, KeyError,
               TypeError, struct.error, MemoryError, RecursionError)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(p):  # Lightning writes torch's zip format; anything else is damaged or foreign
            raise ValueError(f"{p} is not a readable PyTorch checkpoint (not torch.save's zip format); download it "
                             "again") from None
        # else Lightning extras: examine the globals below
    except corrupt as exc:
        raise ValueError(f"{p} is not a readable PyTorch checkpoint ({type(exc).__name__}); download it again") from None
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
    except (pickle.UnpicklingError, *corrupt) as exc:
        raise ValueError(f"{p} cannot be examined safely ({type(exc).__name__}: {str(exc)[:120]}); "
                         "pass an official ProbTalk3D .ckpt") from None
    refused = [n for n in names if not admitted(n)]
    if refused:
        more = f" (+{len(refused) - 5} more)" if len(refused) > 5 else ""
        raise ValueError(
            f"{p} holds objects that are not checkpoint data ({', '.join(refused[:5])}{more}); refusing to load it — "
            "an official ProbTalk3D checkpoint contains only tensors, numbers, strings and Lightning/omegaconf "
            "hyper-parameter containers"
        )
    stand_ins = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{p} could not be loaded safely ({str(exc).splitlines()[0][:200]}); pass an official "
                         "ProbTalk3D .ckpt") from None
    except corrupt as exc:
        raise ValueError(f"{p} is not a readable PyTorch checkpoint ({type(exc).__name__}); download it again") from None
    log.debug("%s: admitted %s", p, ", ".join(names))
    return to_plain(ckpt)


def official_state_dict(ckpt: dict, where: Union[str, Path]) -> dict:
    """The `state_dict` of a Lightning checkpoint (or a bare state dict), checked to hold tensors."""
    import torch

    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{where} holds no Lightning state_dict of tensors; pass an official ProbTalk3D .ckpt")
    return sd


def _check_stage(sd: dict, stage: str, where) -> None:
    stage2 = any(k.startswith(("motion_prior.", "feature_predictor.", "feature_extractor.")) for k in sd)
    if stage == "prior" and stage2:
        raise ValueError(f"{where} is a stage-2 (predictor) checkpoint; use --stage pred")
    if stage == "pred" and not stage2 and any(k.startswith(("motion_encoder.", "motion_decoder.")) for k in sd):
        raise ValueError(f"{where} is a stage-1 (prior) checkpoint; use --stage prior")


@dataclass
class ImportResult:
    """What `import_official` wrote."""

    path: Path
    stage: str
    kind: str
    tensors: int
    parameters: int
    source_sha256: str
    epoch: Optional[int]
    global_step: Optional[int]
    lightning_version: Optional[str]
    prior_check: Optional[str] = None


def import_official(
    ckpt: Union[str, Path],
    out: Union[str, Path],
    stage: str,
    variant: Optional[str] = None,
    prior: Union[None, str, Path] = None,
) -> ImportResult:
    """Convert an official stage-1/stage-2 `.ckpt` into a probtalk3d `prior` / `predictor` checkpoint.

    The result uses the `official` token layout, the official style vocabulary (the 32 stage-2 training IDs in
    split order, 8 emotions, 3 intensities), the fixed normalisation and, for stage 2, the fine-tuned HuBERT-base
    weights with its architecture stored in meta (so `generate` needs no network). The never-reset loss
    accumulators (`_losses.*`, reference §11.3) are dropped.

    Args:
        ckpt: official Lightning checkpoint.
        out: destination `.pt` (written atomically).
        stage: `prior` (stage 1) or `pred` (stage 2).
        variant: `vq` | `vae` to insist on a variant; default: detected from the keys.
        prior: stage 2 only, optional: the official stage-1 `.ckpt`; it must equal the prior inside the stage-2
            file (which is what the official code uses) and the check is reported.

    Raises:
        ValueError / FileNotFoundError: unsafe or unreadable file, wrong stage/variant, keys that do not fit
            (listed), a `--prior` that does not match.
    """
    import torch

    from probtalk3d_cli.generation.api import file_sha256
    from probtalk3d_cli.models.layers import count_parameters
    from probtalk3d_cli.models.official_keys import (
        build_official_predictor,
        build_official_prior,
        detect_kind,
        map_official_prior,
        official_config,
    )
    from probtalk3d_cli.models.predictor import save_predictor
    from probtalk3d_cli.models.prior import save_prior

    if stage not in STAGES:
        raise ValueError(f"--stage must be prior or pred, got {stage!r}")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"--variant must be vq or vae, got {variant!r}")
    if prior is not None and stage != "pred":
        raise ValueError("--prior only applies to --stage pred (it checks the prior inside the stage-2 file)")
    src, dst = Path(ckpt), Path(out)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"--out {dst} is the input checkpoint itself; choose another output path")
    raw = load_lightning_checkpoint(src)
    sd = official_state_dict(raw, src)
    _check_stage(sd, stage, src)
    kind = detect_kind(sd, stage)
    if variant is not None and variant != kind:
        raise ValueError(f"--variant {variant} was given but {src} holds the {kind.upper()} variant; drop --variant "
                         f"or pass the {variant.upper()} checkpoint")
    provenance = {
        "path": str(src.resolve()),
        "sha256": file_sha256(src),
        "stage": stage,
        "variant": kind,
        "epoch": raw.get("epoch") if isinstance(raw, dict) else None,
        "global_step": raw.get("global_step") if isinstance(raw, dict) else None,
        "pytorch-lightning_version": raw.get("pytorch-lightning_version") if isinstance(raw, dict) else None,
    }
    prior_check = None
    if stage == "prior":
        model = build_official_prior(sd)
        save_prior(dst, model, cfg=official_config(kind), meta={"source": "official", "official": provenance})
    else:
        model = build_official_predictor(sd)
        if prior is not None:
            psd = official_state_dict(load_lightning_checkpoint(prior), prior)
            _check_stage(psd, "prior", prior)
            if detect_kind(psd, "prior") != kind:
                raise ValueError(f"--prior {prior} is a {detect_kind(psd, 'prior').upper()} prior but {src} is the "
                                 f"{kind.upper()} variant; pass the matching stage-1 checkpoint")
            mapped = map_official_prior(psd, model.prior)
            own = model.prior.state_dict()
            differ = [k for k, v in mapped.items() if not torch.equal(v, own[k])]
            if differ:
                raise ValueError(
                    f"--prior {prior} does not match the prior inside {src} ({len(differ)} of {len(own)} tensors differ, "
                    f"e.g. {differ[0]}); the stage-2 file carries its own prior (the official code uses that one) — "
                    "drop --prior or pass the stage-1 checkpoint this model was trained with"
                )
            prior_check = f"{Path(prior).name} matches the prior inside {src.name} ({len(own)} tensors)"
            provenance["prior_checked"] = {"path": str(Path(prior).resolve()), "sha256": file_sha256(prior)}
        save_predictor(dst, model, meta={"source": "official", "official": provenance})
    state = model.state_dict()
    return ImportResult(
        path=dst, stage=stage, kind=kind, tensors=len(state), parameters=count_parameters(model),
        source_sha256=provenance["sha256"], epoch=provenance["epoch"], global_step=provenance["global_step"],
        lightning_version=provenance["pytorch-lightning_version"], prior_check=prior_check,
    )
