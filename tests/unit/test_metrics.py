"""The six §7 metrics on hand-computed arrays, frame vs clip pooling, diversity pairing, dtypes and devices.

Hand-computed cases use integer offsets forming 3-4-5 and 5-12-13 triangles (the formulas are unit-free, so
the numbers are "metres"); every expected value is written out with its arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probtalk3d_cli.evaluation.metrics import (
    COLUMN_UNITS,
    METRIC_UNITS,
    ClipMetrics,
    MetricAccumulator,
    _diversity_pairs,
    compute_clip_metrics,
    lip_error_per_frame,
    lip_vertex_error,
    load_region_indices,
    m2_to_1e5_m2,
    m2_to_mm2,
    m_to_mm,
    mean_vertex_error,
    sample_diversity,
    to_display_units,
    upper_face_dynamics,
    upper_face_dynamics_deviation,
    vertex_error_per_frame,
)

# ---------------------------------------------------------------------------------------------------------
# the hand-computed clip: V = 3 vertices, T = 2 frames, GT at the origin

GT = np.zeros((2, 3, 3))
PRED = np.array([
    # frame 0: |(3,4,0)| = 5, |0| = 0, |(0,5,12)| = 13
    [[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 12.0]],
    # frame 1: |(6,8,0)| = 10, |(0,3,4)| = 5, |0| = 0
    [[6.0, 8.0, 0.0], [0.0, 3.0, 4.0], [0.0, 0.0, 0.0]],
])
LIP = [0, 1]
UPPER = [0, 2]
REF = np.zeros((3, 3))


def clip(gt=GT, samples=None, lip=LIP, upper=UPPER, ref=REF, rng=0) -> ClipMetrics:
    return compute_clip_metrics(gt, PRED[None] if samples is None else samples, lip_idx=lip, upper_idx=upper,
                                reference=ref, rng=rng)


def test_mve_hand_computed():
    # frame 0: (5 + 0 + 13) / 3 = 6; frame 1: (10 + 5 + 0) / 3 = 5; MVE = (6 + 5) / 2 = 5.5
    assert vertex_error_per_frame(GT, PRED).tolist() == [6.0, 5.0]
    assert mean_vertex_error(GT, PRED) == 5.5
    m = clip()
    assert m.mve == 5.5 and m.mve_sum == 11.0 and m.frames == 2


def test_lve_is_max_of_squared_lip_distances():
    # lips {0, 1}: frame 0 max(5², 0²) = 25; frame 1 max(10², 5²) = 100; LVE = 62.5
    assert lip_error_per_frame(GT, PRED, LIP).tolist() == [25.0, 100.0]
    assert lip_vertex_error(GT, PRED, LIP) == 62.5
    # lips {1, 2}: frame 0 max(0, 13²) = 169; frame 1 max(5², 0) = 25; LVE = 97
    assert lip_vertex_error(GT, PRED, [1, 2]) == 97.0
    # a mean over lip vertices would give ((25+0)/2 + (100+25)/2) / 2 = 37.5, unsquared max (5+10)/2 = 7.5
    m = clip()
    assert m.lve == 62.5 and m.lve_sum == 125.0


def test_mee_uses_vertexwise_mean_of_samples():
    # samples: PRED and GT itself -> mean = PRED / 2: lips frame 0 |(1.5,2,0)|² = 6.25;
    # frame 1 max(|(3,4,0)|² = 25, |(0,1.5,2)|² = 6.25) = 25; MEE = (6.25 + 25) / 2 = 15.625
    m = clip(samples=np.stack([PRED, GT]))
    assert m.mee == 15.625 and m.mee_sum == 31.25
    assert m.lve == 62.5  # LVE still uses sample 0 only
    # N = 1: the mean is the sample itself, MEE == LVE == CE
    one = clip()
    assert one.mee == one.lve == one.ce == 62.5 and one.ce_sample == 0


def test_ce_picks_sample_with_smallest_summed_lip_error():
    s1 = np.zeros_like(PRED)
    s1[0, 0] = [0, 0, 1]  # frame 0: 1² = 1
    s1[1, 0] = [0, 0, 4]  # frame 1: 4² = 16          -> summed 17
    s2 = np.zeros_like(PRED)
    s2[0, 1] = [0, 0, 4]  # frame 0: 16, frame 1: 0   -> summed 16 (smallest; PRED sums 125)
    m = clip(samples=np.stack([PRED, s1, s2]))
    # CE = (16 + 0) / 2 = 8 from sample 2; a per-frame minimum would wrongly give (1 + 0) / 2 = 0.5
    assert m.ce_sample == 2 and m.ce == 8.0 and m.ce_sum == 16.0


def test_ce_ties_choose_first_sample():
    m = clip(samples=np.stack([GT + 1.0, GT + 1.0]), gt=GT)
    assert m.ce_sample == 0


def fdd_pair():
    gt = np.zeros((2, 3, 3))
    gt[1, 0] = [3, 4, 0]      # v0: squared distances to R over time 0, 25 -> population std 12.5
    gt[0, 2] = [0, 0, 1]      # v2: 1, 9 -> std 4
    gt[1, 2] = [0, 0, 3]
    gt[1, 1] = [100, 0, 0]    # v1 moves a lot but is not an upper-face vertex
    pred = np.zeros((2, 3, 3))
    pred[0, 0] = [1, 0, 0]    # v0: 1, 4 -> std 1.5
    pred[1, 0] = [2, 0, 0]
    pred[:, 2] = [0, 0, 2]    # v2: constant 4 -> std 0
    return gt, pred


def test_fdd_hand_computed_signed_and_absolute():
    gt, pred = fdd_pair()
    # S(gt) = (12.5 + 4) / 2 = 8.25; S(pred) = (1.5 + 0) / 2 = 0.75; FDD = 7.5
    assert upper_face_dynamics(gt, UPPER, REF) == 8.25
    assert upper_face_dynamics(pred, UPPER, REF) == 0.75
    assert upper_face_dynamics_deviation(gt, pred, UPPER, REF) == 7.5
    m = clip(gt=gt, samples=pred[None])
    assert (m.fdd_gt, m.fdd_pred, m.fdd, m.fdd_abs) == (8.25, 0.75, 7.5, 7.5)
    # over-animation is negative; the absolute variant is positive
    m = clip(gt=pred, samples=gt[None])
    assert (m.fdd, m.fdd_abs) == (-7.5, 7.5)


def test_fdd_uses_population_std_and_reference():
    # T = 3, one upper vertex at distances² 0, 9, 36 from R = 0 -> values 0, 9, 36: mean 15,
    # population var ((15)² + 6² + 21²) / 3 = (225 + 36 + 441) / 3 = 234 -> std √234 (ddof 1 would be √351)
    v = np.zeros((3, 1, 3))
    v[1, 0] = [3, 0, 0]
    v[2, 0] = [6, 0, 0]
    assert upper_face_dynamics(v, [0], np.zeros((1, 3))) == pytest.approx(math.sqrt(234), rel=1e-15)
    # with R = (3,0,0) the distances² become 9, 0, 9: mean 6, var (9 + 36 + 9) / 3 = 18 -> √18
    assert upper_face_dynamics(v, [0], np.array([[3.0, 0, 0]])) == pytest.approx(math.sqrt(18), rel=1e-15)
    # one frame: std 0
    assert upper_face_dynamics(v[:1], [0], np.zeros((1, 3))) == 0.0


def test_gt_is_cut_to_prediction_length():
    gt = np.concatenate([GT, np.full((3, 3, 3), 50.0)])  # 5 frames; the extra 3 would change every metric
    m = clip(gt=gt)
    assert (m.frames, m.gt_frames, m.mve, m.lve) == (2, 5, 5.5, 62.5)
    assert mean_vertex_error(gt, PRED) == 5.5


def test_errors_are_clear():
    with pytest.raises(ValueError, match="3 frames but the ground truth only 2"):
        clip(samples=np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="4 vertices but the ground truth has 3"):
        clip(samples=np.zeros((1, 2, 4, 3)))
    with pytest.raises(ValueError, match="from 0 to 3 but the mesh has 3"):
        clip(lip=[0, 3])
    with pytest.raises(ValueError, match="duplicate"):
        clip(upper=[0, 0])
    with pytest.raises(ValueError, match="integer"):
        clip(lip=[0.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        clip(gt=np.full((2, 3, 3), np.nan))
    bad = PRED.copy()
    bad[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"samples\[1\] contains NaN or infinite"):
        clip(samples=np.stack([PRED, bad]))
    with pytest.raises(ValueError, match=r"expected \[3, 3\]"):
        clip(ref=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        compute_clip_metrics(GT, [PRED, PRED[:1]], lip_idx=LIP, upper_idx=UPPER, reference=REF)
    with pytest.raises(ValueError, match=r"\[T, V, 3\]"):
        clip(gt=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="empty"):
        clip(samples=[])
    with pytest.raises(ValueError, match="no clips"):
        MetricAccumulator().summary()
    with pytest.raises(ValueError, match="clash"):
        MetricAccumulator().add(clip(), lve="x")


# ---------------------------------------------------------------------------------------------------------
# diversity


def ladder(n: int, t: int = 2, v: int = 3) -> np.ndarray:
    """Sample k is offset by (k, 0, 0) everywhere, so ‖s_a − s_b‖₂ = |a − b| at every frame and vertex."""
    return np.arange(n, dtype=np.float64)[:, None, None, None] * np.array([1.0, 0, 0]) + np.zeros((n, t, v, 3))


def test_diversity_pairs_counts_and_coverage():
    assert _diversity_pairs(1, 0) == []
    assert len(_diversity_pairs(2, 0)) == 1
    ten = _diversity_pairs(10, 1234)
    assert len(ten) == 5 and sorted(i for p in ten for i in p) == list(range(10))  # official 5 pairs
    seven = _diversity_pairs(7, 3)
    used = [i for p in seven for i in p]
    assert len(seven) == 3 and len(set(used)) == 6  # odd N: one sample left out
    # the pairing is k <-> k + N//2 of a seeded permutation
    perm = np.random.default_rng(1234).permutation(10)
    assert ten == [(int(perm[k]), int(perm[k + 5])) for k in range(5)]


def test_diversity_n10_is_seed_deterministic():
    samples = ladder(10)
    for seed in (0, 1, 1234):
        perm = np.random.default_rng(seed).permutation(10)
        expected = sum(abs(int(perm[k]) - int(perm[k + 5])) for k in range(5)) / 5
        m = clip(gt=np.zeros((2, 3, 3)), samples=samples, rng=seed)
        assert m.diversity == expected and m.diversity_pairs == 5
        assert sample_diversity(samples, seed) == expected
    values = {clip(gt=np.zeros((2, 3, 3)), samples=samples, rng=s).diversity for s in range(6)}
    assert len(values) > 1  # the seed matters, so the test above could fail
    # a Generator is consumed: two clips drawn from one stream equal two draws from a same-seeded stream
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    a = [clip(gt=np.zeros((2, 3, 3)), samples=samples, rng=g1).diversity for _ in range(3)]
    b = [sample_diversity(samples, g2) for _ in range(3)]
    assert a == b


def test_diversity_n2_one_pair_n1_not_applicable_odd_drops_one():
    # N = 2: PRED vs GT -> mean distance equals MVE = 5.5, whatever the permutation
    m = clip(samples=np.stack([PRED, GT]))
    assert m.diversity == 5.5 and m.diversity_pairs == 1 and m.diversity_applicable
    one = clip()
    assert one.diversity is None and one.diversity_pairs == 0 and not one.diversity_applicable
    assert sample_diversity(PRED[None]) is None
    # N = 3 with offsets 0, 1, 10: one pair (perm[0], perm[1]); perm[2] unused
    offsets = [0, 1, 10]
    three = np.stack([np.full((2, 3, 3), [o, 0.0, 0.0]) for o in offsets])
    for seed in range(4):
        perm = np.random.default_rng(seed).permutation(3)
        m = clip(gt=np.zeros((2, 3, 3)), samples=three, rng=seed)
        assert m.diversity_pairs == 1 and m.diversity == abs(offsets[perm[0]] - offsets[perm[1]])


# ---------------------------------------------------------------------------------------------------------
# pooling over clips


def test_pooling_frames_vs_clips_and_groups():
    acc = MetricAccumulator()
    gt_a, pred_a = fdd_pair()
    # clip A (2 frames, N = 2: pred_a and gt_a): LVE frames of pred_a on lips {0, 1}: frame 0 |(1,0,0)|² = 1,
    # frame 1 max(|(2,0,0)-(3,4,0)|² = 1 + 16 = 17, |(0,0,0)-(100,0,0)|² = 10000) = 10000
    a = clip(gt=gt_a, samples=np.stack([pred_a, gt_a]))
    assert a.lve_sum == 10001.0 and a.fdd == 7.5
    # clip B (1 frame, N = 1): LVE 1² = 1; FDD 0 - 0 = 0
    gt_b = np.zeros((1, 3, 3))
    pred_b = np.zeros((1, 3, 3))
    pred_b[0, 1] = [1, 0, 0]
    b = clip(gt=gt_b, samples=pred_b[None])
    assert (b.lve, b.fdd, b.diversity) == (1.0, 0.0, None)
    # clip C (2 frames, N = 2): PRED/GT from the top; LVE 62.5, diversity 5.5, FDD: S(GT) = 0,
    # S(PRED) on {0, 2}: v0 25, 100 -> 37.5; v2 169, 0 -> 84.5 -> 61 -> FDD = -61
    c = clip(samples=np.stack([PRED, GT]))
    assert (c.fdd, c.diversity) == (-61.0, 5.5)

    acc.add(a, key="A", emotion="angry", intensity=2)
    acc.add(b, key="B", emotion="sad", intensity=2)
    acc.add(c, key="C", emotion="angry", intensity=0)
    s = acc.summary()
    o = s["overall"]
    assert (o["clips"], o["frames"]) == (3, 5)
    # frames pooled: (10001 + 1 + 125) / 5 = 2025.4 — a clip mean would be (5000.5 + 1 + 62.5) / 3
    assert o["lve"] == pytest.approx(10127 / 5, rel=1e-15)
    assert o["mve"] == pytest.approx((a.mve_sum + b.mve_sum + 11.0) / 5, rel=1e-15)
    assert o["mee"] == pytest.approx((a.mee_sum + b.mee_sum + c.mee_sum) / 5, rel=1e-15)
    assert o["ce"] == pytest.approx((a.ce_sum + 1.0 + c.ce_sum) / 5, rel=1e-15)
    # clips averaged: FDD (7.5 + 0 - 61) / 3, |FDD| (7.5 + 0 + 61) / 3; diversity over the 2 clips with N ≥ 2
    assert o["fdd"] == pytest.approx(-53.5 / 3, rel=1e-15)
    assert o["fdd_abs"] == pytest.approx(68.5 / 3, rel=1e-15)
    assert o["diversity"] == pytest.approx((a.diversity + 5.5) / 2, rel=1e-15) and o["diversity_clips"] == 2
    angry = s["groups"]["emotion"]["angry"]
    assert (angry["clips"], angry["frames"]) == (2, 4)
    assert angry["lve"] == pytest.approx((10001 + 125) / 4, rel=1e-15)
    assert s["groups"]["emotion"]["sad"]["diversity"] is None
    assert list(s["groups"]["intensity"]) == ["0", "2"]
    assert s["units"] == METRIC_UNITS
    rows = acc.rows()
    assert [r["key"] for r in rows] == ["A", "B", "C"] and rows[1]["emotion"] == "sad"
    assert rows[2]["lve"] == 62.5 and rows[1]["diversity"] is None and "lve_sum" not in rows[0]
    assert len(acc) == 3


def test_pooled_result_does_not_depend_on_clip_order():
    rng = np.random.default_rng(0)
    clips = [clip(gt=rng.normal(size=(t, 3, 3)), samples=rng.normal(size=(2, t, 3, 3))) for t in (3, 5, 8, 13)]
    forward, backward = MetricAccumulator(), MetricAccumulator()
    for m in clips:
        forward.add(m)
    for m in reversed(clips):
        backward.add(m)
    assert forward.summary()["overall"] == backward.summary()["overall"]


# ---------------------------------------------------------------------------------------------------------
# independent implementations on random meshes


def loop_lve(gt, pred, lip):
    """Plain-Python LVE: explicit loops, dot products instead of norms."""
    per_frame = []
    for t in range(len(pred)):
        worst = 0.0
        for v in lip:
            d = gt[t, v] - pred[t, v]
            worst = max(worst, float(np.dot(d, d)))
        per_frame.append(worst)
    return sum(per_frame) / len(per_frame)


def loop_s(verts, upper, ref):
    """Plain-Python S(V): per-vertex population std written out as sqrt(E[x²] − E[x]²) over time."""
    stds = []
    for v in upper:
        series = [float(np.dot(verts[t, v] - ref[v], verts[t, v] - ref[v])) for t in range(len(verts))]
        m1 = math.fsum(series) / len(series)
        m2 = math.fsum(x * x for x in series) / len(series)
        stds.append(math.sqrt(max(m2 - m1 * m1, 0.0)))
    return math.fsum(stds) / len(stds)


def random_clip(seed, t=9, t_gt=11, v=40, n=4):
    rng = np.random.default_rng(seed)
    ref = rng.normal(scale=0.05, size=(v, 3))
    gt = ref + rng.normal(scale=0.004, size=(t_gt, v, 3))
    samples = ref + rng.normal(scale=0.004, size=(n, t, v, 3))
    lip = rng.choice(v, size=12, replace=False)
    upper = rng.choice(v, size=20, replace=False)
    return gt, samples, lip, upper, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_check_against_loop_implementation(seed):
    gt, samples, lip, upper, ref = random_clip(seed)
    t = samples.shape[1]
    m = compute_clip_metrics(gt, samples, lip_idx=lip, upper_idx=upper, reference=ref, rng=seed)
    assert m.lve == pytest.approx(loop_lve(gt, samples[0], lip), rel=1e-12)
    assert m.mee == pytest.approx(loop_lve(gt, samples.mean(axis=0), lip), rel=1e-12)
    assert m.ce == pytest.approx(min(loop_lve(gt, s, lip) for s in samples), rel=1e-12)
    fdd = loop_s(gt[:t], upper, ref) - loop_s(samples[0], upper, ref)
    assert m.fdd == pytest.approx(fdd, rel=1e-9, abs=1e-18)
    mve = np.mean([[np.linalg.norm(gt[f, v] - samples[0, f, v]) for v in range(gt.shape[1])] for f in range(t)])
    assert m.mve == pytest.approx(mve, rel=1e-12)
    perm = np.random.default_rng(seed).permutation(len(samples))
    half = len(samples) // 2
    div = np.mean([np.linalg.norm(samples[perm[k]] - samples[perm[k + half]], axis=-1).mean() for k in range(half)])
    assert m.diversity == pytest.approx(div, rel=1e-12)


def test_cross_check_against_torchmetrics_lve():
    tm_lve = pytest.importorskip("torchmetrics.functional.multimodal.lve", reason="torchmetrics is optional")
    from torchmetrics.multimodal.lve import LipVertexError

    acc = MetricAccumulator()
    _, _, lip, upper, _ = random_clip(5)
    lips = [int(i) for i in lip]
    module = LipVertexError(mouth_map=lips)
    for seed, t in ((5, 9), (6, 4)):
        gt, samples, _, _, ref = random_clip(seed, t=t, t_gt=t)
        m = compute_clip_metrics(gt, samples, lip_idx=lips, upper_idx=upper, reference=ref)
        expected = tm_lve.lip_vertex_error(torch.from_numpy(samples[0]), torch.from_numpy(gt), lips)
        assert m.lve == pytest.approx(float(expected), rel=1e-12)
        module.update(torch.from_numpy(samples[0]), torch.from_numpy(gt))
        acc.add(m)
    # torchmetrics' module concatenates frames of all updates: frame pooling, like ours
    assert acc.summary()["overall"]["lve"] == pytest.approx(float(module.compute()), rel=1e-12)


def test_upper_face_dynamics_on_flame_zero_pose(shared_fixtures):
    ref = np.load(shared_fixtures / "flame" / "flame_zero_pose.npy")
    upper = load_region_indices(shared_fixtures / "regions" / "fdd.txt", num_vertices=ref.shape[0])
    assert upper.shape == (1501,) and ref.shape == (5023, 3)
    rng = np.random.default_rng(0)
    still = np.repeat(ref[None], 4, axis=0)
    assert upper_face_dynamics(still, upper, ref) == 0.0  # no motion relative to R -> 0
    moving = ref + rng.normal(scale=1e-3, size=(6, 5023, 3)).astype(np.float32)
    assert upper_face_dynamics(moving, upper, ref) == pytest.approx(
        loop_s(moving.astype(np.float64), upper, ref.astype(np.float64)), rel=1e-9)
    lve_file = shared_fixtures / "regions" / "lve.txt"
    if lve_file.is_file():
        assert load_region_indices(lve_file, num_vertices=5023).shape == (428,)


def test_load_region_indices(tmp_path):
    f = tmp_path / "lve.txt"
    f.write_text("4,1, 7,\n2")
    assert load_region_indices(f).tolist() == [4, 1, 7, 2]
    f.write_text("1,6000")
    with pytest.raises(ValueError, match="5023"):
        load_region_indices(f, num_vertices=5023)
    f.write_text("1,x")
    with pytest.raises(ValueError, match="non-integer"):
        load_region_indices(f)
    with pytest.raises(FileNotFoundError, match="--regions-dir"):
        load_region_indices(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------------------
# dtypes, devices, units


def test_numpy_and_torch_inputs_agree_and_float32_is_computed_in_float64():
    gt, samples, lip, upper, ref = random_clip(3, v=200)
    base = compute_clip_metrics(gt, samples, lip_idx=lip, upper_idx=upper, reference=ref, rng=1)
    as_torch = compute_clip_metrics(torch.from_numpy(gt), torch.from_numpy(samples), lip_idx=torch.from_numpy(lip),
                                    upper_idx=list(upper), reference=torch.from_numpy(ref), rng=1)
    as_list = compute_clip_metrics(gt, list(samples), lip_idx=lip, upper_idx=upper, reference=ref, rng=1)
    assert base == as_torch == as_list

    g32, s32, r32 = gt.astype(np.float32), samples.astype(np.float32), ref.astype(np.float32)
    m32 = compute_clip_metrics(g32, s32, lip_idx=lip, upper_idx=upper, reference=r32, rng=1)
    m32_torch = compute_clip_metrics(torch.from_numpy(g32), torch.from_numpy(s32), lip_idx=lip, upper_idx=upper,
                                     reference=torch.from_numpy(r32), rng=1)
    upcast = compute_clip_metrics(g32.astype(np.float64), s32.astype(np.float64), lip_idx=lip, upper_idx=upper,
                                  reference=r32.astype(np.float64), rng=1)
    assert m32 == upcast == m32_torch
    # a float32 computation gives different numbers, so the equality above is informative
    s32_t, g32_t = torch.from_numpy(s32[0]), torch.from_numpy(g32[:s32.shape[1]])
    assert float((g32_t - s32_t).norm(dim=-1).mean()) != upcast.mve
    assert isinstance(m32.mve, float) and isinstance(m32.fdd, float)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_match_cpu():
    gt, samples, lip, upper, ref = random_clip(4, v=300)
    cpu = compute_clip_metrics(gt, samples, lip_idx=lip, upper_idx=upper, reference=ref, rng=2)
    dev = torch.device("cuda")
    gpu = compute_clip_metrics(torch.from_numpy(gt).float().to(dev), torch.from_numpy(samples).float().to(dev),
                               lip_idx=lip, upper_idx=upper, reference=torch.from_numpy(ref).float().to(dev), rng=2)
    f32 = compute_clip_metrics(gt.astype(np.float32), samples.astype(np.float32), lip_idx=lip, upper_idx=upper,
                               reference=ref.astype(np.float32), rng=2)
    for name in ("mve", "lve", "mee", "ce", "fdd", "fdd_abs", "diversity"):
        assert getattr(gpu, name) == pytest.approx(getattr(f32, name), rel=1e-10), name
    assert gpu.ce_sample == f32.ce_sample == cpu.ce_sample


def test_unit_conversions():
    # 1.5 mm; 46 mm² = 4.6e-5 m² = 4.6 × 10⁻⁵ m²; 1 mm² = 1e-6 m² = 0.1 × 10⁻⁵ m²
    assert m_to_mm(0.0015) == pytest.approx(1.5, rel=1e-15)
    assert m2_to_mm2(4.6e-5) == pytest.approx(46.0, rel=1e-15)
    assert m2_to_1e5_m2(4.6e-5) == pytest.approx(4.6, rel=1e-15)
    assert m2_to_1e5_m2(1e-6) == pytest.approx(0.1, rel=1e-15)
    assert m_to_mm(None) is None and m2_to_mm2(None) is None and m2_to_1e5_m2(None) is None
    row = clip(samples=np.stack([PRED, GT])).to_row()
    shown = to_display_units(row)
    assert shown["mve"] == 5.5e3 and shown["diversity"] == 5.5e3 and shown["lve"] == 62.5e6
    assert shown["fdd_pred"] == 61e6 and shown["frames"] == row["frames"] == 2
    assert set(COLUMN_UNITS) <= set(row)
    assert to_display_units({"diversity": None, "clips": 3}) == {"diversity": None, "clips": 3}
