"""Facts for `probtalk3d info`: versions, devices, offscreen GL backends, and where assets were looked for."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Optional

HUBERT_ID = "facebook/hubert-base-ls960"


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def hubert_status(model: str = HUBERT_ID) -> dict:
    """Whether the HuBERT weights are available without network: a local directory, or the Hugging Face cache."""
    from pathlib import Path

    if model == "tiny":
        return {"model": model, "found": True, "where": "built in (random tiny config)"}
    p = Path(model).expanduser()
    if p.is_dir():
        ok = (p / "config.json").exists()
        return {"model": model, "found": ok, "where": str(p), "looked_in": [str(p)]}
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        cfg = try_to_load_from_cache(model, "config.json")
        weights = None
        for name in ("model.safetensors", "pytorch_model.bin"):
            w = try_to_load_from_cache(model, name)
            if isinstance(w, str):
                weights = w
                break
        found = isinstance(cfg, str) and weights is not None
        return {"model": model, "found": found, "where": weights if found else None, "looked_in": [HF_HUB_CACHE]}
    except ImportError:
        return {"model": model, "found": False, "where": None, "looked_in": []}


def flame_status(explicit: Optional[str] = None, config_value: Optional[str] = None) -> dict:
    """Where a FLAME generic_model.pkl was looked for (flag, config key paths.flame_model, env, default locations)."""
    from probtalk3d_cli.flame import flame_search_locations

    rows = flame_search_locations(explicit=explicit, config_value=config_value)
    found = next((path for _, path, exists in rows if exists), None)
    return {
        "found": found is not None,
        "where": str(found) if found else None,
        "looked_in": [{"source": label, "path": str(path), "exists": bool(exists)} for label, path, exists in rows],
        "demo_head": "built in (--flame-model demo)",
    }


def collect_info(device: str = "auto", flame_model: Optional[str] = None, probe_gl: bool = True,
                 config_flame_model: Optional[str] = None, hubert_model: str = HUBERT_ID) -> dict:
    """Everything `probtalk3d info` reports, as plain JSON-serialisable types.

    Args:
        device: the --device request to resolve.
        flame_model: --flame-model value (path or `demo`).
        probe_gl: try the offscreen GL backends (each in a subprocess; about a second each).
        config_flame_model: `paths.flame_model` from the resolved config.
        hubert_model: `audio.model` from the resolved config.
    """
    from probtalk3d_cli import __version__
    from probtalk3d_cli.device import device_report, resolve_device

    report: dict = {
        "probtalk3d": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in
                     ("torch", "transformers", "smplx", "pyrender-maintained", "numpy", "librosa", "typer")},
    }
    dev = device_report()
    try:
        dev["resolved"] = dev["auto"] if (device or "auto").lower() == "auto" else str(resolve_device(device))
    except (RuntimeError, ValueError) as exc:
        dev["resolved"] = None
        dev["resolve_error"] = str(exc)
    report["device"] = dev
    if probe_gl:
        from probtalk3d_cli.render import probe_gl_backends

        report["gl"] = probe_gl_backends()
    report["env"] = {k: os.environ.get(k) for k in ("PYOPENGL_PLATFORM", "PROBTALK3D_FLAME_MODEL", "HF_HUB_OFFLINE")}
    report["flame"] = flame_status(flame_model, config_flame_model)
    report["hubert"] = hubert_status(hubert_model)
    return report
