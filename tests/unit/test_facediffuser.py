"""FaceDiffuser (reference §10): schedule, DDIM/DDPM steps, network sizes, masks, loss, sampling, checkpoints, and the
`preprocess vertices` library (§8.6)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from probtalk3d_cli.config import Config, load_config
from probtalk3d_cli.models.facediffuser import (
    DiffusionSchedule,
    FaceDiffuser,
    FaceDiffuserDenoiser,
    facediffuser_losses,
    make_betas,
    validation_draws,
)
from probtalk3d_cli.models.layers import count_parameters, mask_from_lengths

IDS = ["S1", "S2"]
V = 7  # vertices of the toy template
AUDIO_LENGTHS = [8_080, 5_200]  # -> 25, 16 HuBERT frames -> 12, 8 pairs
MOTION_LENGTHS = [12, 9]  # T' = min(T, A // 2) = 12, 8


@pytest.fixture(scope="module")
def cfg():
    return load_config(["configs/tiny.yaml"])


def _templates(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(IDS), V, 3, generator=g) * 0.1


def _model(cfg, seed=0, train_output=True):
    torch.manual_seed(seed)
    m = FaceDiffuser.from_configs(cfg, IDS, _templates())
    if train_output:  # give the zero-initialised output layer weights so the tests see the network at work
        with torch.no_grad():
            m.denoiser.out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + 1))
    return m.eval()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(2, max(AUDIO_LENGTHS))
    for i, n in enumerate(AUDIO_LENGTHS):
        audio[i, :n] = torch.randn(n, generator=g)
    t = max(MOTION_LENGTHS)
    mask = mask_from_lengths(torch.tensor(MOTION_LENGTHS), t)
    motion = torch.randn(2, t, V * 3, generator=g) * 0.01 * mask[:, :, None]
    return {"keys": ["S1_001_1_2", "S2_002_0_0"], "audio": audio, "audio_lengths": torch.tensor(AUDIO_LENGTHS),
            "motion": motion, "mask": mask, "lengths": torch.tensor(MOTION_LENGTHS), "subject": torch.tensor([0, 1]),
            "emotion": torch.tensor([1, 0]), "intensity": torch.tensor([2, 0])}


def _item(batch, i):
    n, s = MOTION_LENGTHS[i], AUDIO_LENGTHS[i]
    return {"keys": batch["keys"][i:i + 1], "audio": batch["audio"][i:i + 1, :s], "audio_lengths": torch.tensor([s]),
            "motion": batch["motion"][i:i + 1, :n], "mask": torch.ones(1, n, dtype=torch.bool),
            "lengths": torch.tensor([n]), "subject": batch["subject"][i:i + 1],
            "emotion": batch["emotion"][i:i + 1], "intensity": batch["intensity"][i:i + 1]}


# --------------------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------------------


def _f(t, steps=1000, s=0.008):
    return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2


def test_cosine_schedule_matches_the_closed_form():
    sch = DiffusionSchedule(1000, "cosine")
    # without clipping the product telescopes: alpha_bar_t = f(t + 1) / f(0)
    for t in (0, 1, 99, 500, 900):
        assert sch.alphas_cumprod[t] == pytest.approx(_f(t + 1) / _f(0), rel=1e-9)
    assert sch.betas[0] == pytest.approx(1 - _f(1) / _f(0), rel=1e-12)
    assert sch.betas[-1] == 0.999 and np.all(np.diff(sch.betas) > 0)
    assert sch.sqrt_one_minus_ac[99] == pytest.approx(0.1670547, abs=1e-6)  # the official start scale (skip 900)
    lin = make_betas("linear", 1000)
    assert (lin[0], lin[-1]) == (pytest.approx(1e-4), pytest.approx(0.02))
    with pytest.raises(ValueError, match="cosine or linear"):
        make_betas("quadratic", 10)


def test_fixed_small_variance_is_the_true_posterior_variance():
    sch = DiffusionSchedule(1000)
    t = 10
    ac, ac_prev, b = sch.alphas_cumprod[t], sch.alphas_cumprod[t - 1], sch.betas[t]
    assert sch.posterior_variance[t] == pytest.approx(b * (1 - ac_prev) / (1 - ac), rel=1e-12)
    assert sch.posterior_log_variance[0] == pytest.approx(math.log(sch.posterior_variance[1]))  # clipped at t = 0
    # at t = 0 the posterior mean is x0 itself
    assert (sch.posterior_coef_x0[0], sch.posterior_coef_xt[0]) == (pytest.approx(1.0), pytest.approx(0.0))


def test_q_sample_and_start_follow_skip_timesteps():
    sch = DiffusionSchedule(1000)
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([0, 500])
    xt = sch.q_sample(x0, t, noise)
    for i in range(2):
        ac = sch.alphas_cumprod[int(t[i])]
        torch.testing.assert_close(xt[i], math.sqrt(ac) * x0[i] + math.sqrt(1 - ac) * noise[i])
    torch.testing.assert_close(sch.start(noise, 100), noise * float(sch.sqrt_one_minus_ac[99]))  # q_sample(0, 99)
    assert torch.equal(sch.start(noise, 1000), noise)  # all steps: pure noise


def test_ddim_with_the_true_x0_walks_down_the_forward_trajectory():
    """eta = 0: x_t = q(x0, t, eps) and a perfect x0 give exactly q(x0, t - 1, eps); at t = 0 the output is x0."""
    sch = DiffusionSchedule(1000)
    x0, eps = torch.randn(1, 5, 6, dtype=torch.float64), torch.randn(1, 5, 6, dtype=torch.float64)
    for t in (999, 500, 37, 1):
        xt = sch.q_sample(x0, torch.tensor([t]), eps)
        torch.testing.assert_close(sch.ddim_step(xt, t, x0), sch.q_sample(x0, torch.tensor([t - 1]), eps))
    torch.testing.assert_close(sch.ddim_step(sch.q_sample(x0, torch.tensor([0]), eps), 0, x0), x0)
    torch.testing.assert_close(sch.ddpm_step(torch.randn_like(x0), 0, x0), x0)


# --------------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------------


def test_official_denoiser_size():
    c = Config().facediffuser
    d = FaceDiffuserDenoiser(c, 1536, 32, 5023)
    f, h, dv = 256, 256, 5023 * 3
    gru = 3 * (3 * f * h + h * h + 2 * h) + 3 * (h * h + h * h + 2 * h)
    expected = (1536 * f + f) + 43 * f + (dv * 2 * f + 2 * f) + (9 + 1) + (1000 * f + f) + 2 * 3 * f + gru + (h * dv + dv)
    assert count_parameters(d) == expected == 13_433_575
    assert (d.gru.num_layers, d.gru.hidden_size, d.gru.dropout, d.gru.bidirectional) == (2, 256, 0.3, False)
    assert d.motion_conv.kernel_size == (9,) and d.motion_conv.padding == (4,)


def test_untrained_model_outputs_the_template(cfg):
    m = _model(cfg, train_output=False)
    b = _batch()
    feats, lengths = m.encode_audio(b["audio"], b["audio_lengths"])
    t_ = int(lengths.max())
    x0 = m(torch.randn(2, t_, V * 3), torch.tensor([3, 999]), feats, None, b["subject"], b["emotion"], b["intensity"])
    for i in range(2):
        assert torch.equal(x0[i], m.templates[i].expand(t_, -1))


def test_padded_batch_equals_clips_alone_and_padding_is_ignored(cfg):
    m = _model(cfg)
    b = _batch()
    feats, lengths = m.encode_audio(b["audio"], b["audio_lengths"])
    mask = mask_from_lengths(lengths)
    xt = torch.randn(2, mask.shape[1], V * 3)
    t = torch.tensor([5, 700])
    out = m(xt, t, feats, mask, b["subject"], b["emotion"], b["intensity"])
    xt_garbage = xt.clone()
    xt_garbage[1, int(lengths[1]):] = 1e3  # padded frames must not leak into the valid ones
    out_g = m(xt_garbage, t, feats, mask, b["subject"], b["emotion"], b["intensity"])
    torch.testing.assert_close(out, out_g, rtol=0, atol=0)
    assert torch.all(out[1, int(lengths[1]):] == 0)
    for i in range(2):
        n = int(lengths[i])
        f_i, _ = m.encode_audio(b["audio"][i:i + 1, :AUDIO_LENGTHS[i]], torch.tensor([AUDIO_LENGTHS[i]]))
        alone = m(xt[i:i + 1, :n], t[i:i + 1], f_i, None, b["subject"][i:i + 1], b["emotion"][i:i + 1],
                  b["intensity"][i:i + 1])
        torch.testing.assert_close(out[i:i + 1, :n], alone, rtol=1e-5, atol=1e-6)


def test_gru_is_causal_and_style_and_step_matter(cfg):
    m = _model(cfg)
    b = _item(_batch(), 0)
    feats, _ = m.encode_audio(b["audio"], b["audio_lengths"])
    xt = torch.randn(1, feats.shape[1], V * 3)
    args = (feats, None, b["subject"], b["emotion"], b["intensity"])
    base = m(xt, torch.tensor([10]), *args)
    later = xt.clone()
    later[:, 6:] += 1.0
    torch.testing.assert_close(m(later, torch.tensor([10]), *args)[:, :6], base[:, :6], rtol=0, atol=0)
    assert not torch.allclose(m(later, torch.tensor([10]), *args)[:, 6:], base[:, 6:])
    assert not torch.allclose(m(xt, torch.tensor([11]), *args), base)
    other = m(xt, torch.tensor([10]), feats, None, b["subject"], torch.tensor([5]), b["intensity"])
    assert not torch.allclose(other, base)
    with pytest.raises(ValueError, match="emotion index"):
        m(xt, torch.tensor([10]), feats, None, b["subject"], torch.tensor([8]), b["intensity"])


# --------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------


def test_loss_is_the_masked_x0_mse_and_batches_are_frame_weighted(cfg):
    m = _model(cfg)
    b = _batch()
    draws = validation_draws(b, m.schedule.steps, seed=7)
    terms = facediffuser_losses(m, b, draws=draws)
    # by hand for clip 0 (T' = 12): x_t = q(x0, t, noise); loss = mean((model(x_t) - x0)^2)
    it = _item(b, 0)
    feats, _ = m.encode_audio(it["audio"], it["audio_lengths"])
    x0 = it["motion"][:, :12]
    xt = m.schedule.q_sample(x0, draws[0][:1], draws[1][:1, :12])
    pred = m(xt, draws[0][:1], feats[:, :12], None, it["subject"], it["emotion"], it["intensity"])
    one = facediffuser_losses(m, it, draws=(draws[0][:1], draws[1][:1]))
    torch.testing.assert_close(one["mse"], ((pred - x0) ** 2).mean())
    two = facediffuser_losses(m, _item(b, 1), draws=(draws[0][1:], draws[1][1:]))
    assert float(terms["frames"]) == 12 + 8  # clip 1: T' = min(9, 16 // 2) = 8
    torch.testing.assert_close(terms["total"], (12 * one["mse"] + 8 * two["mse"]) / 20, rtol=1e-5, atol=0)


def test_validation_draws_do_not_depend_on_the_batch():
    b = _batch()
    t2, n2 = validation_draws(b, 1000, seed=3)
    t1, n1 = validation_draws(_item(b, 1), 1000, seed=3)
    assert int(t2[1]) == int(t1[0])
    torch.testing.assert_close(n2[1, :MOTION_LENGTHS[1]], n1[0], rtol=0, atol=0)
    assert torch.all(n2[1, MOTION_LENGTHS[1]:] == 0)
    assert not torch.equal(validation_draws(b, 1000, seed=4)[1], n2)


# --------------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------------


def _feats(m, i=0):
    it = _item(_batch(), i)
    feats, _ = m.encode_audio(it["audio"], it["audio_lengths"])
    return feats, it


def test_sampling_returns_the_last_x0_and_is_seeded(cfg, monkeypatch):
    m = _model(cfg)
    feats, it = _feats(m)
    style = (it["subject"], it["emotion"], it["intensity"])
    noise = torch.randn(1, feats.shape[1], V * 3, generator=torch.Generator().manual_seed(1))
    a = m.sample(feats, None, *style, noise=noise, sample_steps=5)
    b = m.sample(feats, None, *style, noise=noise, sample_steps=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, m.sample(feats, None, *style, noise=torch.randn_like(noise), sample_steps=5))
    calls = []
    fixed = torch.full_like(noise, 0.25)

    def fake_forward(x, t, *args):
        calls.append(int(t[0]))
        return fixed

    monkeypatch.setattr(m, "forward", fake_forward)
    out = m.sample(feats, None, *style, noise=noise, sample_steps=4)
    assert calls == [3, 2, 1, 0] and torch.equal(out, fixed)  # DDIM over the last K steps; eta 0 ends on x0
    calls.clear()
    out = m.sample(feats, None, *style, noise=noise, sample_steps=3, sampler="ddpm",
                   generator=torch.Generator().manual_seed(0))
    assert calls == [2, 1, 0] and torch.allclose(out, fixed)  # the last ancestral step is the posterior mean = x0
    with pytest.raises(ValueError, match="sample_steps must be in 1..1000"):
        m.sample(feats, None, *style, noise=noise, sample_steps=1001)


# --------------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_is_exact(cfg, tmp_path):
    from probtalk3d_cli.checkpoint import load_checkpoint, save_checkpoint
    from probtalk3d_cli.models.facediffuser import load_facediffuser

    m = _model(cfg)
    path = save_checkpoint(tmp_path / "fd.pt", "facediffuser", m.config.to_dict(), m.state_dict(), m.checkpoint_meta())
    payload = load_checkpoint(path, expect="facediffuser")
    assert payload["meta"]["num_vertices"] == V and payload["meta"]["identities"] == IDS
    assert payload["meta"]["diffusion"] == {"steps": 1000, "beta_schedule": "cosine", "prediction": "x0",
                                            "variance": "fixed_small", "loss": "mse", "timestep_sampling": "uniform"}
    m2 = load_facediffuser(path)
    assert torch.equal(m2.templates, m.templates)
    feats, it = _feats(m)
    noise = torch.randn(1, feats.shape[1], V * 3)
    style = (it["subject"], it["emotion"], it["intensity"])
    f2, _ = m2.encode_audio(it["audio"], it["audio_lengths"])
    torch.testing.assert_close(m2.sample(f2, None, *style, noise=noise, sample_steps=3),
                               m.sample(feats, None, *style, noise=noise, sample_steps=3), rtol=0, atol=0)
    with pytest.raises(ValueError, match="facediffuser checkpoint"):
        load_checkpoint(path, expect="predictor")
    bad = copy.deepcopy(payload)
    del bad["meta"]["num_vertices"]
    with pytest.raises(ValueError, match="lacks meta 'num_vertices'"):
        FaceDiffuser.from_checkpoint(bad)


def test_config_validation():
    from probtalk3d_cli.config import ConfigError

    with pytest.raises(ConfigError, match="conv_kernel' must be odd"):
        load_config(overrides=["facediffuser.conv_kernel=8"])
    with pytest.raises(ConfigError, match="sample_steps"):
        load_config(overrides=["facediffuser.sample_steps=1001"])
    with pytest.raises(ConfigError, match="ddim, ddpm"):
        load_config(overrides=["facediffuser.sampler=dpm"])
    c = Config()
    assert (c.train_facediffuser.lr, c.train_facediffuser.epochs, c.train_facediffuser.patience) == (1e-4, 51, 0)
    assert (c.facediffuser.sample_steps, c.facediffuser.diffusion_steps, c.facediffuser.eta) == (100, 1000, 0.0)


# --------------------------------------------------------------------------------------------------------
# preprocess vertices (library)
# --------------------------------------------------------------------------------------------------------


@pytest.fixture()
def small_data(tmp_path):
    """DATA/param with three clips of two subjects (random params, constant shape per clip)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "param").mkdir(parents=True)
    for key, t in (("A1_001_0_0", 6), ("A1_002_3_1", 4), ("B2_001_0_0", 5)):
        p = np.zeros((1, t, 403), np.float32)
        p[0, :, :300] = rng.normal(0, 0.5, 300)  # the clip's identity
        p[0, :, 300:400] = rng.normal(0, 1, (t, 100))  # all 100 expression coefficients
        p[0, :, 400:] = rng.normal(0, 0.05, (t, 3))
        np.save(root / "param" / f"{key}.npy", p)
    return root


