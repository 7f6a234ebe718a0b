"""Typed configuration: one dataclass per section, loaded from YAML with `--set` overrides and validation.

Precedence (lowest to highest): dataclass defaults < `--config FILE` (repeatable) < `--set section.key=value`
(repeatable) < explicit command-line flags. Raw dicts never travel past this module.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


# --------------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the preprocessed corpus lives and how clips are cut and batched."""

    root: Optional[str] = None  # DATA folder written by `preprocess` (flag --data)
    splits: str = "auto"  # auto | official | DIR (train/val/test ID lists) | FILE.json
    fps: int = 25  # motion frame rate (fixed by the method)
    sample_rate: int = 16000  # audio rate fed to HuBERT (fixed by the method)
    max_seconds: Optional[float] = None  # random training crop length; null = whole clips
    cache: bool = True  # keep decoded clips in RAM after first use
    num_workers: int = 0  # DataLoader worker processes


@dataclass
class PriorConfig:
    """Stage 1: the motion prior (VQ-VAE, or the VAE comparison variant)."""

    kind: str = "vq"  # vq | vae
    nfeats: int = 53  # 50 expression + 3 jaw
    d_model: int = 256
    ff_dim: int = 384
    num_heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dropout: float = 0.1  # positional-encoding dropout
    max_len: int = 5000  # positional-encoding table length in frames (200 s)
    num_codes: int = 256  # codebook size
    code_dim: int = 128  # codebook vector size (d_model must be a multiple)
    beta: float = 0.25  # commitment weight inside the VQ loss
    token_layout: str = "per_frame"  # per_frame | official (channel-major reshape, needed for official weights)
    w_quant: float = 1.5  # stage-1 VQ loss weight
    w_exp: float = 0.5  # stage-1 expression L1 weight
    w_jaw: float = 0.1  # stage-1 jaw L1 weight
    vae_w_kl: float = 1e-4  # VAE variant: KL weight
    vae_w_exp: float = 1.5  # VAE variant: expression L1 weight
    vae_w_jaw: float = 1.0  # VAE variant: jaw L1 weight


@dataclass
class AudioConfig:
    """The HuBERT audio encoder of stage 2."""

    model: str = "facebook/hubert-base-ls960"  # hub id | local directory | tiny (random, for tests)
    normalize: bool = True  # zero-mean / unit-variance per utterance (as the HF feature extractor)
    freeze_feature_encoder: bool = True  # official: CNN feature encoder frozen
    freeze_projection: bool = True  # official: feature projection frozen
    freeze_layers: int = 2  # official: transformer layers 0..1 frozen
    cache_cnn: bool = True  # training: keep the frozen CNN output per clip in RAM (exact; not with random crops)
    cache_cnn_max_gb: float = 4.0  # RAM budget of that cache
    tiny_hidden: int = 64  # sizes of the `tiny` config (tests and the demo model)
    tiny_layers: int = 2
    tiny_heads: int = 2
    tiny_ff: int = 128
    tiny_conv_dim: int = 32


@dataclass
class PredictorConfig:
    """Stage 2: the speech- and style-conditioned latent predictor."""

    d_model: int = 256
    ff_dim: int = 384
    num_heads: int = 8
    num_layers: int = 12
    dropout: float = 0.1
    max_len: int = 5000
    w_latent: float = 1.0  # L1 between predicted and target latents
    w_exp: float = 0.15
    w_jaw: float = 0.1


@dataclass
class TrainConfig:
    """One training stage (optimiser, schedule, stopping, precision)."""

    epochs: int = 201
    max_steps: Optional[int] = None  # stop after this many optimiser steps (tests, smoke runs)
    batch_size: int = 1
    grad_accum: int = 1
    optimizer: str = "adamw"  # adamw | adam
    lr: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-9
    weight_decay: float = 0.01
    grad_clip: float = 0.0  # 0 = no clipping (official)
    patience: int = 5  # early stopping on the per-epoch validation loss; 0 = off
    seed: int = 1234
    precision: str = "fp32"  # fp32 | bf16 (autocast on CPU and CUDA)
    fast_dropout: bool = True  # dropout masks from 16-bit slices of 64-bit draws (same rates; faster on CPU)
    save_every_steps: int = 200  # also write last.pt mid-epoch so a killed run loses little
    val_every: int = 1  # validate every N epochs


def _pred_train_defaults() -> "TrainConfig":
    return TrainConfig(optimizer="adam", lr=1e-5, weight_decay=0.0)


def _facediffuser_train_defaults() -> "TrainConfig":
    # official FaceDiffuser (reference §10): torch Adam defaults with lr 1e-4, 51 epochs, no early stopping
    return TrainConfig(epochs=51, optimizer="adam", lr=1e-4, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0,
                       patience=0)


