"""The two training stages as library functions: `train_prior` (stage 1) and `train_pred` (stage 2).

Both build a `StageSpec` (model, datasets, loss) and hand it to the one `Trainer`. A run directory holds the resolved
`config.yaml`, `last.pt` (resumable), `best.pt` (lowest per-epoch validation loss; what downstream commands use),
`metrics.jsonl` and `loss_curve.png`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from probtalk3d_cli.config import Config, save_config
from probtalk3d_cli.training.trainer import StageSpec, Trainer, TrainResult, dist_info

log = logging.getLogger(__name__)

# Official bugs §11 fixed by this trainer (recorded in checkpoint meta and the README).
FIXES = [
    "per-epoch loss means reset every epoch (official accumulators never reset)",
    "frozen prior kept in eval mode during stage 2",
    "best checkpoint chosen by per-epoch validation loss and used downstream",
    "early stopping on the real per-epoch validation loss",
]


def _prepare_run_dir(out: Path, resume: bool) -> tuple[Path, bool]:
    """Check the run directory; returns (path, resume) where resume is False when nothing was saved yet."""
    from probtalk3d_cli.io import check_output_dir

    out = Path(out)
    last = out / "last.pt"
    if resume and not last.exists():
        log.info("--resume: %s holds no last.pt yet; starting the run from the beginning", out)
        resume = False
    elif not resume and last.exists():
        raise ValueError(
            f"{out} already holds a run (last.pt); continue it with --resume or choose a new --out folder"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the run")
    if resume:  # temporary files of a killed save are never mistaken for results; clear them
        for stale in out.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
    check_output_dir(out)  # created with config.yaml, once every input has been checked
    return out, resume


def _max_frames(cfg: Config) -> Optional[int]:
    return None if cfg.data.max_seconds is None else max(2, int(round(cfg.data.max_seconds * cfg.data.fps)))


def _data_meta(cfg: Config, data_root: Path, splitset, n_train: int, n_val: int) -> dict:
    return {"data": {"root": str(data_root), "splits": splitset.name, "train_clips": n_train, "val_clips": n_val,
                     "max_seconds": cfg.data.max_seconds}, "fixes": FIXES}


# --------------------------------------------------------------------------------------------------------
# Stage 1
# --------------------------------------------------------------------------------------------------------


def prior_val_step(prior, batch: dict, pcfg) -> tuple[dict, dict]:
    """One validation batch of stage 1: the loss terms plus the §3.5 metrics, from a single forward pass.

    Metrics in normalised 53-d space, deterministic reconstruction: mean_l2 = per-frame Euclidean error with frames
    pooled; mean_var = per clip, the Euclidean norm of the difference of per-feature temporal variances (unbiased)
    of reconstruction and reference, averaged over clips. Metrics are name -> (sum, count) so the trainer can pool
    them over batches and processes.
    """
    import torch

    from probtalk3d_cli.training.losses import prior_losses

    out = prior(batch["motion"], batch["mask"])
    terms = prior_losses(prior, batch, pcfg, out=out)
    mask = batch["mask"]
    err = (out.recon - batch["motion"]).norm(dim=-1)  # [B, T]
    var_sum, n = 0.0, 0
    for i in range(mask.shape[0]):
        t = int(mask[i].sum())
        if t < 2:
            continue
        r, g = out.recon[i, :t], batch["motion"][i, :t]
        var_sum += float(torch.linalg.vector_norm(r.var(dim=0, unbiased=True) - g.var(dim=0, unbiased=True)))
        n += 1
    return terms, {"mean_l2": (float((err * mask).sum()), float(mask.sum())), "mean_var": (var_sum, float(n))}


def _fast_dropout(model, audio_encoder=None) -> None:
    """Training only: dropout masks from `layers.fast_dropout` (same rates, fewer random draws; a 5 s stage-2 step
    of the full-size model spends about 0.2 s on per-element masks otherwise). No parameters change, so checkpoints
    are the same either way."""
    from probtalk3d_cli.models.layers import use_fast_dropout

    if audio_encoder is not None:
        audio_encoder.use_fast_dropout()
    use_fast_dropout(model)


def _fit(spec: StageSpec, run_dir: Path, device, resume: bool, cache=None) -> TrainResult:
    """Write the resolved config.yaml (rank 0), run the Trainer, and log the CNN feature cache's use."""
    if dist_info().is_main:
        save_config(spec.cfg, run_dir / "config.yaml")
    result = Trainer(spec, run_dir, device, resume=resume).fit()
    if cache is not None:
        log.info("CNN feature cache: %d hits, %d misses, %.1f MB", cache.hits, cache.misses, cache.bytes / 1e6)
    return result


