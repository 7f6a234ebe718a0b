"""A procedural, deterministic FLAME-format head (`--flame-model demo`): no licensed model needed.

Same arrays and names as FLAME 2020 `generic_model.pkl` (reference §9): `v_template`, `shapedirs` (300 shape + 100
expression), `posedirs`, `J_regressor`, `weights`, `kintree_table`, `f`, plus landmark embeddings and its own lip and
upper-face region lists (the counterparts of the official `lve.txt` / `fdd.txt`, §1.6).
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Optional

import numpy as np

# Geometry (metres; y up, face toward +z, like FLAME).
N_COLS = 98  # vertices around the head
MOUTH_Y = -0.062  # height of the lip line
MOUTH_HALF_WIDTH = 0.026  # lip corners at x = +-0.026 m
EYE_Y = 0.022
EYE_X = 0.032
BROW_Y = 0.043
NECK_BOTTOM_Y = -0.19
_CENTRE = np.array([0.0, 0.0, -0.032])

# Expression contract shared with the synthetic corpus: what each of the first 8 expression components does (per
# unit coefficient; a motion file's 50 expression values are in [-3, 3]).
EXPRESSION_CONTRACT = (
    "exp0: lips part vertically (positive opens the mouth)",
    "exp1: lips round and pucker forward",
    "exp2: lip corners stretch (positive: smile, up and out; negative: corners down and in)",
    "exp3: brows raise",
    "exp4: brows furrow (inner brows down and together)",
    "exp5: squint / cheeks raise",
    "exp6: nose wrinkle / upper lip raise",
    "exp7: lips press together and inward",
)
N_SHAPE, N_EXP, N_POSE_FEATS = 300, 100, 36
JOINTS = ("root", "neck", "jaw", "eye_left", "eye_right")


def _smoothstep(e0, e1, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(*args):
    """exp(-0.5 * sum(a_i^2)) of already-normalised offsets."""
    s = sum(np.asarray(a, dtype=np.float64) ** 2 for a in args)
    return np.exp(-0.5 * s)


# --------------------------------------------------------------------------------------------------------
# Mesh
# --------------------------------------------------------------------------------------------------------


def _column_angles(n: int = N_COLS) -> np.ndarray:
    """Azimuths in (-pi, pi], symmetric about 0, denser on the face than at the back of the head."""
    u = (np.arange(n) - n // 2) / (n // 2)  # [-1, 1), contains 0 and pairs +-u
    a = 0.45
    return np.pi * (a * u + (1.0 - a) * u ** 3)


def _row_angles() -> tuple[np.ndarray, int]:
    """Polar angles of the rings (top pole excluded) and the index of the upper-lip ring.

    Rings are denser around the eyes and the mouth. The mouth gets a *double* ring: two rings at the same polar
    angle on the lips (they coincide there, which closes the mouth) that separate away from the mouth.
    """
    phi_end = np.deg2rad(162.0)
    grid = np.linspace(0.0, phi_end, 4000)
    dens = (1.0 + 1.8 * _gauss((grid - np.deg2rad(80)) / 0.16) + 2.6 * _gauss((grid - np.deg2rad(125)) / 0.13)
            + 0.6 * _gauss((grid - np.deg2rad(100)) / 0.2))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    n_rows = 50
    targets = np.linspace(0.0, cdf[-1], n_rows + 1)[1:]
    phis = np.interp(targets, cdf, grid)
    phi_m = _mouth_phi()
    k = int(np.argmin(np.abs(phis - phi_m)))
    phis[k] = phi_m
    phis = np.insert(phis, k + 1, phi_m)  # the double ring: index k (upper lip) and k + 1 (lower lip)
    return phis, k


def _mouth_phi() -> float:
    """Polar angle whose front ray (theta = 0) meets the base surface at the lip line height."""
    grid = np.linspace(np.deg2rad(100), np.deg2rad(150), 2001)
    pts = _surface(np.zeros_like(grid), grid)
    return float(np.interp(MOUTH_Y, pts[::-1, 1], grid[::-1]))


def _surface(theta, phi):
    """Final surface points: the base surface plus the radial relief of the face."""
    base = _base_surface(theta, phi)
    d = _directions(theta, phi)
    return base + _features(base, d)[..., None] * d


def _directions(theta, phi):
    return np.stack([np.sin(phi) * np.sin(theta), np.cos(phi), np.sin(phi) * np.cos(theta)], axis=-1)


def _base_surface(theta, phi):
    """Star-shaped base surface (skull, face, jaw, neck) as points, from the head centre along (theta, phi)."""
    d = _directions(theta, phi)
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    # Skull/face ellipsoid with different front/back and top/bottom extents, narrower toward the jaw.
    ax = 0.080 * (1.0 - 0.20 * _smoothstep(-0.15, -0.85, dy))
    ay = np.where(dy > 0, 0.108, 0.112)
    az = np.where(dz > 0, 0.088, 0.100)
    r_head = 1.0 / np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2 + (dz / az) ** 2)
    # Neck: vertical elliptic cylinder behind the chin, only below the jaw.
    nx, nz, nzc = 0.058, 0.056, -0.014
    a = (dx / nx) ** 2 + (dz / nz) ** 2 + 1e-9
    b = dz * nzc / nz ** 2
    c = nzc ** 2 / nz ** 2 - 1.0
    r_neck = (b + np.sqrt(b * b - a * c)) / a
    r_neck = np.minimum(r_neck, 0.4)
    gate = _smoothstep(-0.055, -0.11, r_neck * dy)
    r_neck = r_neck * gate
    k = 0.008  # smooth union (soft maximum) of the two radial functions
    r = k * np.logaddexp(r_head / k, r_neck / k)
    return _CENTRE + r[..., None] * d


def _features(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Radial relief of the face (nose, brows, eyes, cheeks, lips, chin, ears) in metres at base points `p`."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    front = _smoothstep(0.25, 0.7, d[..., 2])
    ax_ = np.abs(x)
    h = np.zeros_like(x)
    # nose: bridge, tip, wings
    h += 0.008 * _gauss(x / 0.007, (y - 0.008) / 0.022) * _smoothstep(0.03, 0.0, y)
    h += 0.017 * _gauss(x / 0.010, (y + 0.020) / 0.012)
    h += 0.007 * _gauss((ax_ - 0.016) / 0.007, (y + 0.030) / 0.007)
    # brow ridge, eye sockets, eyeballs/lids
    h += 0.006 * _gauss((ax_ - 0.030) / 0.022, (y - BROW_Y) / 0.008)
    h -= 0.011 * _gauss((ax_ - EYE_X) / 0.016, (y - EYE_Y) / 0.011)
    h += 0.007 * _gauss((ax_ - EYE_X) / 0.010, (y - EYE_Y + 0.001) / 0.0065)
    # cheekbones, muzzle around the mouth, lips, chin
    h += 0.006 * _gauss((ax_ - 0.046) / 0.016, (y + 0.008) / 0.016)
    h += 0.008 * _gauss(x / 0.032, (y - MOUTH_Y) / 0.022)
    lip_w = _smoothstep(MOUTH_HALF_WIDTH + 0.004, MOUTH_HALF_WIDTH - 0.010, ax_)
    h += 0.0045 * _gauss(x / 0.030, (y - MOUTH_Y - 0.0045) / 0.0035) * lip_w
    h += 0.0050 * _gauss(x / 0.028, (y - MOUTH_Y + 0.0055) / 0.0042) * lip_w
    h += 0.010 * _gauss(x / 0.022, (y + 0.097) / 0.012)
    h = h * front
    # ears (on the sides)
    side = _smoothstep(0.75, 0.95, np.abs(d[..., 0]))
    h += 0.012 * _gauss((y - 0.004) / 0.022, (z + 0.040) / 0.010) * side
    return h


@functools.lru_cache(maxsize=1)
def _build_mesh():
    """Vertices [V,3], faces [F,3], ring index per vertex, the upper-lip ring index, per-vertex directions."""
    thetas = _column_angles()
    phis, k_up = _row_angles()
    n_rows, n_cols = len(phis), len(thetas)
    theta_g, phi_g = np.meshgrid(thetas, phis)  # [R, C]
    # Separate the two lip rings away from the mouth (they coincide between the lip corners).
    corner = np.arctan2(MOUTH_HALF_WIDTH, 0.07)
    sep = _smoothstep(corner, corner + 0.25, np.abs(thetas))
    delta = 0.5 * (phis[k_up + 2] - phis[k_up - 1]) / 3.0
    phi_g[k_up] -= delta * sep
    phi_g[k_up + 1] += delta * sep
    pts = _surface(theta_g, phi_g)
    d = _directions(theta_g, phi_g)
    # Open bottom rim: the last ring lies on the neck cylinder at NECK_BOTTOM_Y.
    pts[-1, :, 0] = 0.058 * np.sin(thetas)
    pts[-1, :, 1] = NECK_BOTTOM_Y
    pts[-1, :, 2] = _CENTRE[2] - 0.014 + 0.056 * np.cos(thetas)
    top = _CENTRE + np.array([0.0, 0.108, 0.0])
    verts = np.concatenate([top[None], pts.reshape(-1, 3)], axis=0)
    ring = np.concatenate([[-1], np.repeat(np.arange(n_rows), n_cols)])
    dirs = np.concatenate([[[0.0, 1.0, 0.0]], d.reshape(-1, 3)], axis=0)

    def vid(r, c):
        return 1 + r * n_cols + (c % n_cols)

    faces = []
    for c in range(n_cols):  # top fan (counter-clockwise seen from outside)
        faces.append((0, vid(0, c), vid(0, c + 1)))
    slit = sep == 0.0  # columns where the lips touch
    for r in range(n_rows - 1):
        for c in range(n_cols):
            c1 = (c + 1) % n_cols
            if r == k_up and slit[c] and slit[c1]:
                continue  # the mouth opening
            a, b, cc, dd = vid(r, c), vid(r, c1), vid(r + 1, c1), vid(r + 1, c)
            faces.append((a, dd, b))
            faces.append((b, dd, cc))
    faces = np.asarray(faces, dtype=np.int64)
    return verts, faces, ring, k_up, dirs


# --------------------------------------------------------------------------------------------------------
# Model arrays
# --------------------------------------------------------------------------------------------------------


def _lbs_weights(v, ring, k_up, dirs):
    x, y = v[:, 0], v[:, 1]
    lower = ring >= k_up + 1
    # Lower lip fully on the jaw between the corners, fading to zero at the corners (lens-shaped opening); below the
    # mouth the whole lower face follows the jaw, with a wide blend so that the cheeks stretch smoothly.
    near_mouth = _smoothstep(MOUTH_HALF_WIDTH, 0.45 * MOUTH_HALF_WIDTH, np.abs(x))
    below = _smoothstep(MOUTH_Y + 0.002, MOUTH_Y - 0.040, y - 0.25 * np.clip(np.abs(x) - MOUTH_HALF_WIDTH, 0, None))
    front = _smoothstep(-0.45, 0.45, dirs[:, 2])
    not_neck = _smoothstep(-0.165, -0.12, y)
    w_jaw = np.where(lower, np.maximum(near_mouth, below), 0.0) * front * not_neck
    w = np.zeros((len(v), 5))
    w[:, 2] = w_jaw
    neck_part = _smoothstep(-0.12, -0.17, y)
    w[:, 0] = (1.0 - w_jaw) * neck_part
    w[:, 1] = (1.0 - w_jaw) * (1.0 - neck_part)
    return w


def _joint_regressor(v, ring):
    def near(c, radius):
        return np.linalg.norm(v - np.asarray(c), axis=1) < radius

    n_rows = ring.max() + 1
    sets = [
        ring == n_rows - 1,  # root: the bottom rim of the neck
        np.abs(v[:, 1] + 0.12) < 0.006,  # neck: a ring around the neck
        near((0.073, -0.036, -0.030), 0.014) | near((-0.073, -0.036, -0.030), 0.014),  # jaw hinge (both sides)
        near((EYE_X, EYE_Y, 0.045), 0.012),
        near((-EYE_X, EYE_Y, 0.045), 0.012),
    ]
    jr = np.zeros((5, len(v)))
    for j, s in enumerate(sets):
        if not s.any():
            raise AssertionError(f"demo head: no vertices for joint {JOINTS[j]}")
        jr[j, s] = 1.0 / s.sum()
    return jr


def _expression_basis(v, ring, k_up, dirs, rng):
    """[V, 3, 100]: the 8 contract components, then small smooth localised deformations."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax_ = np.abs(x)
    sx = np.sign(x)
    front = _smoothstep(0.2, 0.6, dirs[:, 2])
    upper = ring <= k_up
    lower = ~upper & (ring >= 0)
    side = np.where(upper, 1.0, -1.0)
    E = np.zeros((len(v), 3, N_EXP))
    open_w = np.clip(1.0 - (x / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0) ** 0.7
    mouth_zone = _gauss(x / 0.03, (y - MOUTH_Y) / 0.02) * front
    # exp0: lips part. Upper lip up a little, lower lip and chin down more; corners stay closed.
    up_fall = _gauss((y - MOUTH_Y) / 0.012) * open_w
    lo_fall = (_gauss((y - MOUTH_Y) / 0.018) * open_w + 0.35 * _gauss(x / 0.03, (y + 0.095) / 0.02))
    E[:, 1, 0] = np.where(upper, 0.0018 * up_fall, -0.0042 * lo_fall) * front
    E[:, 2, 0] = np.where(upper, 0.0, -0.0008 * lo_fall) * front
    # exp1: round/pucker: corners inward, lips forward.
    pucker = _gauss(x / 0.040, (y - MOUTH_Y) / 0.022) * front
    lips = _gauss(x / 0.024, (y - MOUTH_Y) / 0.009) * front
    E[:, 0, 1] = -0.10 * x * pucker
    E[:, 2, 1] = 0.0020 * pucker + 0.0040 * lips
    E[:, 1, 1] = 0.0008 * side * pucker * open_w
    # exp2: corners stretch: outward and up (smile) for positive values.
    corner_zone = _gauss((ax_ - MOUTH_HALF_WIDTH) / 0.014, (y - MOUTH_Y) / 0.016) * front
    E[:, 0, 2] = 0.0055 * sx * corner_zone
    E[:, 1, 2] = 0.0045 * corner_zone + 0.0012 * _gauss((ax_ - 0.042) / 0.014, (y + 0.02) / 0.015) * front
    E[:, 2, 2] = -0.0012 * corner_zone
    # exp3: brows raise (forehead follows a little).
    brow = _gauss((ax_ - 0.030) / 0.020, (y - BROW_Y) / 0.010) * front
    E[:, 1, 3] = 0.0040 * brow + 0.0012 * _gauss(x / 0.06, (y - 0.07) / 0.02) * front
    # exp4: furrow: inner brows down and toward the middle.
    inner = _gauss((ax_ - 0.016) / 0.011, (y - BROW_Y + 0.002) / 0.010) * front
    E[:, 1, 4] = -0.0030 * inner
    E[:, 0, 4] = -0.0025 * sx * inner
    E[:, 2, 4] = 0.0010 * inner
    # exp5: squint / cheek raise.
    cheek = _gauss((ax_ - 0.040) / 0.016, (y + 0.012) / 0.014) * front
    lid = _gauss((ax_ - EYE_X) / 0.012, (y - EYE_Y + 0.007) / 0.004) * front
    E[:, 1, 5] = 0.0030 * cheek + 0.0020 * lid
    E[:, 2, 5] = 0.0020 * cheek
    # exp6: nose wrinkle / upper lip raise.
    nose_side = _gauss((ax_ - 0.014) / 0.010, (y + 0.018) / 0.014) * front
    ulip = _gauss(x / 0.024, (y - MOUTH_Y - 0.007) / 0.008) * front * upper
    E[:, 1, 6] = 0.0022 * nose_side + 0.0030 * ulip
    E[:, 2, 6] = 0.0008 * nose_side + 0.0010 * ulip
    # exp7: lip press: lips inward, thickness squeezed toward the lip line.
    press = _gauss(x / 0.026, (y - MOUTH_Y) / 0.010) * front
    E[:, 2, 7] = -0.0030 * press
    E[:, 1, 7] = -0.0012 * side * press * _smoothstep(0.0, 0.004, np.abs(y - MOUTH_Y))  # the lip line stays put
    # exp8..99: small smooth localised deformations around random face points, decaying amplitude.
    face_pts = v[(dirs[:, 2] > 0.55) & (y > -0.11) & (y < 0.07)]
    for k in range(8, N_EXP):
        c = face_pts[rng.integers(len(face_pts))]
        radius = rng.uniform(0.010, 0.022)
        direction = rng.normal(size=3) * np.array([0.6, 1.0, 0.8])
        direction /= np.linalg.norm(direction)
        amp = 0.0016 / (1.0 + (k - 8) / 20.0)
        bump = _gauss(np.linalg.norm(v - c, axis=1) / radius) * front
        E[:, :, k] = amp * bump[:, None] * direction[None]
    return E


def _shape_basis(v, rng):
    """[V, 3, 300]: smooth global identity changes with decaying amplitude (mostly left/right symmetric)."""
    q = (v - _CENTRE) / 0.1  # roughly in [-1, 1]
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    S = np.zeros((len(v), 3, N_SHAPE))
    named = [
        np.stack([x, 0 * y, 0 * z], 1),  # width
        np.stack([0 * x, y, 0 * z], 1),  # height
        np.stack([0 * x, 0 * y, z], 1),  # depth
        np.stack([x * np.clip(-y, 0, None), 0 * y, 0 * z], 1),  # jaw width
        np.stack([0 * x, 0 * y, np.clip(z, 0, None) ** 3 * np.exp(-4 * x * x)], 1),  # face protrusion
        np.stack([x * np.clip(y, 0, None), 0 * y, 0 * z], 1),  # skull width
    ]
    for k, field in enumerate(named):
        S[:, :, k] = 0.006 * field
    feats = [np.ones_like(x), x * x, y, z, y * y, z * z, y * z, x * x * y, y ** 3, z ** 3, np.sin(2 * y), np.cos(3 * z)]
    feats = np.stack(feats, 1)  # [V, 12], even in x
    odd = x[:, None] * feats  # odd in x
    for k in range(len(named), N_SHAPE):
        amp = 0.004 / (1.0 + k / 12.0)
        cx, cy, cz = (rng.normal(size=feats.shape[1]) for _ in range(3))
        fx = odd @ cx  # symmetric shapes: x-displacement odd in x, y/z even
        fy = feats @ cy
        fz = feats @ cz
        field = np.stack([fx, fy, fz], 1)
        field /= np.abs(field).max() + 1e-12
        S[:, :, k] = amp * field
    return S


def _pose_correctives(v, w, rng):
    """[V, 3, 36] in FLAME's layout (smplx reshapes it to [V*3, 36] and transposes)."""
    q = (v - _CENTRE) / 0.1
    P = np.zeros((len(v), 3, N_POSE_FEATS))
    jaw_zone = w[:, 2] * (1.0 - w[:, 2]) * 4.0 + 0.3 * w[:, 2]  # strongest where the jaw blends into the head
    for f in range(N_POSE_FEATS):
        coef = rng.normal(size=(3, 4))
        basis = np.stack([np.ones(len(v)), q[:, 0] ** 2, q[:, 1], q[:, 2]], 1)
        field = basis @ coef.T  # [V, 3]
        zone = jaw_zone if 9 <= f < 18 else 0.3 * np.exp(-np.sum(q * q, 1))
        P[:, :, f] = 0.004 * field * zone[:, None]
    return P


def _landmarks(v, faces):
    """Static (51) and dynamic (79 x 17) landmark embeddings: face index + barycentric coordinates."""
    mx = MOUTH_HALF_WIDTH
    pts = []
    pts += [(sx * xx, BROW_Y + 0.004 - 0.08 * (xx - 0.03) ** 2, 0.06) for sx in (1, -1)
            for xx in np.linspace(0.012, 0.055, 5)]
    pts += [(0.0, yy, 0.08) for yy in np.linspace(0.01, -0.022, 4)]
    pts += [(xx, -0.032, 0.07) for xx in np.linspace(-0.016, 0.016, 5)]
    pts += [(sx * EYE_X + 0.011 * np.cos(a), EYE_Y + 0.005 * np.sin(a), 0.05) for sx in (1, -1)
            for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    pts += [(mx * np.cos(a), MOUTH_Y + 0.009 * np.sin(a), 0.06) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    pts += [(0.018 * np.cos(a), MOUTH_Y + 0.003 * np.sin(a), 0.06)
            for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    contour = [(0.072 * np.sin(a), -0.035 - 0.062 * np.cos(a), -0.01 + 0.05 * np.cos(a))
               for a in np.linspace(-1.2, 1.2, 17)]  # along the jaw line
    idx, bary = _embed(v, faces, np.asarray(pts, dtype=np.float64))
    didx, dbary = _embed(v, faces, np.asarray(contour, dtype=np.float64))
    return (idx.astype(np.uint32), bary, np.repeat(didx[None], 79, 0).astype(np.int64),
            np.repeat(dbary[None], 79, 0))


def _embed(v, faces, pts):
    cent = v[faces].mean(1)
    # project each point onto the surface along z (landmarks are on the front), then pick the closest face
    fi = np.array([np.argmin(np.linalg.norm(cent[:, :2] - p[:2], axis=1) + 0.3 * np.abs(cent[:, 2] - p[2]))
                   for p in pts])
    tri = v[faces[fi]]  # [N, 3, 3]
    a, b, c = tri[:, 0, :2], tri[:, 1, :2], tri[:, 2, :2]
    m = np.stack([b - a, c - a], -1)  # [N, 2, 2]
    det = np.linalg.det(m)
    m = np.where(np.abs(det)[:, None, None] < 1e-14, np.eye(2), m)
    uv = np.linalg.solve(m, (pts[:, :2] - a)[..., None])[..., 0]
    bary = np.stack([1 - uv.sum(1), uv[:, 0], uv[:, 1]], 1).clip(0, None)
    bary /= bary.sum(1, keepdims=True)
    return fi, bary


@functools.lru_cache(maxsize=1)
def _demo_arrays() -> tuple:
    v, faces, ring, k_up, dirs = _build_mesh()
    rng = np.random.default_rng(20240906)
    w = _lbs_weights(v, ring, k_up, dirs)
    jr = _joint_regressor(v, ring)
    shapedirs = np.concatenate([_shape_basis(v, rng), _expression_basis(v, ring, k_up, dirs, rng)], axis=2)
    posedirs = _pose_correctives(v, w, rng)
    lmk_idx, lmk_bary, dyn_idx, dyn_bary = _landmarks(v, faces)
    front = dirs[:, 2]
    lips = np.flatnonzero((np.abs(v[:, 0]) < 0.036) & (v[:, 1] > MOUTH_Y - 0.03) & (v[:, 1] < MOUTH_Y + 0.025)
                          & (front > 0.5))
    upper_face = np.flatnonzero((v[:, 1] > -0.022) & (v[:, 1] < 0.069) & (front > 0.3) & (np.abs(v[:, 0]) < 0.07))
    arrays = dict(
        v_template=v, shapedirs=shapedirs, posedirs=posedirs, J_regressor=jr, weights=w,
        kintree_table=np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        f=faces.astype(np.uint32), J=jr @ v,
        lmk_face_idx=lmk_idx, lmk_b_coords=lmk_bary,
        dynamic_lmk_faces_idx=dyn_idx, dynamic_lmk_bary_coords=dyn_bary,
        lip_region_idx=lips.astype(np.int64), upper_face_region_idx=upper_face.astype(np.int64),
    )
    for a in arrays.values():
        a.setflags(write=False)
    return tuple(arrays.items())


def demo_head_dict() -> dict:
    """The demo head as a FLAME-format dict of numpy arrays (a fresh copy; generated once per process).

    Keys as in FLAME 2020 `generic_model.pkl`: `v_template` [V,3], `shapedirs` [V,3,400] (300 shape + 100 expression),
    `posedirs` [V,3,36], `J_regressor` [5,V], `weights` [V,5], `kintree_table` [2,5], `f` [F,3], `J` [5,3]; plus the
    landmark embeddings `lmk_face_idx` [51], `lmk_b_coords` [51,3], `dynamic_lmk_faces_idx` [79,17],
    `dynamic_lmk_bary_coords` [79,17,3], and the region lists `lip_region_idx`, `upper_face_region_idx`.
    Metres, y up, face toward +z. Expression components 0..7 follow `EXPRESSION_CONTRACT`.
    """
    out = {k: np.array(v) for k, v in _demo_arrays()}
    out["bs_style"] = "lbs"
    out["bs_type"] = "lrotmin"
    return out


def write_demo_head(path: str | Path, obj_path: Optional[str | Path] = None) -> Path:
    """Write the demo head as a FLAME-format `.pkl` (numpy arrays only), and optionally its neutral mesh as OBJ.

    The pickle is read back by `probtalk3d_cli.flame.load_flame(path)` like a real `generic_model.pkl`.
    """
    from probtalk3d_cli.io import atomic_path, atomic_write_text

    d = demo_head_dict()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(d, fh, protocol=4)
    if obj_path is not None:
        atomic_write_text(obj_path, obj_text(d["v_template"], d["f"]))
    return Path(path)


def obj_text(verts: np.ndarray, faces: np.ndarray) -> str:
    """A minimal Wavefront OBJ (1-based faces) for one mesh."""
    lines = ["# probtalk3d mesh"]
    lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in np.asarray(verts, dtype=np.float64)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in np.asarray(faces, dtype=np.int64)]
    return "\n".join(lines) + "\n"