@dataclass
class FaceDiffuserConfig:
    """The FaceDiffuser comparison model (reference §10): diffusion in vertex space with HuBERT inside the denoiser.

    The network and schedule keys are fixed by a checkpoint; `sampler`, `sample_steps` and `eta` are read from the
    current config at generate/evaluate time.
    """

    feature_dim: int = 256  # width of each of the 3 streams (audio x style, noisy motion, diffusion step)
    conv_kernel: int = 9  # Conv1d(1 -> 1) kernel over the feature axis of the noisy motion (odd)
    gru_hidden: int = 256  # GRU width
    gru_layers: int = 2  # GRU layers
    gru_dropout: float = 0.3  # dropout between GRU layers (training)
    diffusion_steps: int = 1000  # diffusion timesteps
    beta_schedule: str = "cosine"  # cosine | linear
    sampler: str = "ddim"  # ddim | ddpm (ancestral, fixed-small variance)
    sample_steps: int = 100  # sample over the last N timesteps (official skip_timesteps = diffusion_steps - N)
    eta: float = 0.0  # DDIM eta (0 = deterministic given the start noise)


@dataclass
class GenerateConfig:
    """Inference settings for `generate`."""

    num_samples: int = 1
    temperature: float = 0.2  # VQ sampling temperature
    k: int = 1  # official top-k multinomial draw (last of k kept)
    deterministic: bool = False  # VQ: nearest code instead of sampling
    fact: float = 20.0  # VAE: z = mu + fact * sigma * eps
    mean: bool = False  # VAE: return mu (deterministic)
    seed: int = 1234
    format: str = "params"  # params ([1,T,403] float64, official layout) | motion ([T,53] float32) | vertices (FaceDiffuser)
    window_seconds: float = 60.0  # long audio is processed in windows of this length
    overlap_seconds: float = 2.0  # cross-faded overlap between windows
    batch_size: int = 1  # windows/jobs run as one padded batch; 1 = bit-identical whatever the batching/sharding
    precision: str = "auto"  # auto (bf16 where native: AVX512-BF16/AMX CPUs, CUDA) | fp32 (exact, official numerics) | bf16


@dataclass
class EvalConfig:
    """Settings for `evaluate`."""

    split: str = "test"
    num_samples: int = 10
    seed: int = 1234
    temperature: float = 0.2
    k: int = 1  # VQ: official top-k multinomial draw (last of k kept)
    deterministic: bool = False
    fact: float = 20.0
    mean: bool = False  # VAE: z = mu (deterministic)
    regions_dir: Optional[str] = None
    batch_size: int = 1  # clips per padded model batch; 1 = bit-identical to `generate` (larger helps on GPUs)
    baselines: bool = False
    plots: bool = False
    plot_clips: int = 3  # clips shown in the curve plots
    precision: str = "auto"  # auto | fp32 | bf16, as generate.precision
    out: str = "evaluation"  # output folder (flag --out)


@dataclass
class RenderConfig:
    """Settings for `render`."""

    size: int = 512
    fps: int = 25
    backend: str = "auto"  # auto | egl | osmesa
    color: list = field(default_factory=lambda: [0.72, 0.72, 0.78])
    camera_distance: float = 0.0  # 0 = frame the face automatically
    camera: list = field(default_factory=lambda: [0.0, 0.0])  # [yaw, pitch] degrees around the head; 0,0 = front
    crf: int = 20  # H.264 quality


@dataclass
class PathsConfig:
    """Locations of external assets."""

    flame_model: Optional[str] = None  # FLAME 2020 generic_model.pkl, or `demo`; env PROBTALK3D_FLAME_MODEL
    runs: str = "runs"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    train_prior: TrainConfig = field(default_factory=TrainConfig)
    train_pred: TrainConfig = field(default_factory=_pred_train_defaults)
    facediffuser: FaceDiffuserConfig = field(default_factory=FaceDiffuserConfig)
    train_facediffuser: TrainConfig = field(default_factory=_facediffuser_train_defaults)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Allowed values of enumerated keys, checked by validate().
CHOICES: dict[str, tuple] = {
    "prior.kind": ("vq", "vae"),
    "prior.token_layout": ("per_frame", "official"),
    "train_prior.optimizer": ("adamw", "adam"),
    "train_pred.optimizer": ("adamw", "adam"),
    "train_prior.precision": ("fp32", "bf16"),
    "train_pred.precision": ("fp32", "bf16"),
    "train_facediffuser.optimizer": ("adamw", "adam"),
    "train_facediffuser.precision": ("fp32", "bf16"),
    "facediffuser.beta_schedule": ("cosine", "linear"),
    "facediffuser.sampler": ("ddim", "ddpm"),
    "generate.format": ("params", "motion", "vertices"),
    "generate.precision": ("auto", "fp32", "bf16"),
    "eval.precision": ("auto", "fp32", "bf16"),
    "render.backend": ("auto", "egl", "osmesa"),
}