def train_prior(cfg: Config, data_root: str | Path, out: str | Path, device, resume: bool = False) -> TrainResult:
    """Stage 1: train the motion prior (VQ-VAE, or the VAE variant when cfg.prior.kind == "vae").

    Args:
        cfg: resolved Config (sections data, prior, train_prior are used).
        data_root: DATA folder written by `probtalk3d preprocess`.
        out: run directory (created; must not hold a run unless `resume`).
        device: torch.device.
        resume: continue from out/last.pt exactly.

    Returns:
        TrainResult (paths of best.pt / last.pt, epochs, steps, best validation loss, history).
    """
    from probtalk3d_cli.data.dataset import MotionDataset, check_clip_files, collate_clips
    from probtalk3d_cli.data.splits import list_clips, load_splits
    from probtalk3d_cli.device import seed_everything
    from probtalk3d_cli.models.prior import build_prior, normalisation_meta
    from probtalk3d_cli.training.losses import prior_losses

    data_root = Path(data_root)
    run_dir, resume = _prepare_run_dir(Path(out), resume)
    cfg.data.root = str(data_root)
    seed_everything(cfg.train_prior.seed)
    splitset = load_splits(data_root, cfg.data.splits)
    train_keys = list_clips(data_root, "prior", "train", cfg.data.splits)
    val_keys = list_clips(data_root, "prior", "val", cfg.data.splits)
    check_clip_files(data_root, train_keys + val_keys)  # a damaged file stops the run now, not after hours
    log.info("stage 1: %d training clips, %d validation clips (%s splits)", len(train_keys), len(val_keys),
             splitset.name)
    train_set = MotionDataset(data_root, train_keys, cache=cfg.data.cache, max_frames=_max_frames(cfg),
                              seed=cfg.train_prior.seed)
    val_set = MotionDataset(data_root, val_keys, cache=cfg.data.cache)
    prior = build_prior(cfg)
    if cfg.train_prior.fast_dropout:
        _fast_dropout(prior)
    meta = {"normalisation": normalisation_meta(), "seed": cfg.train_prior.seed}
    meta.update(_data_meta(cfg, data_root, splitset, len(train_keys), len(val_keys)))
    spec = StageSpec(name="prior", kind="prior", cfg=cfg, tcfg=cfg.train_prior, model=prior, train_set=train_set,
                     val_set=val_set, collate=collate_clips, loss_fn=lambda m, b: prior_losses(m, b, cfg.prior),
                     meta=meta, val_fn=lambda m, b: prior_val_step(m, b, cfg.prior))
    return _fit(spec, run_dir, device, resume)


# --------------------------------------------------------------------------------------------------------
# Stage 2
# --------------------------------------------------------------------------------------------------------


class CnnFeatureCache:
    """RAM cache of the frozen HuBERT CNN output per clip key (exact: the CNN is deterministic and frozen).

    Only used without random crops (a crop changes the CNN's group-norm statistics). Stops adding entries beyond
    `max_bytes` (those clips are recomputed every time).
    """

    def __init__(self, max_bytes: float):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.store: dict[str, object] = {}
        self.hits = 0
        self.misses = 0

    def features(self, model, batch: dict):
        import torch

        enc = model.audio_encoder
        per_clip, lengths = [], []
        for i, key in enumerate(batch["keys"]):
            f = self.store.get(key)
            if f is None:
                self.misses += 1
                n = int(batch["audio_lengths"][i])
                cnn, fl = enc.cnn_features(batch["audio"][i:i + 1, :n], batch["audio_lengths"][i:i + 1])
                f = cnn[0, : int(fl[0])].detach()
                if self.bytes + f.numel() * f.element_size() <= self.max_bytes:
                    self.store[key] = f
                    self.bytes += f.numel() * f.element_size()
            else:
                self.hits += 1
            per_clip.append(f)
            lengths.append(f.shape[0])
        cnn = torch.nn.utils.rnn.pad_sequence(per_clip, batch_first=True)
        return enc.forward_from_cnn(cnn, torch.tensor(lengths, device=cnn.device))


def _cnn_cache_usable(cfg: Config) -> bool:
    return cfg.audio.cache_cnn and cfg.audio.freeze_feature_encoder and cfg.data.max_seconds is None


