"""Versioned, self-contained checkpoints of plain types, saved atomically and loaded with weights_only=True.

Layout of every file (a dict):
    format            "probtalk3d"
    kind              "prior" | "predictor" | "facediffuser"
    format_version    int (FORMAT_VERSION at save time)
    probtalk3d_version
    config            the resolved Config as a nested dict (the model is rebuilt from this, never today's YAML)
    model             state_dict (tensors)
    meta              plain dict: style vocabulary, normalisation, provenance, validation figures, ...
    train_state       optional: optimiser, epoch, step, RNG states, best value (for --resume)
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Iterable, Optional

from probtalk3d_cli import __version__
from probtalk3d_cli.io import atomic_path

log = logging.getLogger(__name__)

FORMAT = "probtalk3d"
FORMAT_VERSION = 1

# Which command produces each kind (used in "wrong kind" messages).
MADE_BY = {
    "prior": "probtalk3d train-prior (or probtalk3d import-official --stage prior)",
    "predictor": "probtalk3d train-pred (or probtalk3d import-official --stage pred)",
    "facediffuser": "probtalk3d train-pred --model facediffuser",
}

DEMO_NAME = "demo"


def demo_checkpoint_path() -> Path:
    """Location of the bundled demo predictor checkpoint inside the package."""
    return Path(__file__).resolve().parent / "assets" / "demo_model.pt"


def resolve_checkpoint_path(spec: str | Path) -> Path:
    """Map `demo` to the bundled model; a run directory to its best.pt (else last.pt); otherwise the path."""
    if str(spec) == DEMO_NAME:
        p = demo_checkpoint_path()
        if not p.exists():
            raise FileNotFoundError(
                f"the bundled demo model is missing ({p}); rebuild it with `make demo-train` or reinstall probtalk3d"
            )
        return p
    p = Path(spec)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).exists():
                return p / name
        raise FileNotFoundError(f"run directory {p} holds no best.pt or last.pt; pass a checkpoint file")
    return p


def save_checkpoint(
    path: str | Path,
    kind: str,
    config: dict,
    model_state: dict,
    meta: Optional[dict] = None,
    train_state: Optional[dict] = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + os.replace).

    Args:
        path: destination `.pt` file.
        kind: one of MADE_BY's keys.
        config: resolved config as a nested dict of plain types.
        model_state: state_dict (tensors on any device; stored as they are).
        meta: plain-typed extras (style vocabulary, normalisation, provenance, ...).
        train_state: optional optimiser/epoch/RNG state for --resume.
    """
    import torch

    if kind not in MADE_BY:
        raise ValueError(f"unknown checkpoint kind {kind!r}; one of {', '.join(MADE_BY)}")
    payload = {
        "format": FORMAT,
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "probtalk3d_version": __version__,
        "config": config,
        "model": {k: v.detach().cpu() if hasattr(v, "detach") else v for k, v in model_state.items()},
        "meta": meta or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: the zip's folder is 'archive', not the random temporary name,
            torch.save(payload, fh)  # so the same content gives the same bytes
    return Path(path)


def unsafe_global(exc: BaseException) -> Optional[str]:
    """The refused class or function named by a weights-only `torch.load` error (e.g. 'posix.system'), else None."""
    import re

    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if m:
        return m.group(1)
    return "objects outside the allow-list" if "allowlist" in str(exc) else None


def load_checkpoint(path: str | Path, expect: Optional[str | Iterable[str]] = None) -> dict:
    """Load a probtalk3d checkpoint safely (`torch.load(weights_only=True)`, tensors on CPU).

    Args:
        path: a `.pt` file, a run directory, or `demo`.
        expect: kind or kinds accepted; a different kind raises naming the command that makes the right one.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a checkpoint, truncated/corrupt, unsafe content, newer format version, wrong kind.
    """
    import torch

    p = resolve_checkpoint_path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist; check the path (train one with probtalk3d train-prior/train-pred)")
    if p.is_dir():
        raise ValueError(f"{p} is a directory, not a checkpoint file")
    if p.stat().st_size == 0:
        raise ValueError(f"checkpoint {p} is empty (0 bytes); it was not written completely — use another one")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = unsafe_global(exc)
        if refused is None:  # random bytes or a damaged pickle stream, not a refused object
            raise ValueError(f"checkpoint {p} is truncated or corrupt (unreadable pickle data); re-download or "
                             "re-train it") from None
        raise ValueError(
            f"checkpoint {p} holds objects that are not allowed to load safely ({refused}); "
            "only probtalk3d checkpoints load directly — convert official .ckpt files with probtalk3d import-official"
        ) from None
    except Exception as exc:  # noqa: BLE001 - damaged files raise KeyError, IndexError, struct.error, ... too
        raise ValueError(
            f"checkpoint {p} is truncated or corrupt ({type(exc).__name__}); re-download or re-train it"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and "state_dict" in payload:
            raise ValueError(
                f"{p} looks like an official PyTorch-Lightning checkpoint; convert it first with "
                "probtalk3d import-official --stage prior|pred CKPT --out OUT.pt"
            )
        raise ValueError(f"{p} is not a probtalk3d checkpoint; make one with probtalk3d train-prior or train-pred")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {p} has format version {version}, newer than this probtalk3d ({__version__}) reads "
            f"(<= {FORMAT_VERSION}); upgrade probtalk3d"
        )
    kind = payload.get("kind")
    if expect is not None:
        allowed = (expect,) if isinstance(expect, str) else tuple(expect)
        if kind not in allowed:
            wanted = " or ".join(allowed)
            makers = "; ".join(MADE_BY[a] for a in allowed if a in MADE_BY)
            raise ValueError(f"checkpoint {p} is a {kind} checkpoint but a {wanted} checkpoint is needed; make one with {makers}")
    for key in ("config", "model"):
        if key not in payload:
            raise ValueError(f"checkpoint {p} lacks its '{key}' entry; it is incomplete — re-train or re-import it")
    payload["path"] = str(p)
    return payload


def checkpoint_summary(payload: dict) -> dict[str, Any]:
    """Small human-readable description (kind, version, parameter count, meta keys)."""
    n = sum(int(v.numel()) for v in payload["model"].values() if hasattr(v, "numel"))
    return {
        "kind": payload.get("kind"),
        "format_version": payload.get("format_version"),
        "probtalk3d_version": payload.get("probtalk3d_version"),
        "tensors": len(payload["model"]),
        "values": n,
        "meta": sorted(payload.get("meta", {}).keys()),
    }