# Keys that must be > 0 (strictly) or >= 0.
POSITIVE = {
    "data.fps", "data.sample_rate", "prior.nfeats", "prior.d_model", "prior.ff_dim", "prior.num_heads",
    "prior.enc_layers", "prior.dec_layers", "prior.max_len", "prior.num_codes", "prior.code_dim",
    "audio.tiny_hidden", "audio.tiny_layers", "audio.tiny_heads", "audio.tiny_ff", "audio.tiny_conv_dim",
    "predictor.d_model", "predictor.ff_dim", "predictor.num_heads", "predictor.num_layers", "predictor.max_len",
    "train_prior.epochs", "train_prior.batch_size", "train_prior.grad_accum", "train_prior.lr", "train_prior.eps",
    "train_prior.val_every",
    "train_pred.epochs", "train_pred.batch_size", "train_pred.grad_accum", "train_pred.lr", "train_pred.eps",
    "train_pred.val_every",
    "generate.num_samples", "generate.temperature", "generate.k", "generate.window_seconds", "generate.batch_size",
    "eval.num_samples", "eval.temperature", "eval.batch_size", "eval.k", "eval.plot_clips", "render.size", "render.fps",
    "train_prior.max_steps", "train_pred.max_steps", "data.max_seconds",
    "train_facediffuser.epochs", "train_facediffuser.batch_size", "train_facediffuser.grad_accum",
    "train_facediffuser.lr", "train_facediffuser.eps", "train_facediffuser.val_every", "train_facediffuser.max_steps",
    "facediffuser.feature_dim", "facediffuser.conv_kernel", "facediffuser.gru_hidden", "facediffuser.gru_layers",
    "facediffuser.diffusion_steps", "facediffuser.sample_steps",
}
NON_NEGATIVE = {
    "data.num_workers", "prior.dropout", "predictor.dropout", "prior.beta", "prior.w_quant", "prior.w_exp",
    "prior.w_jaw", "prior.vae_w_kl", "prior.vae_w_exp", "prior.vae_w_jaw", "predictor.w_latent", "predictor.w_exp",
    "predictor.w_jaw", "audio.freeze_layers", "train_prior.weight_decay", "train_pred.weight_decay",
    "train_prior.grad_clip", "train_pred.grad_clip", "train_prior.patience", "train_pred.patience",
    "train_prior.save_every_steps", "train_pred.save_every_steps", "generate.fact", "generate.overlap_seconds",
    "eval.fact", "render.crf", "render.camera_distance", "audio.cache_cnn_max_gb",
    "train_facediffuser.weight_decay", "train_facediffuser.grad_clip", "train_facediffuser.patience",
    "train_facediffuser.save_every_steps", "facediffuser.gru_dropout", "facediffuser.eta",
}


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the YAML key and the fix."""


def _section_types(section_cls) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` to the annotated type `tp` or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if isinstance(value, str) and value.strip().lower() in ("null", "none", "~") and type(None) in args:
            return None
        return _coerce(value, inner[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    if tp is list or origin is list:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:  # e.g. '[1, 2' or a !!python tag: say what is wanted, not the parser's trace
                raise ConfigError(f"config key '{key}' must be a list of numbers written [a, b, ...], got {value!r}") from None
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        out = []
        for v in value:
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise ConfigError(f"config key '{key}' must be a list of numbers, got {value!r}") from None
        return out
    return value


def _apply_mapping(cfg: Config, mapping: dict, source: str) -> None:
    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(mapping).__name__}")
    sections = {f.name: f for f in dataclasses.fields(cfg)}
    for sec_name, values in mapping.items():
        if sec_name not in sections:
            raise ConfigError(
                f"{source}: unknown config section '{sec_name}'; valid sections: {', '.join(sections)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{sec_name}' must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            set_value(cfg, f"{sec_name}.{key}", value, source=source)


def set_value(cfg: Config, dotted: str, value: Any, source: str = "--set") -> None:
    """Set `section.key` on `cfg`, converting the value to the key's type.

    Raises:
        ConfigError: unknown section or key (listing the valid ones) or a value of the wrong type.
    """
    if "." not in dotted:
        raise ConfigError(f"{source}: '{dotted}' must look like section.key (for example train_prior.lr)")
    sec_name, key = dotted.split(".", 1)
    sections = {f.name for f in dataclasses.fields(cfg)}
    if sec_name not in sections:
        raise ConfigError(f"{source}: unknown config section '{sec_name}'; valid sections: {', '.join(sorted(sections))}")
    section = getattr(cfg, sec_name)
    hints = _section_types(type(section))
    if key not in hints:
        raise ConfigError(
            f"{source}: unknown config key '{dotted}'; valid keys of '{sec_name}': {', '.join(hints)}"
        )
    setattr(section, key, _coerce(value, hints[key], dotted))


def parse_override(text: str) -> tuple[str, Any]:
    """Split `section.key=value`; the value is parsed as YAML (so `true`, `3`, `[1, 2]` work)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}' must look like section.key=value (for example train_prior.lr=3e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def validate(cfg: Config) -> Config:
    """Check enumerations, signs and cross-field constraints; raise ConfigError naming the key."""
    for dotted, allowed in CHOICES.items():
        sec, key = dotted.split(".")
        v = getattr(getattr(cfg, sec), key)
        if v not in allowed:
            raise ConfigError(f"config key '{dotted}' must be one of {', '.join(allowed)}, got {v!r}")
    for dotted in POSITIVE | NON_NEGATIVE:
        sec, key = dotted.split(".")
        v = getattr(getattr(cfg, sec), key)
        if v is None:
            continue
        if dotted in POSITIVE and not v > 0:
            raise ConfigError(f"config key '{dotted}' must be greater than 0, got {v!r}")
        if dotted in NON_NEGATIVE and v < 0:
            raise ConfigError(f"config key '{dotted}' must not be negative, got {v!r}")
    for name in ("train_prior", "train_pred", "train_facediffuser"):
        t = getattr(cfg, name)
        if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
            raise ConfigError(f"config key '{name}.betas' must be two numbers in [0, 1), got {t.betas!r}")
    if cfg.prior.d_model % cfg.prior.num_heads:
        raise ConfigError("config key 'prior.num_heads' must divide 'prior.d_model'")
    if cfg.predictor.d_model % cfg.predictor.num_heads:
        raise ConfigError("config key 'predictor.num_heads' must divide 'predictor.d_model'")
    if cfg.prior.d_model % cfg.prior.code_dim:
        raise ConfigError("config key 'prior.code_dim' must divide 'prior.d_model' (2 codes per frame by default)")
    if cfg.predictor.d_model != cfg.prior.d_model:
        raise ConfigError("config keys 'predictor.d_model' and 'prior.d_model' must be equal (shared latent space)")
    if cfg.audio.tiny_hidden % cfg.audio.tiny_heads:
        raise ConfigError("config key 'audio.tiny_heads' must divide 'audio.tiny_hidden'")
    if len(cfg.render.color) not in (3, 4) or not all(0.0 <= c <= 1.0 for c in cfg.render.color):
        raise ConfigError("config key 'render.color' must be 3 numbers in [0, 1] (RGB)")
    fd = cfg.facediffuser
    if fd.conv_kernel % 2 == 0:
        raise ConfigError(f"config key 'facediffuser.conv_kernel' must be odd (a 'same' convolution), got {fd.conv_kernel}")
    if fd.sample_steps > fd.diffusion_steps:
        raise ConfigError(f"config key 'facediffuser.sample_steps' ({fd.sample_steps}) must not exceed "
                          f"'facediffuser.diffusion_steps' ({fd.diffusion_steps})")
    if cfg.generate.overlap_seconds * 2 >= cfg.generate.window_seconds:
        raise ConfigError("config key 'generate.overlap_seconds' must be less than half of 'generate.window_seconds'")
    return cfg


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with `safe_load` (never constructs Python objects)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist; pass an existing YAML file to --config")
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory; pass a YAML file to --config")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"config file {p} is not valid YAML ({first}); fix the file or drop --config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text; pass a YAML file to --config") from None