def train_pred(cfg: Config, data_root: str | Path, out: str | Path, device, prior: Optional[str | Path] = None,
               resume: bool = False, expect_vae: bool = False) -> TrainResult:
    """Stage 2: train the speech- and style-conditioned predictor on top of a frozen prior.

    Args:
        cfg: resolved Config (data, audio, predictor, train_pred; the prior section is taken from the prior).
        data_root: DATA folder.
        out: run directory.
        device: torch.device.
        prior: stage-1 run directory or prior checkpoint (not needed with `resume`).
        resume: continue from out/last.pt exactly (the model is rebuilt from it; no network needed).
        expect_vae: the user asked for the VAE variant (`--vae`); the prior must then be a VAE prior.

    Returns:
        TrainResult; best.pt / last.pt are self-contained predictor checkpoints.
    """
    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.data.dataset import AudioMotionDataset, check_clip_files, collate_clips
    from probtalk3d_cli.data.splits import list_clips, load_splits
    from probtalk3d_cli.device import seed_everything
    from probtalk3d_cli.models.predictor import MotionPredictor
    from probtalk3d_cli.models.prior import MotionPrior
    from probtalk3d_cli.training.losses import predictor_losses

    data_root = Path(data_root)
    run_dir, resume = _prepare_run_dir(Path(out), resume)
    cfg.data.root = str(data_root)
    seed_everything(cfg.train_pred.seed)
    splitset = load_splits(data_root, cfg.data.splits)
    identities = list(splitset.identities)
    train_keys = list_clips(data_root, "pred", "train", cfg.data.splits)
    val_keys = list_clips(data_root, "pred", "val", cfg.data.splits)
    check_clip_files(data_root, train_keys + val_keys, audio=True)  # damaged files, mismatched wav/npy pairs
    if resume:
        payload = load_checkpoint(run_dir / "last.pt", expect="predictor")
        model = MotionPredictor.from_checkpoint(payload)
        if list(model.identities) != identities:
            raise ValueError(f"the run was trained with identities {model.identities}, but the data's splits define "
                             f"{identities}; resume with the same data")
        prior_path = (payload.get("meta") or {}).get("prior_checkpoint")
    else:
        if prior is None:
            raise ValueError("train-pred needs --prior RUN_OR_CKPT (a stage-1 run directory or prior checkpoint)")
        ppayload = load_checkpoint(prior, expect="prior")
        prior_model = MotionPrior.from_checkpoint(ppayload)
        prior_path = ppayload["path"]
        if expect_vae and prior_model.kind != "vae":
            raise ValueError(f"--vae was given but {prior_path} is a {prior_model.kind} prior; train a VAE prior "
                             "with probtalk3d train-prior --vae")
        cfg.prior = prior_model.cfg
        model = MotionPredictor.from_configs(cfg, identities, prior_model)
    cfg.prior, cfg.audio = model.config.prior, model.config.audio  # the checkpoint must describe the model
    if cfg.train_pred.fast_dropout:
        _fast_dropout(model, model.audio_encoder)
    log.info("stage 2: %d training clips, %d validation clips, %d identities", len(train_keys), len(val_keys),
             len(identities))
    train_set = AudioMotionDataset(data_root, train_keys, identities, cache=cfg.data.cache,
                                   max_frames=_max_frames(cfg), seed=cfg.train_pred.seed)
    val_set = AudioMotionDataset(data_root, val_keys, identities, cache=cfg.data.cache)
    cache = CnnFeatureCache(cfg.audio.cache_cnn_max_gb * 1e9) if _cnn_cache_usable(cfg) else None

    def loss_fn(m, batch):
        feats = cache.features(m, batch) if cache is not None else None
        return predictor_losses(m, batch, cfg.predictor, feats=feats)

    meta = model.checkpoint_meta()
    meta.update({"prior_checkpoint": str(prior_path) if prior_path else None, "seed": cfg.train_pred.seed})
    meta.update(_data_meta(cfg, data_root, splitset, len(train_keys), len(val_keys)))
    spec = StageSpec(name="pred", kind="predictor", cfg=cfg, tcfg=cfg.train_pred, model=model, train_set=train_set,
                     val_set=val_set, collate=collate_clips, loss_fn=loss_fn, meta=meta)
    return _fit(spec, run_dir, device, resume, cache)


# --------------------------------------------------------------------------------------------------------
# FaceDiffuser (the comparison model, reference §10)
# --------------------------------------------------------------------------------------------------------