def test_preprocess_vertices_values_templates_and_resume(small_data):
    from probtalk3d_cli.data.vertices_data import load_clip_vertices, load_vertex_templates, preprocess_vertices
    from probtalk3d_cli.flame import FlameConverter, load_flame

    flame = load_flame("demo")
    rep = preprocess_vertices(small_data, flame, batch_frames=7)  # clips 1+2 share a FLAME call, clip 3 alone
    assert (rep["clips"], rep["written"], rep["skipped"], rep["frames"]) == (3, 3, 0, 15)
    conv = FlameConverter(flame)
    params = {k: np.load(small_data / "param" / f"{k}.npy")[0].astype(np.float64)
              for k in ("A1_001_0_0", "A1_002_3_1", "B2_001_0_0")}
    for key, p in params.items():
        v = load_clip_vertices(small_data, key, flame.num_vertices)
        want = conv.vertices(p[:, 300:400], p[:, 400:], p[:, :300])
        assert v.dtype == np.float32 and v.shape == (len(p), flame.num_vertices, 3)
        np.testing.assert_allclose(v, want, rtol=0, atol=2e-6)
    tpl = load_vertex_templates(small_data)
    assert tpl.subjects == ["A1", "B2"] and list(tpl.frames) == [10, 5]
    mean_a = (params["A1_001_0_0"][:, :300].sum(0) + params["A1_002_3_1"][:, :300].sum(0)) / 10  # frame-weighted
    np.testing.assert_allclose(tpl.mean_shapes[0], mean_a, rtol=1e-12)
    np.testing.assert_allclose(tpl.template("A1"), conv.neutral(mean_a[None]).numpy(), rtol=0, atol=1e-7)
    with np.load(small_data / "templates_vert.npz", allow_pickle=False) as z:  # plain arrays, no pickles
        assert sorted(z.files) == ["frames", "mean_shapes", "subjects", "templates"]
    info = json.loads((small_data / "vertex_info.json").read_text())
    assert info["complete"] and info["num_vertices"] == flame.num_vertices and info["flame_model"] == "demo"

    (small_data / "vertex" / "B2_001_0_0.npy").write_bytes(b"truncated")  # a damaged file is redone
    rep = preprocess_vertices(small_data, flame)
    assert (rep["written"], rep["skipped"]) == (1, 2)
    assert not list((small_data / "vertex").glob(".*tmp*"))


