"""The procedural demo head: FLAME schema, determinism, round trip, and the expression/jaw contract."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from probtalk3d_cli import demo_head
from probtalk3d_cli.demo_head import BROW_Y, EYE_X, MOUTH_HALF_WIDTH, MOUTH_Y, demo_head_dict, write_demo_head
from probtalk3d_cli.flame import FlameConverter, load_flame, load_flame_file, load_regions


@pytest.fixture(scope="module")
def head():
    return demo_head_dict()


@pytest.fixture(scope="module")
def conv():
    return FlameConverter(load_flame("demo"), dtype=torch.float64)


def test_schema_matches_flame_generic_model(head):
    v = head["v_template"]
    n = v.shape[0]
    assert 4500 <= n <= 5500  # comparable with FLAME's 5,023 for benchmarks
    assert head["shapedirs"].shape == (n, 3, 400)
    assert head["posedirs"].shape == (n, 3, 36)
    assert head["J_regressor"].shape == (5, n) and head["weights"].shape == (n, 5)
    assert head["kintree_table"].shape == (2, 5) and list(head["kintree_table"][0, 1:]) == [0, 1, 1, 1]
    f = head["f"]
    assert f.ndim == 2 and f.shape[1] == 3 and f.min() == 0 and f.max() == n - 1
    assert np.all(np.isfinite(head["shapedirs"])) and np.all(np.isfinite(head["posedirs"]))
    np.testing.assert_allclose(head["weights"].sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(head["J_regressor"].sum(1), 1.0, atol=1e-12)
    assert head["lmk_face_idx"].shape == (51,) and head["lmk_b_coords"].shape == (51, 3)
    assert head["dynamic_lmk_faces_idx"].shape == (79, 17) and head["dynamic_lmk_bary_coords"].shape == (79, 17, 3)
    assert head["lmk_face_idx"].max() < len(f)
    np.testing.assert_allclose(head["lmk_b_coords"].sum(1), 1.0, atol=1e-12)
    # every component does something
    assert (np.abs(head["shapedirs"]).max(axis=(0, 1)) > 1e-5).all()


def test_metric_size_and_orientation(head):
    v = head["v_template"]
    width, height = np.ptp(v[:, 0]), np.ptp(v[:, 1])
    assert 0.15 < width < 0.22 and 0.25 < height < 0.35  # metres, like FLAME (0.215 x 0.32)
    nose = v[np.argmax(v[:, 2])]  # the face looks toward +z: the most forward point is the nose tip
    assert abs(nose[0]) < 1e-6 and -0.04 < nose[1] < 0.0
    np.testing.assert_allclose(v[:, 0].mean(), 0.0, atol=1e-9)  # left/right symmetric


def test_deterministic_and_fast():
    a = demo_head_dict()
    for fn in (demo_head._demo_arrays, demo_head._build_mesh):
        fn.cache_clear()
    t0 = time.perf_counter()
    b = demo_head_dict()
    assert time.perf_counter() - t0 < 5.0
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])


def test_round_trip_through_pickle_and_obj(tmp_path, head):
    pkl = write_demo_head(tmp_path / "demo_head.pkl", obj_path=tmp_path / "demo_head.obj")
    fl = load_flame_file(pkl)
    ref = load_flame("demo")
    for name in ("v_template", "shapedirs", "expdirs", "posedirs", "J_regressor", "weights", "parents", "faces"):
        np.testing.assert_array_equal(getattr(fl, name), getattr(ref, name))
    np.testing.assert_array_equal(fl.lip_idx, ref.lip_idx)
    lines = (tmp_path / "demo_head.obj").read_text().splitlines()
    assert sum(ln.startswith("v ") for ln in lines) == len(head["v_template"])
    assert sum(ln.startswith("f ") for ln in lines) == len(head["f"])


def _lip_pair(head):
    """The two vertices on the lip line in the middle of the mouth (upper lip, lower lip); they coincide at rest."""
    v = head["v_template"]
    mid = np.flatnonzero((np.abs(v[:, 0]) < 1e-9) & (np.abs(v[:, 1] - MOUTH_Y) < 1e-6) & (v[:, 2] > 0))
    assert len(mid) == 2
    np.testing.assert_array_equal(v[mid[0]], v[mid[1]])
    return mid  # ring order: upper lip first


def _gap(conv, head, exp=None, jaw=0.0):
    e = np.zeros((1, 100))
    for k, val in (exp or {}).items():
        e[0, k] = val
    v = conv.vertices(e, np.array([[jaw, 0.0, 0.0]]))[0]
    up, lo = _lip_pair(head)
    return v[up, 1] - v[lo, 1], v


def test_exp0_and_jaw_open_the_mouth(conv, head):
    assert _gap(conv, head)[0] == 0.0
    assert _gap(conv, head, {0: 1.0})[0] > 0.004
    assert _gap(conv, head, {0: 2.0})[0] > _gap(conv, head, {0: 1.0})[0]
    assert _gap(conv, head, jaw=0.2)[0] > 0.01
    assert _gap(conv, head, jaw=-0.05)[0] < 0  # negative jaw closes (lips pass each other), as in FLAME
    _, v = _gap(conv, head, jaw=0.2)
    v0 = head["v_template"]
    on_chin = (np.abs(v0[:, 0]) < 1e-9) & (v0[:, 1] > -0.11) & (v0[:, 1] < -0.085)
    chin = np.flatnonzero(on_chin)[np.argmax(v0[on_chin, 2])]  # the most forward mid-line point below the mouth
    assert v[chin, 1] < v0[chin, 1] - 0.01  # the chin goes down
    forehead = np.flatnonzero((np.abs(v0[:, 0]) < 1e-9) & (v0[:, 1] > 0.05) & (v0[:, 2] > 0))
    np.testing.assert_array_equal(v[forehead], v0[forehead])  # the jaw does not move the upper head


def test_upper_face_expressions(conv, head):
    v0 = head["v_template"]
    front = v0[:, 2] > 0.02
    brow = front & (np.abs(np.abs(v0[:, 0]) - 0.03) < 0.008) & (np.abs(v0[:, 1] - BROW_Y) < 0.004)
    inner = front & (np.abs(v0[:, 0]) < 0.02) & (np.abs(v0[:, 1] - BROW_Y) < 0.005)
    assert brow.sum() >= 4 and inner.sum() >= 4
    raised = _gap(conv, head, {3: 1.0})[1]
    assert (raised[brow, 1] - v0[brow, 1]).mean() > 0.003
    furrow = _gap(conv, head, {4: 1.0})[1]
    assert (furrow[inner, 1] - v0[inner, 1]).mean() < -0.001
    assert (np.abs(furrow[inner, 0]) - np.abs(v0[inner, 0])).mean() < 0  # inner brows move together
    mouth = front & (v0[:, 1] < MOUTH_Y + 0.02)
    assert np.abs(raised[mouth] - v0[mouth]).max() < 1e-4  # brows do not move the mouth


def test_lip_corner_components(conv, head):
    v0 = head["v_template"]
    corner = np.flatnonzero((np.abs(np.abs(v0[:, 0]) - MOUTH_HALF_WIDTH) < 0.004) & (np.abs(v0[:, 1] - MOUTH_Y) < 0.003)
                            & (v0[:, 2] > 0))
    assert len(corner) >= 2
    smile = _gap(conv, head, {2: 1.0})[1]
    frown = _gap(conv, head, {2: -1.0})[1]
    assert (smile[corner, 1] - v0[corner, 1]).mean() > 0.002  # corners up
    assert (np.abs(smile[corner, 0]) - np.abs(v0[corner, 0])).mean() > 0.002  # and out
    assert (frown[corner, 1] - v0[corner, 1]).mean() < -0.002  # negative: corners down
    pucker = _gap(conv, head, {1: 1.0})[1]
    up, _ = _lip_pair(head)
    assert pucker[up, 2] - v0[up, 2] > 0.003  # lips push forward
    press = _gap(conv, head, {7: 1.0})[1]
    assert press[up, 2] - v0[up, 2] < -0.002  # lips pressed inward
    squint = _gap(conv, head, {5: 1.0})[1]
    cheek = (np.abs(np.abs(v0[:, 0]) - 0.040) < 0.006) & (np.abs(v0[:, 1] + 0.012) < 0.006) & (v0[:, 2] > 0)
    assert (squint[cheek, 1] - v0[cheek, 1]).mean() > 0.001
    wrinkle = _gap(conv, head, {6: 1.0})[1]
    assert wrinkle[up, 1] - v0[up, 1] > 0.002  # upper lip raises


def test_regions_are_sensible(head):
    fl = load_flame("demo")
    lip, upper = load_regions(None, fl)
    v = head["v_template"]
    assert np.all(np.abs(v[lip, 1] - MOUTH_Y) < 0.035) and np.all(np.abs(v[lip, 0]) < 0.04)
    assert np.all(v[upper, 1] > -0.025) and np.all(v[upper, 1] < 0.07)
    assert not np.intersect1d(lip, upper).size
    assert set(_lip_pair(head)) <= set(lip.tolist())
    eye = (np.abs(np.abs(v[:, 0]) - EYE_X) < 0.005) & (v[:, 2] > 0.02) & (np.abs(v[:, 1] - 0.022) < 0.005)
    assert set(np.flatnonzero(eye).tolist()) <= set(upper.tolist())