def train_facediffuser(cfg: Config, data_root: str | Path, out: str | Path, device, resume: bool = False
                       ) -> TrainResult:
    """Train the FaceDiffuser comparison model in vertex space (reference §10) with the common trainer.

    Needs DATA/vertex/<KEY>.npy and DATA/templates_vert.npz from `probtalk3d preprocess vertices`. Same stage-2
    clips, splits and identities as `train_pred`; loss = masked MSE of the predicted x0 at a uniform timestep.
    Validation draws its timestep and noise per clip from (seed, key), so validation losses of different epochs
    are comparable and best.pt is the epoch with the lowest one.

    Args:
        cfg: resolved Config (sections data, audio, facediffuser, train_facediffuser).
        data_root: DATA folder (with the vertex data).
        out: run directory.
        device: torch.device.
        resume: continue from out/last.pt exactly (the model is rebuilt from it; no network needed).

    Returns:
        TrainResult; best.pt / last.pt are self-contained `facediffuser` checkpoints (HuBERT, denoiser, templates).
    """
    from probtalk3d_cli.checkpoint import load_checkpoint
    from probtalk3d_cli.data.dataset import collate_clips
    from probtalk3d_cli.data.splits import list_clips, load_splits
    from probtalk3d_cli.data.vertices_data import VertexAudioDataset, check_vertex_data, load_vertex_templates
    from probtalk3d_cli.device import seed_everything
    from probtalk3d_cli.models.facediffuser import FaceDiffuser, facediffuser_losses, validation_draws

    data_root = Path(data_root)
    tcfg = cfg.train_facediffuser
    splitset = load_splits(data_root, cfg.data.splits)
    identities = list(splitset.identities)
    train_keys = list_clips(data_root, "pred", "train", cfg.data.splits)
    val_keys = list_clips(data_root, "pred", "val", cfg.data.splits)
    vertex_info = check_vertex_data(data_root, train_keys + val_keys, identities)  # before creating the run folder
    run_dir, resume = _prepare_run_dir(Path(out), resume)
    cfg.data.root = str(data_root)
    seed_everything(tcfg.seed)
    if resume:
        model = FaceDiffuser.from_checkpoint(load_checkpoint(run_dir / "last.pt", expect="facediffuser"))
        if list(model.identities) != identities:
            raise ValueError(f"the run was trained with identities {model.identities}, but the data's splits define "
                             f"{identities}; resume with the same data")
    else:
        templates = load_vertex_templates(data_root).select(identities)
        model = FaceDiffuser.from_configs(cfg, identities, templates)
    if int(vertex_info.get("num_vertices", model.num_vertices)) != model.num_vertices:
        raise ValueError(f"the run's model has {model.num_vertices} vertices but {data_root} holds vertex data of "
                         f"{vertex_info.get('num_vertices')}; resume with the same vertex data")
    cfg.audio, cfg.facediffuser = model.config.audio, model.config.facediffuser  # the checkpoint describes the model
    log.info("FaceDiffuser: %d training clips, %d validation clips, %d identities, %d vertices", len(train_keys),
             len(val_keys), len(identities), model.num_vertices)
    train_set = VertexAudioDataset(data_root, train_keys, identities, model.num_vertices, cache=cfg.data.cache,
                                   max_frames=_max_frames(cfg), seed=tcfg.seed)
    val_set = VertexAudioDataset(data_root, val_keys, identities, model.num_vertices, cache=cfg.data.cache)
    cache = CnnFeatureCache(cfg.audio.cache_cnn_max_gb * 1e9) if _cnn_cache_usable(cfg) else None

    def loss_fn(m, batch):
        return facediffuser_losses(m, batch, feats=cache.features(m, batch) if cache is not None else None)

    def val_fn(m, batch):
        feats = cache.features(m, batch) if cache is not None else None
        return facediffuser_losses(m, batch, feats=feats,
                                   draws=validation_draws(batch, m.schedule.steps, tcfg.seed)), {}

    meta = model.checkpoint_meta()
    meta.update({"seed": tcfg.seed, "vertex_data": vertex_info})
    meta.update(_data_meta(cfg, data_root, splitset, len(train_keys), len(val_keys)))
    meta["fixes"] = ["HuBERT features computed once per clip and reused by every denoising step (official: every "
                     "step, reference §11.10)", "padded batches with masks (official: batch size 1)"]
    spec = StageSpec(name="facediffuser", kind="facediffuser", cfg=cfg, tcfg=tcfg, model=model, train_set=train_set,
                     val_set=val_set, collate=collate_clips, loss_fn=loss_fn, meta=meta, val_fn=val_fn)
    return _fit(spec, run_dir, device, resume, cache)