def test_preprocess_vertices_refuses_another_flame_model(small_data):
    from probtalk3d_cli.data.vertices_data import preprocess_vertices
    from probtalk3d_cli.demo_head import demo_head_dict
    from probtalk3d_cli.flame import flame_from_dict, load_flame

    preprocess_vertices(small_data, load_flame("demo"))
    d = demo_head_dict()
    d["v_template"] = np.asarray(d["v_template"]) * 1.01
    other = flame_from_dict(d, "other.pkl")
    with pytest.raises(ValueError, match="another FLAME model .* --overwrite"):
        preprocess_vertices(small_data, other)
    rep = preprocess_vertices(small_data, other, overwrite=True)
    assert rep["written"] == 3


def test_vertex_data_errors_name_the_command(tmp_path, small_data):
    from probtalk3d_cli.data.schema import parse_key
    from probtalk3d_cli.data.vertices_data import check_vertex_data, load_vertex_templates, preprocess_vertices
    from probtalk3d_cli.flame import load_flame

    with pytest.raises(FileNotFoundError, match="preprocess vertices --data"):
        check_vertex_data(small_data, [parse_key("A1_001_0_0")], ["A1"])
    with pytest.raises(FileNotFoundError, match="preprocess vertices"):
        load_vertex_templates(small_data)
    with pytest.raises(FileNotFoundError, match="preprocess synthetic"):
        preprocess_vertices(tmp_path / "empty", load_flame("demo"))
    preprocess_vertices(small_data, load_flame("demo"))
    with pytest.raises(ValueError, match="no template for subject.*C3"):
        check_vertex_data(small_data, [parse_key("A1_001_0_0")], ["A1", "C3"])
    (small_data / "vertex" / "A1_002_3_1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="1 clip.*A1_002_3_1"):
        check_vertex_data(small_data, [parse_key("A1_001_0_0"), parse_key("A1_002_3_1")], ["A1"])
