"""Datasets and collate: normalisation, padding values, masks, lengths, reproducible crops, audio crop length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probtalk3d_cli.data import dataset as D
from probtalk3d_cli.data.schema import motion_frames_for_audio
from probtalk3d_cli.io import atomic_save_npy, save_wav


def _write_clip(root, key, frames, seed):
    rng = np.random.default_rng(seed)
    params = np.zeros((1, frames, 403), dtype=np.float32)
    params[0, :, 300:400] = rng.uniform(-3, 3, size=(frames, 100))
    params[0, :, 400:] = rng.uniform(-0.1, 0.5, size=(frames, 3))
    atomic_save_npy(root / "param" / f"{key}.npy", params)
    audio = (0.5 * rng.uniform(-1, 1, size=frames * 640 + 80)).astype(np.float32)
    save_wav(root / "wav" / f"{key}.wav", audio)
    return params


@pytest.fixture()
def data(tmp_path):
    clips = {"A1_001_0_0": 3, "A1_002_3_2": 5, "B2_001_1_1": 40}
    params = {k: _write_clip(tmp_path, k, t, i) for i, (k, t) in enumerate(clips.items())}
    return tmp_path, params


def test_motion_item_is_normalised_53d(data):
    root, params = data
    ds = D.MotionDataset(root, ["A1_002_3_2"])
    item = ds[0]
    assert set(item) == {"key", "motion"} and item["key"] == "A1_002_3_2"
    m = item["motion"]
    assert m.dtype == torch.float32 and tuple(m.shape) == (5, 53)
    p = params["A1_002_3_2"][0]
    torch.testing.assert_close(m[:, :50], torch.from_numpy((p[:, 300:350] + 3) / 6), rtol=0, atol=1e-6)
    torch.testing.assert_close(m[:, 50:], torch.from_numpy((p[:, 400:] + 0.1) / 0.6), rtol=0, atol=1e-6)


def test_audio_item_fields_and_unknown_subject(data):
    root, _ = data
    ds = D.AudioMotionDataset(root, ["A1_002_3_2", "B2_001_1_1"], identities=["B2", "A1"])
    item = ds[0]
    assert (item["subject"], item["emotion"], item["intensity"]) == (1, 3, 2)
    assert ds[1]["subject"] == 0
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (5 * 640 + 80,)
    with pytest.raises(ValueError, match=r"subject\(s\) B2 have no identity slot; valid identities: A1, C3"):
        D.AudioMotionDataset(root, ["A1_001_0_0", "B2_001_1_1"], identities=["A1", "C3"])


def test_collate_pads_with_zeros_and_masks(data):
    root, _ = data
    ds = D.AudioMotionDataset(root, ["A1_001_0_0", "A1_002_3_2"], identities=["A1"])
    batch = D.collate_clips([ds[0], ds[1]])
    assert batch["keys"] == ["A1_001_0_0", "A1_002_3_2"]
    assert batch["motion"].shape == (2, 5, 53)
    assert batch["lengths"].tolist() == [3, 5] and batch["lengths"].dtype == torch.long
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].tolist() == [[True, True, True, False, False], [True] * 5]
    assert torch.equal(batch["motion"][0, :3], ds[0]["motion"])
    assert torch.count_nonzero(batch["motion"][0, 3:]) == 0
    assert batch["audio"].shape == (2, 5 * 640 + 80)
    assert batch["audio_lengths"].tolist() == [3 * 640 + 80, 5 * 640 + 80]
    assert torch.count_nonzero(batch["audio"][0, 3 * 640 + 80:]) == 0
    assert batch["subject"].tolist() == [0, 0] and batch["emotion"].tolist() == [0, 3]
    assert batch["intensity"].tolist() == [0, 2] and batch["emotion"].dtype == torch.long
    motion_only = D.collate_clips([D.MotionDataset(root, ["A1_001_0_0"])[0]])
    assert set(motion_only) == {"keys", "motion", "mask", "lengths"}
    with pytest.raises(ValueError, match="empty batch"):
        D.collate_clips([])


def test_crops_reproducible_by_seed_and_epoch(data):
    root, _ = data
    keys = ["B2_001_1_1", "A1_001_0_0"]
    full = D.MotionDataset(root, keys)[0]["motion"]

    def starts(seed, epoch):
        ds = D.AudioMotionDataset(root, keys, identities=["A1", "B2"], max_frames=8, seed=seed)
        ds.set_epoch(epoch)
        return ds, [ds.crop_start(0, 40) for _ in range(3)]

    ds, s0 = starts(0, 0)
    assert len(set(s0)) == 1  # draws depend on (seed, epoch, index) only, not on call order
    assert starts(0, 0)[1] == s0  # a new dataset (e.g. after resuming) reproduces them
    epochs = {starts(0, e)[1][0] for e in range(12)}
    seeds = {starts(s, 0)[1][0] for s in range(12)}
    assert len(epochs) > 3 and len(seeds) > 3
    item = ds[0]
    t0 = s0[0]
    assert 0 <= t0 <= 32 and item["motion"].shape == (8, 53)
    assert torch.equal(item["motion"], full[t0:t0 + 8])
    # audio crop: samples [640*t0, 640*(t0+8) + 80) -> exactly 8 HuBERT frame pairs
    whole = D.load_clip_audio(root, "B2_001_1_1")
    assert item["audio"].shape == (8 * 640 + 80,)
    assert torch.equal(item["audio"], torch.from_numpy(whole[640 * t0: 640 * (t0 + 8) + 80]))
    assert motion_frames_for_audio(item["audio"].numel()) == 8
    # clips no longer than max_frames are returned whole
    assert ds[1]["motion"].shape == (3, 53) and ds.crop_start(1, 3) is None


def test_crop_at_the_end_of_the_recording(data):
    root, _ = data
    ds = D.AudioMotionDataset(root, ["B2_001_1_1"], identities=["B2"], max_frames=39)
    for epoch in range(20):  # some epoch draws t0 = 1: the crop ends at the last frame
        ds.set_epoch(epoch)
        if ds.crop_start(0, 40) == 1:
            break
    else:
        pytest.fail("no epoch drew the last crop start")
    item = ds[0]
    assert item["motion"].shape == (39, 53) and item["audio"].numel() == 39 * 640 + 80  # the file has the tail


def test_tail_constant_is_the_smallest_that_works():
    assert D.AUDIO_TAIL == 80
    from probtalk3d_cli.data.synthetic import AUDIO_TAIL as synthetic_tail

    assert synthetic_tail == D.AUDIO_TAIL
    for n in (1, 2, 7, 100, 501):
        assert motion_frames_for_audio(640 * n + D.AUDIO_TAIL) == n
        assert motion_frames_for_audio(640 * n + D.AUDIO_TAIL - 1) == n - 1


def test_cache_and_errors(data, tmp_path):
    root, _ = data
    ds = D.AudioMotionDataset(root, ["A1_001_0_0"], identities=["A1"], cache=True)
    ds[0]
    assert len(ds._motion) == 1 and len(ds._audio) == 1
    nc = D.AudioMotionDataset(root, ["A1_001_0_0"], identities=["A1"], cache=False)
    nc[0]
    assert not nc._motion and not nc._audio
    with pytest.raises(ValueError, match="max_frames must be at least 1"):
        D.MotionDataset(root, ["A1_001_0_0"], max_frames=0)
    with pytest.raises(ValueError, match="not a clip key"):
        D.MotionDataset(root, ["nonsense"])
    atomic_save_npy(root / "param" / "A1_009_0_0.npy", np.zeros((1, 4, 400), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \[1, T, 403\]"):
        D.MotionDataset(root, ["A1_009_0_0"])[0]
    with pytest.raises(FileNotFoundError):
        D.MotionDataset(root, ["A1_010_0_0"])[0]


def test_works_with_a_dataloader(data):
    root, _ = data
    ds = D.AudioMotionDataset(root, ["A1_001_0_0", "A1_002_3_2", "B2_001_1_1"], identities=["A1", "B2"],
                              max_frames=6)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=D.collate_clips))
    assert [b["lengths"].tolist() for b in batches] == [[3, 5], [6]]
    assert batches[1]["audio_lengths"].tolist() == [6 * 640 + 80]
