"""import-official on fake official Lightning checkpoints (random tensors with the manifests' keys and shapes):
safe loading, tensor-by-tensor round trip, official computation (audio preprocessing, pairing, channel-major
quantiser reshape, attention scale), and offline generation with the imported full-size model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers.official_fake import fake_state_dict, save_lightning_ckpt
from probtalk3d_cli.checkpoint import load_checkpoint
from probtalk3d_cli.data.schema import OFFICIAL_TRAIN_SUBJECTS, motion_frames_for_audio
from probtalk3d_cli.generation import Sampling, generate, generate_motion, load_model
from probtalk3d_cli.io import save_wav
from probtalk3d_cli.models.official_keys import official_key_to_ours
from probtalk3d_cli.models.quantizer import VectorQuantizer
from probtalk3d_cli.official import import_official, load_lightning_checkpoint


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(t.size)
            ).astype(np.float32)


# ---- safe loading ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prior_sd():
    return fake_state_dict("prior", seed=11)


def test_lightning_extras_load_through_the_allow_list(prior_sd, tmp_path):
    path = save_lightning_ckpt(tmp_path / "last.ckpt", prior_sd)
    with pytest.raises(Exception, match="(?i)weights only load failed"):
        torch.load(path, weights_only=True)  # the extras defeat plain weights-only loading
    ckpt = load_lightning_checkpoint(path)
    assert ckpt["hyper_parameters"] == {
        "lr": 1e-5, "run_id": "a1b2c3d4", "folder": "/data/outputs/MEAD/vqvae_pred",
        "args": {"seed": 1234, "experiment": "vqvae_pred"},
        "model": {"latent_dim": 256, "ff_size": 384, "name": "vqvae"},
    }
    assert (ckpt["epoch"], ckpt["global_step"], ckpt["pytorch-lightning_version"]) == (200, 64321, "2.1.4")
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in prior_sd.items())
    plain = save_lightning_ckpt(tmp_path / "plain.ckpt", prior_sd, extras=False)
    assert load_lightning_checkpoint(plain)["epoch"] == 200  # weights_only alone suffices


def test_malicious_pickle_is_refused_without_running(prior_sd, tmp_path):
    marker = tmp_path / "pwned"
    path = save_lightning_ckpt(tmp_path / "evil.ckpt", prior_sd, malicious=marker)
    with pytest.raises(ValueError, match=r"holds objects that are not checkpoint data \(posix.system\); refusing"):
        load_lightning_checkpoint(path)
    with pytest.raises(ValueError, match="posix.system"):
        import_official(path, tmp_path / "out.pt", "prior")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    torch.save({"state_dict": prior_sd, "x": eval}, tmp_path / "evil2.ckpt")  # builtins.eval
    with pytest.raises(ValueError, match="builtins.eval"):
        load_lightning_checkpoint(tmp_path / "evil2.ckpt")


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="empty"):
        load_lightning_checkpoint(tmp_path / "empty.ckpt")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_lightning_checkpoint(tmp_path / "junk.ckpt")
    with pytest.raises(FileNotFoundError):
        load_lightning_checkpoint(tmp_path / "missing.ckpt")


# ---- stage 1 ---------------------------------------------------------------------------------------------


def test_prior_round_trip(prior_sd, tmp_path):
    src = save_lightning_ckpt(tmp_path / "last.ckpt", prior_sd)
    res = import_official(src, tmp_path / "prior.pt", "prior")
    assert (res.kind, res.tensors, res.parameters, res.epoch) == ("vq", 146, 6_375_680, 200)
    payload = load_checkpoint(tmp_path / "prior.pt", expect="prior")
    assert payload["config"]["prior"]["token_layout"] == "official"
    assert payload["meta"]["source"] == "official" and payload["meta"]["official"]["global_step"] == 64321
    landed = 0
    for key, value in prior_sd.items():
        if key.startswith("_losses."):
            continue
        assert torch.equal(payload["model"][official_key_to_ours(key, "prior")], value), key
        landed += 1
    assert landed == len(payload["model"]) == 146


def test_vae_variant_and_stage_checks(tmp_path):
    vae = save_lightning_ckpt(tmp_path / "vae.ckpt", fake_state_dict("prior", seed=2, variant="vae"))
    res = import_official(vae, tmp_path / "vae.pt", "prior", variant="vae")
    assert res.kind == "vae" and res.parameters == 6_474_496
    with pytest.raises(ValueError, match="--variant vq was given but .* holds the VAE variant"):
        import_official(vae, tmp_path / "x.pt", "prior", variant="vq")
    with pytest.raises(ValueError, match="stage-1 \\(prior\\) checkpoint; use --stage prior"):
        import_official(vae, tmp_path / "x.pt", "pred")
    with pytest.raises(ValueError, match="--stage must be prior or pred"):
        import_official(vae, tmp_path / "x.pt", "stage1")
    with pytest.raises(ValueError, match="--prior only applies to --stage pred"):
        import_official(vae, tmp_path / "x.pt", "prior", prior=vae)


def test_key_problems_are_listed_in_one_line(prior_sd, tmp_path):
    broken = dict(prior_sd)
    del broken["motion_decoder.feature_mapping_reverse.weight"]
    broken["motion_encoder.extra.weight"] = torch.zeros(2)
    broken["quantize.embedding.weight"] = torch.zeros(256, 64)
    src = save_lightning_ckpt(tmp_path / "broken.ckpt", broken)
    with pytest.raises(ValueError) as info:
        import_official(src, tmp_path / "x.pt", "prior")
    msg = str(info.value)
    assert "\n" not in msg and "missing (our keys): decoder.out.weight" in msg
    assert "unexpected: motion_encoder.extra.weight" in msg
    assert "mis-shaped: quantize.embedding.weight [256, 64] (expected [256, 128])" in msg
    assert not (tmp_path / "x.pt").exists()


# ---- the official computation ----------------------------------------------------------------------------


def test_official_quantiser_layout_on_a_hand_built_example():
    # T = 3 frames, latent width 4, code size 2: the channel-major reshape makes rows of time within a channel
    z = torch.tensor([[[1.0, 10.0, 100.0, 1000.0],
                       [2.0, 20.0, 200.0, 2000.0],
                       [3.0, 30.0, 300.0, 3000.0]]])  # [1, T=3, D=4]
    official = VectorQuantizer(num_codes=6, code_dim=2, layout="official")
    rows = official.to_tokens(z, torch.tensor([3]))
    assert rows.tolist() == [[1, 2], [3, 10], [20, 30], [100, 200], [300, 1000], [2000, 3000]]
    per_frame = VectorQuantizer(num_codes=6, code_dim=2, layout="per_frame")
    assert per_frame.to_tokens(z, torch.tensor([3])).tolist() == [[1, 10], [100, 1000], [2, 20], [200, 2000],
                                                                   [3, 30], [300, 3000]]
    codebook = torch.tensor([[1.0, 2.0], [3.0, 10.0], [0.0, 0.0], [-1.0, -1.0], [5.0, 5.0], [9.0, 9.0]])
    for q in (official, per_frame):
        q.codebook.weight.data.copy_(codebook)
    out = official(z)
    # nearest codes: row0 [1,2] -> 0, row1 [3,10] -> 1, every larger row -> [9,9] (code 5)
    assert out.codes.tolist() == [[0, 1, 5, 5, 5, 5]]
    # quantised rows [1,2],[3,10],[9,9] x 4 flatten to 1,2,3 | 10,9,9 | 9,9,9 | 9,9,9 = channels 0..3 over time
    expected = torch.tensor([[1.0, 10.0, 9.0, 9.0], [2.0, 9.0, 9.0, 9.0], [3.0, 9.0, 9.0, 9.0]])[None]
    assert torch.equal(out.z_q, expected)
    other = per_frame(z)
    assert not torch.equal(other.z_q, out.z_q) and other.codes.tolist() != out.codes.tolist()


@pytest.fixture(scope="module")
def official_pred(tmp_path_factory):
    """A fake official stage-2 checkpoint (full size, ~430 MB), its stage-1 counterpart, and the import."""
    root = tmp_path_factory.mktemp("official")
    sd = fake_state_dict("pred", seed=5)
    src = save_lightning_ckpt(root / "stage_2.ckpt", sd)
    prior_sd = {k[len("motion_prior."):]: v for k, v in sd.items() if k.startswith("motion_prior.")}
    prior_src = save_lightning_ckpt(root / "stage_1.ckpt", prior_sd, extras=False)
    res = import_official(src, root / "official.pt", "pred", prior=prior_src)
    return {"root": root, "sd": sd, "src": src, "prior_src": prior_src, "res": res, "prior_sd": prior_sd}


def test_predictor_round_trip_and_prior_check(official_pred, tmp_path):
    res, sd = official_pred["res"], official_pred["sd"]
    assert (res.kind, res.tensors, res.parameters) == ("vq", 497, 107_073_664)
    assert res.prior_check == "stage_1.ckpt matches the prior inside stage_2.ckpt (146 tensors)"
    payload = load_checkpoint(res.path, expect="predictor")
    meta = payload["meta"]
    assert meta["identities"] == list(OFFICIAL_TRAIN_SUBJECTS) and len(meta["emotions"]) == 8
    assert meta["intensities"] == ["low", "medium", "high"]
    assert meta["normalisation"]["exp_range"] == [-3.0, 3.0] and meta["normalisation"]["jaw_range"] == [-0.1, 0.5]
    assert meta["hubert_config"]["num_hidden_layers"] == 12 and meta["hubert_config"]["hidden_size"] == 768
    assert payload["config"]["prior"]["token_layout"] == "official"
    landed = 0
    for key, value in sd.items():
        if "_losses." in key:
            continue
        assert torch.equal(payload["model"][official_key_to_ours(key, "pred")], value), key
        landed += 1
    assert landed == len(payload["model"]) == 497
    wrong = dict(official_pred["prior_sd"])
    wrong["quantize.embedding.weight"] = wrong["quantize.embedding.weight"] + 1.0
    other = save_lightning_ckpt(tmp_path / "other_stage_1.ckpt", wrong, extras=False)
    with pytest.raises(ValueError, match=r"does not match the prior inside .* \(1 of 146 tensors differ, e.g. "
                                         r"quantizer.codebook.weight\)"):
        import_official(official_pred["src"], tmp_path / "x.pt", "pred", prior=other)
    with pytest.raises(ValueError, match="stage-2 \\(predictor\\) checkpoint; use --stage pred"):
        import_official(official_pred["src"], tmp_path / "x.pt", "prior")


@pytest.fixture(scope="module")
def imported(official_pred):
    return load_model(official_pred["res"].path)[0]


def test_imported_model_computes_the_official_pipeline(imported):
    model = imported
    audio = _audio(1.2)
    with torch.no_grad():
        # official audio path (§1.4, §4.1-4.2): min-max to [-1, 1], processor normalisation (eps 1e-7), HuBERT,
        # drop an odd last frame, frame pairs concatenated
        x = torch.from_numpy(audio).double()
        x = 2 * (x - x.min()) / (x.max() - x.min()) - 1
        x = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()
        hidden = model.audio_encoder.hubert(x[None]).last_hidden_state  # [1, A, 768]
        a = hidden.shape[1] // 2 * 2
        paired = hidden[:, :a].reshape(1, a // 2, 1536)
        feats, lengths = model.encode_audio(torch.from_numpy(audio)[None], torch.tensor([audio.size]))
        assert feats.shape == paired.shape and int(lengths[0]) == motion_frames_for_audio(audio.size) == 29
        torch.testing.assert_close(feats, paired, atol=2e-4, rtol=1e-3)
        # predictor, then the channel-major quantiser reshape of the official code, then the decoder
        style = (torch.tensor([31]), torch.tensor([6]), torch.tensor([2]))
        z = model.predict_latent(feats, None, *style)  # [1, T, 256]
        rows = z.permute(0, 2, 1).contiguous().view(-1, 128)  # [B, 256, T] viewed as rows of 128
        e = model.prior.quantizer.codebook.weight
        dist = rows.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * rows @ e.t()
        zq = e[dist.argmin(1)].view(1, 256, -1).permute(0, 2, 1)
        official = model.prior.decode(zq)[0]
    ours = generate_motion(model, audio, "W029", "angry", "high", sampling=Sampling(deterministic=True),
                           denormalise=False)
    np.testing.assert_allclose(ours[0], official.numpy(), rtol=1e-5, atol=1e-5)


def test_imported_attention_uses_the_model_width_scale(imported):
    attn = imported.predictor.blocks[0].attn
    assert attn.scale == 256 ** -0.5 == 1 / 16
    x = torch.randn(1, 7, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q, k, v = attn.to_qkv(x).chunk(3, dim=-1)  # first 256 = Q, next K, last V
        heads = lambda t: t.view(1, 7, 8, 32).transpose(1, 2)  # noqa: E731  8 contiguous 32-d heads
        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(256)  # width, not head size (§11.6)
        manual = attn.to_out((scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(1, 7, 256))
        torch.testing.assert_close(attn(x), manual, atol=1e-5, rtol=1e-5)


def test_generate_runs_offline_on_the_imported_model(official_pred, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_wav(tmp_path / "clip.wav", _audio(1.5, 3))
    res = generate(official_pred["res"].path, [tmp_path / "clip.wav"], tmp_path / "out", subject="M009",
                   emotion="happy", intensity="high")
    params = np.load(res.outputs[0].path)
    assert res.outputs[0].path.name == "clip_M009_happy_high.npy"
    assert params.shape == (1, motion_frames_for_audio(24000), 403) and np.isfinite(params).all()
    meta = json.loads(res.outputs[0].sidecar.read_text())
    assert meta["checkpoint"]["token_layout"] == "official" and meta["checkpoint"]["source"] == "official"
