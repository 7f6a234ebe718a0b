"""AudioEncoder around a tiny random HuBERT: lengths, pairing, freezing, padding, loading, offline error."""

from __future__ import annotations

import copy

import pytest
import torch

from probtalk3d_cli.config import AudioConfig
from probtalk3d_cli.data.schema import audio_frames
from probtalk3d_cli.models.audio import AudioEncoder, normalize_waveform, pair_frames

# (samples, HuBERT frames, motion frames) of the eight official test clips (reference §14)
REFERENCE_CLIPS = [
    (94_682, 295, 147), (128_812, 402, 201), (99_688, 311, 155), (90_072, 281, 140),
    (92_547, 288, 144), (127_061, 396, 198), (124_992, 390, 195), (87_193, 272, 136),
]


@pytest.fixture(scope="module")
def encoder(tiny_config):
    torch.manual_seed(0)
    return AudioEncoder(tiny_config.audio).eval()


def test_pairing_lengths_for_reference_clips(encoder):
    samples = torch.tensor([s for s, _, _ in REFERENCE_CLIPS])
    assert encoder.frame_lengths(samples).tolist() == [a for _, a, _ in REFERENCE_CLIPS]
    assert [audio_frames(s) for s, _, _ in REFERENCE_CLIPS] == [a for _, a, _ in REFERENCE_CLIPS]
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(1, REFERENCE_CLIPS[0][0], generator=g)
    with torch.no_grad():
        feats, feat_lengths = encoder(audio, torch.tensor([audio.shape[1]]))
    assert feat_lengths.tolist() == [147] and feats.shape == (1, 147, 2 * 32)
    assert encoder.output_dim == 64


def test_pair_frames_concatenates_even_then_odd_frame_and_drops_odd_tail():
    hidden = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)  # [B=2, A=5, H=2]
    feats, lengths = pair_frames(hidden, torch.tensor([5, 4]))
    assert lengths.tolist() == [2, 2]
    assert feats[0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]  # frame 4 (odd count) dropped
    assert feats[1].tolist() == [[10, 11, 12, 13], [14, 15, 16, 17]]
    feats, lengths = pair_frames(hidden, torch.tensor([5, 2]))
    assert lengths.tolist() == [2, 1] and feats[1, 1].tolist() == [0, 0, 0, 0]


def test_freezing_policy(tiny_config):
    enc = AudioEncoder(tiny_config.audio)  # tiny: 2 layers, freeze_layers 1
    frozen = {n for n, p in enc.hubert.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in enc.hubert.named_parameters() if p.requires_grad}
    assert all(n.startswith(("feature_extractor.", "feature_projection.", "encoder.layers.0.")) for n in frozen)
    assert any(n.startswith("feature_extractor.") for n in frozen)
    assert any(n.startswith("feature_projection.") for n in frozen)
    assert any(n.startswith("encoder.layers.0.") for n in frozen)
    assert {"masked_spec_embed", "encoder.layer_norm.weight", "encoder.pos_conv_embed.conv.bias"} <= trainable
    assert any(n.startswith("encoder.layers.1.") for n in trainable)
    cfg = copy.deepcopy(tiny_config.audio)
    cfg.freeze_feature_encoder = cfg.freeze_projection = False
    cfg.freeze_layers = 0
    assert all(p.requires_grad for p in AudioEncoder(cfg).parameters())
    cfg.freeze_layers = 3
    with pytest.raises(ValueError, match="freeze_layers is 3 but the HuBERT model has 2 layers"):
        AudioEncoder(cfg)


def test_padded_batch_equals_single_clips_and_cached_cnn_path(encoder):
    g = torch.Generator().manual_seed(2)
    lengths = [12_000, 7_000, 9_641]
    audio = torch.zeros(3, max(lengths))
    for i, n in enumerate(lengths):
        audio[i, :n] = torch.randn(n, generator=g) * (i + 1) + i
    with torch.no_grad():
        feats, feat_lengths = encoder(audio, torch.tensor(lengths))
        cnn, frames = encoder.cnn_features(audio, torch.tensor(lengths))
        feats2, _ = encoder.forward_from_cnn(cnn, frames)
        assert torch.equal(feats, feats2)
        assert frames.tolist() == [audio_frames(n) for n in lengths]
        for i, n in enumerate(lengths):
            single, single_len = encoder(audio[i: i + 1, :n], torch.tensor([n]))
            assert single_len.item() == feat_lengths[i].item() == audio_frames(n) // 2
            torch.testing.assert_close(feats[i, : single_len.item()], single[0], atol=2e-5, rtol=1e-4)
        assert torch.all(feats[1, feat_lengths[1]:] == 0)


def test_per_utterance_normalisation_makes_affine_rescaling_irrelevant(encoder):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 8_000, generator=g)
    y = normalize_waveform(x[0])
    assert abs(y.mean().item()) < 1e-5 and abs(y.var(unbiased=False).item() - 1) < 1e-4
    with torch.no_grad():
        a, _ = encoder(x, torch.tensor([8_000]))
        b, _ = encoder(0.3 * x - 0.7, torch.tensor([8_000]))  # e.g. the official min-max step
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_short_audio_and_bad_shapes_are_clear_errors(encoder):
    with pytest.raises(ValueError, match="at least 400"):
        encoder(torch.zeros(1, 399), torch.tensor([399]))
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        encoder(torch.zeros(399), torch.tensor([399]))


def test_offline_hub_model_gives_one_line_runtime_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as info:
        AudioEncoder(AudioConfig(model="facebook/hubert-base-ls960"))
    msg = str(info.value)
    assert "\n" not in msg
    assert "--set audio.model=" in msg and "import-official" in msg and "connect to the internet once" in msg


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AudioEncoder(AudioConfig(model=str(tmp_path / "nope")))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        AudioEncoder(AudioConfig(model=str(tmp_path)))


def test_local_directory_and_stored_config_loading(tiny_config, encoder, tmp_path):
    encoder.hubert.save_pretrained(tmp_path / "hubert")
    cfg = copy.deepcopy(tiny_config.audio)
    cfg.model = str(tmp_path / "hubert")
    loaded = AudioEncoder(cfg).eval()
    for (n1, p1), (n2, p2) in zip(encoder.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert not loaded.hubert.encoder.layers[0].attention.q_proj.weight.requires_grad  # freezing applied
    rebuilt = AudioEncoder(tiny_config.audio, hubert_config=encoder.hubert_config_dict())
    rebuilt.load_state_dict(encoder.state_dict(), strict=True)
    x = torch.randn(1, 5_000)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x, torch.tensor([5_000]))[0], encoder(x, torch.tensor([5_000]))[0])


def test_single_clip_equals_plain_hubert_forward_on_normalised_audio(encoder):
    # the official path for batch 1: processor normalisation, HubertModel(...).last_hidden_state, pairing (§4.1-4.2)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 10_000, generator=g) * 0.2 + 0.1
    normed = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        hidden = encoder.hubert(normed).last_hidden_state  # [1, A, H]
        ours, lengths = encoder(x, torch.tensor([10_000]))
    a = hidden.shape[1] - hidden.shape[1] % 2
    expected = hidden[:, :a].reshape(1, a // 2, 2 * hidden.shape[2])
    assert lengths.item() == a // 2
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