def from_dict(mapping: dict | None, source: str = "config") -> Config:
    """Build a validated Config from a nested dict (for example the one embedded in a checkpoint)."""
    cfg = Config()
    _apply_mapping(cfg, mapping or {}, source)
    return validate(cfg)


def load_config(
    config_files: Optional[list[str | Path] | str | Path] = None,
    overrides: Optional[list[str]] = None,
    flags: Optional[dict[str, Any]] = None,
) -> Config:
    """Resolve the configuration by precedence and validate it.

    Args:
        config_files: YAML files applied in order over the defaults.
        overrides: `section.key=value` strings (from repeated `--set`).
        flags: `section.key -> value` from explicit CLI flags; None values are ignored (flag not given).

    Returns:
        A validated `Config`.
    """
    cfg = Config()
    if config_files is not None and not isinstance(config_files, (list, tuple)):
        config_files = [config_files]
    for f in config_files or []:
        _apply_mapping(cfg, read_yaml(f), f"config file {f}")
    for text in overrides or []:
        key, value = parse_override(text)
        set_value(cfg, key, value, source=f"--set {text}")
    for key, value in (flags or {}).items():
        if value is not None:
            set_value(cfg, key, value, source=f"flag for '{key}'")
    return validate(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (atomically)."""
    from probtalk3d_cli.io import atomic_write_text

    text = "# resolved probtalk3d configuration\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return atomic_write_text(path, text)
