"""`probtalk3d export`: animations for other tools — glTF 2.0 / GLB (FLAME rig), CSV coefficients, OBJ sequences.

Reference §9: FLAME is blend shapes (identity, expression, pose correctives) followed by linear blend skinning, which
is exactly what glTF does (morph targets are applied before skinning), so params and motion files export as an exact
rig.
Vertex files without parameters fall back to one morph target per frame (also exact, much larger).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from probtalk3d_cli.data.schema import N_EXP, N_EXP_USED, N_SHAPE
from probtalk3d_cli.flame import JAW, N_JOINTS

log = logging.getLogger(__name__)

FORMATS = ("gltf", "glb", "csv", "obj-seq")
SUFFIX_FORMAT = {".glb": "glb", ".gltf": "gltf", ".csv": "csv"}
FILE_SUFFIXES = (".glb", ".gltf", ".csv", ".obj", ".npy", ".json", ".ply", ".bin", ".fbx", ".mp4", ".wav")
JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")  # FLAME joint order (reference §9)
RIG_MODE = "flame-rig"  # morph targets (expression, jaw correctives) + skin with an animated jaw joint
FRAMES_MODE = "per-frame"  # one morph target per frame, one-hot STEP weights
SKIN_TOLERANCE = 1e-6  # skinning weights must sum to 1 within this for the rig to be exact
CSV_FLOAT = "%.9g"  # 9 significant digits: every float32 value round-trips exactly

# glTF constants (numbers from the glTF 2.0 specification)
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_NUMPY = {_FLOAT: "<f4", _UBYTE: "u1", _USHORT: "<u2", _UINT: "<u4"}
_WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}


@dataclass
class ExportOutput:
    """What `export` wrote.

    Attributes:
        path: the output file (or folder for obj-seq). sidecar: `<out stem>.json` next to it.
        format: gltf | glb | csv | obj-seq. kind: the input kind (params | motion | vertices).
        mode: "flame-rig", "per-frame" (glTF of a vertex file), "csv" or "obj-seq".
        exact: the output reproduces the input's FLAME vertices at every frame (within float32 rounding).
        frames, fps: animation length and rate (keyframe i at i / fps; the clip lasts frames / fps seconds).
        morph_targets: number of glTF morph targets (0 for csv / obj-seq).
        kept_expression: expression components stored (glTF / CSV), in order.
        audio: the audio to pair with the animation (path as found), or None.
        bytes: size written (the folder's total for obj-seq, without the sidecar). seconds: wall time.
        notes: anything a user should know (e.g. skinning weights merged into a parent joint).
    """

    path: Path
    sidecar: Path
    format: str
    kind: str
    mode: str
    exact: bool
    frames: int
    fps: float
    morph_targets: int = 0
    kept_expression: list = field(default_factory=list)
    audio: Optional[Path] = None
    bytes: int = 0
    seconds: float = 0.0
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def infer_format(out: str | Path, fmt: Optional[str] = None) -> str:
    """The export format from `--format` and/or the `--out` suffix (.glb, .gltf, .csv; a folder for obj-seq).

    Raises:
        ValueError: unknown format, a suffix that cannot be inferred, or a format that contradicts the suffix.
    """
    p = Path(out)
    suffix = p.suffix.lower()
    if fmt is not None:
        fmt = fmt.strip().lower()
        if fmt not in FORMATS:
            raise ValueError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
        if fmt == "obj-seq":
            if suffix in FILE_SUFFIXES:
                raise ValueError(f"--format obj-seq writes a folder of OBJ files but --out {p} ends in {suffix}; "
                                 "pass a folder name such as frames/")
        elif suffix != f".{fmt}":
            raise ValueError(f"--format {fmt} does not match --out {p} (suffix {suffix or 'none'}); name the output "
                             f"*.{fmt} or drop --format to infer it from the suffix")
        return fmt
    if suffix in SUFFIX_FORMAT:
        return SUFFIX_FORMAT[suffix]
    if suffix == "" or p.is_dir():
        return "obj-seq"
    raise ValueError(f"cannot tell the export format from --out {p} (suffix {suffix}); use .glb, .gltf, .csv, a "
                     "folder name for an OBJ sequence, or pass --format")


def resolve_shape(spec: Optional[str], kind: str):
    """`--shape` for export -> "keep" | None (zero) | float64 [300].

    Default: keep for params (identity as stored), zero for motion (it has no identity). Vertex files already contain
    their identity, so a `--shape` for them is an error.
    """
    from probtalk3d_cli.io import load_npy

    if kind == "vertices":
        if spec is not None:
            raise ValueError("--shape does not apply to vertex files (their identity is baked into the vertices); "
                             "drop --shape")
        return None
    s = (spec or ("keep" if kind == "params" else "zero")).strip()
    if s == "zero":
        return None
    if s == "keep":
        return "keep" if kind == "params" else None  # motion files carry no identity: keep = the mean face
    if s.lower().endswith(".npy"):
        a = load_npy(s, what="shape").astype(np.float64).reshape(-1)
        if a.shape != (N_SHAPE,):
            raise ValueError(f"shape file {s} must hold 300 FLAME shape coefficients, got {a.size} values")
        return a
    raise ValueError(f"--shape {s!r} is not valid; use keep, zero or a .npy file with 300 shape coefficients")


def axis_angle_to_quaternion(aa: np.ndarray) -> np.ndarray:
    """Axis-angle [T, 3] (radians) -> unit quaternions [T, 4] in glTF order (x, y, z, w), float64.

    Consecutive quaternions are kept in the same hemisphere so that slerp between keyframes takes the short way.
    """
    aa = np.asarray(aa, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(aa, axis=1)
    small = theta < 1e-6
    safe = np.where(small, 1.0, theta)
    k = np.where(small, 0.5 - theta ** 2 / 48.0, np.sin(safe / 2.0) / safe)  # sin(t/2)/t
    q = np.concatenate([aa * k[:, None], np.cos(theta / 2.0)[:, None]], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


def rotation_matrices(aa: np.ndarray) -> np.ndarray:
    """Axis-angle [T, 3] -> rotation matrices [T, 3, 3] float64 (numpy twin of `flame.rodrigues`, no torch import).

    R = I + (sin t / t) K + ((1 - cos t) / t^2) K^2 with K the cross-product matrix of the axis-angle vector.
    """
    aa = np.asarray(aa, dtype=np.float64).reshape(-1, 3)
    t2 = (aa * aa).sum(1)
    small = t2 < 1e-8
    t = np.sqrt(np.where(small, 1.0, t2))
    s = np.where(small, 1.0 - t2 / 6.0, np.sin(t) / t)
    c = np.where(small, 0.5 - t2 / 24.0, (1.0 - np.cos(t)) / (t * t))
    x, y, z = aa.T
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).reshape(-1, 3, 3)
    return np.eye(3) + s[:, None, None] * k + c[:, None, None] * (k @ k)


def skin_attributes(weights: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """FLAME skinning weights [V, 5] -> glTF JOINTS_0 (uint8 [V, 4]) and WEIGHTS_0 (float32 [V, 4]).

    glTF keeps 4 influences per vertex set. A vertex with 5 non-zero weights has its smallest non-jaw weight added to
    that joint's parent (neck for the root): exact for every animation this exporter writes, where only the jaw moves
    (all other joints keep the identity transform), and close for edits that move the neck or eyes.

    Returns:
        joints, weights, number of vertices whose weights were merged.
    """
    w = np.asarray(weights, dtype=np.float64).copy()
    if (w < 0).any():
        raise ValueError("the FLAME model has negative skinning weights, which glTF cannot store; use a FLAME 2020 "
                         "generic_model.pkl or --format obj-seq")
    merged = 0
    for v in np.flatnonzero((w > 0).sum(1) > 4):
        nz = [j for j in np.flatnonzero(w[v] > 0) if j != JAW]
        j = min(nz, key=lambda i: w[v, i])
        to = int(parents[j]) if parents[j] >= 0 else 1
        w[v, to] += w[v, j]
        w[v, j] = 0.0
        merged += 1
    order = np.argsort(-w, axis=1, kind="stable")[:, :4]  # [V, 4] joint indices, largest weight first
    top = np.take_along_axis(w, order, axis=1)
    order = np.where(top > 0, order, 0)  # unused slots: joint 0 with weight 0
    top[top.sum(1) == 0, 0] = 1.0  # a vertex no joint moves: pinned to the root
    return order.astype(np.uint8), top.astype(np.float32), merged


def _json_safe(value):
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))


# --------------------------------------------------------------------------------------------------------
# The animation content (independent of the file format)
# --------------------------------------------------------------------------------------------------------


@dataclass
class RigAnimation:
    """Everything a glTF file needs, in float64 numpy (metres, radians).

    Attributes:
        base: [V, 3] neutral mesh (identity applied). targets: [K, V, 3] morph target offsets.
        target_names: K names (exp_i, jaw_pose_ab, shape_i, or frame_i). weights: [T, K] morph weights per frame.
        joints: [5, 3] rest joint positions (world) of `base`, or None for per-frame vertex animation.
        jaw_rotation: [T, 4] quaternions (x, y, z, w); jaw_translation: [T, 3] jaw node translation relative to its
            parent (it moves with the expression, because FLAME regresses the joint from the expressed mesh).
        skin_joints / skin_weights: per-vertex JOINTS_0 / WEIGHTS_0. interpolation: LINEAR or STEP.
        kept_expression: expression components stored as targets; shape_components: identity components that vary
            over the clip (per-frame identity in params files), also stored as targets.
    """

    base: np.ndarray
    targets: np.ndarray
    target_names: list
    weights: np.ndarray
    mode: str
    exact: bool
    interpolation: str = "LINEAR"
    joints: Optional[np.ndarray] = None
    jaw_rotation: Optional[np.ndarray] = None
    jaw_translation: Optional[np.ndarray] = None
    skin_joints: Optional[np.ndarray] = None
    skin_weights: Optional[np.ndarray] = None
    kept_expression: list = field(default_factory=list)
    shape_components: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def rig_animation(flame, exp: np.ndarray, jaw: np.ndarray, shape=None) -> RigAnimation:
    """FLAME parameters -> morph targets + skin + jaw keyframes that glTF plays back exactly (reference §9).

    FLAME: v = T + S.shape + E.exp + P_jaw.vec(R - I); J = J_regressor . (T + S.shape + E.exp); then linear blend
    skinning where only the jaw rotates. glTF: morph targets (E columns, the 9 jaw rows of P, varying S columns) are
    added before skinning; the jaw joint's inverse bind matrix is fixed at the neutral joint J0, so the jaw node's
    translation is animated to J(t) - R(t) (J(t) - J0) (relative to the neck), which makes
    T(node) R T(-J0) = T(J) R T(-J) — FLAME's transform — at every keyframe.

    Args:
        flame: FlameModel. exp: [T, <=100] expression coefficients. jaw: [T, 3] axis-angle.
        shape: None (zero identity), [300] or [T, 300] identity coefficients.
    """
    exp = np.asarray(exp, dtype=np.float64)
    jaw = np.asarray(jaw, dtype=np.float64).reshape(-1, 3)
    n_t = exp.shape[0]
    if exp.shape[1] > N_EXP or jaw.shape[0] != n_t:
        raise ValueError(f"exp must be [T, <=100] and jaw [T, 3] with the same T, got {list(exp.shape)} and "
                         f"{list(jaw.shape)}")
    v = flame.v_template
    if shape is None:
        shape = np.zeros((1, N_SHAPE))
    shape = np.asarray(shape, dtype=np.float64).reshape(-1, N_SHAPE)
    if shape.shape[0] not in (1, n_t):
        raise ValueError(f"shape must be [300] or [T, 300] with T = {n_t}, got {list(shape.shape)}")
    shape0 = shape[0]
    dshape = shape - shape0  # [T or 1, 300]
    shape_kept = [int(k) for k in np.flatnonzero(np.any(dshape != 0, axis=0))]
    kept = [int(k) for k in np.flatnonzero(np.any(exp != 0, axis=0))]

    base = v + flame.shapedirs @ shape0  # [V, 3]
    j0 = flame.J_regressor @ base  # [5, 3] rest joints of the chosen identity
    rot = rotation_matrices(jaw)  # [T, 3, 3]
    pose_feat = (rot - np.eye(3)).reshape(n_t, 9)  # FLAME's pose feature for the jaw, row-major (R - I)
    n = flame.num_vertices
    pose_rows = flame.posedirs[(JAW - 1) * 9:JAW * 9].reshape(9, n, 3)  # [9, V, 3]
    targets = [flame.expdirs[:, :, kept].transpose(2, 0, 1), pose_rows]
    names = [f"exp_{k}" for k in kept] + [f"jaw_pose_{a}{b}" for a in range(3) for b in range(3)]
    weights = [exp[:, kept], pose_feat]
    if shape_kept:
        targets.append(flame.shapedirs[:, :, shape_kept].transpose(2, 0, 1))
        names += [f"shape_{k}" for k in shape_kept]
        weights.append(np.broadcast_to(dshape[:, shape_kept], (n_t, len(shape_kept))))

    jr_jaw = flame.J_regressor[JAW]
    ej = np.einsum("v,vck->kc", jr_jaw, flame.expdirs[:, :, :exp.shape[1]])  # [E, 3]: how expression moves the jaw
    joint_jaw = j0[JAW] + exp @ ej  # [T, 3]
    if shape_kept:
        sj = np.einsum("v,vck->kc", jr_jaw, flame.shapedirs)  # [300, 3]
        joint_jaw = joint_jaw + dshape @ sj
    moved = joint_jaw - j0[JAW]
    world = joint_jaw - np.einsum("tij,tj->ti", rot, moved)  # where the jaw node must sit (world)
    parent = int(flame.parents[JAW])

    notes = []
    exact = True
    wsum = flame.weights.sum(1)
    if not np.allclose(wsum, 1.0, atol=SKIN_TOLERANCE):
        exact = False
        notes.append(f"skinning weights of {flame.source} do not sum to 1 (max deviation "
                     f"{np.abs(wsum - 1).max():.2e}); glTF normalises them, so jaw motion is approximate")
    sj_idx, sw, merged = skin_attributes(flame.weights / np.where(wsum > 0, wsum, 1.0)[:, None], flame.parents)
    if merged:
        notes.append(f"{merged} vertices had 5 skinning influences; the smallest non-jaw one was merged into its "
                     "parent joint (exact while only the jaw moves)")
    return RigAnimation(
        base=base, targets=np.concatenate(targets, 0), target_names=names, weights=np.concatenate(weights, 1),
        mode=RIG_MODE, exact=exact, interpolation="LINEAR", joints=j0, jaw_rotation=axis_angle_to_quaternion(jaw),
        jaw_translation=world - j0[parent], skin_joints=sj_idx, skin_weights=sw, kept_expression=kept,
        shape_components=shape_kept, notes=notes)


def frames_animation(verts: np.ndarray) -> RigAnimation:
    """Vertices [T, V, 3] without parameters -> one morph target per frame (offset from frame 0), one-hot STEP
    weights. Exact (float32 rounding only), but the file grows with the clip (12 bytes per vertex per frame)."""
    v = np.asarray(verts, dtype=np.float64)
    n_t = v.shape[0]
    return RigAnimation(
        base=v[0], targets=v - v[0], target_names=[f"frame_{i:06d}" for i in range(n_t)], weights=np.eye(n_t),
        mode=FRAMES_MODE, exact=True, interpolation="STEP",
        notes=["vertex files carry no FLAME parameters, so every frame is its own morph target (one-hot weights)"])


# --------------------------------------------------------------------------------------------------------
# glTF writing (pygltflib builds the document and the GLB container)
# --------------------------------------------------------------------------------------------------------


class _Buffer:
    """Collects arrays into one binary buffer (4-byte aligned views) and makes pygltflib accessors for them."""

    def __init__(self, gltf):
        self.gltf = gltf
        self.parts: list[bytes] = []
        self.size = 0

    def accessor(self, arr: np.ndarray, type_: str, component: int, target: Optional[int] = None,
                 minmax: bool = False, name: Optional[str] = None) -> int:
        import pygltflib as g

        a = np.ascontiguousarray(arr, dtype=_NUMPY[component]).reshape(-1, _WIDTH[type_])  # [count, width]
        data = a.tobytes()
        self.gltf.bufferViews.append(g.BufferView(buffer=0, byteOffset=self.size, byteLength=len(data),
                                                  target=target))
        pad = (-len(data)) % 4
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        acc = g.Accessor(bufferView=len(self.gltf.bufferViews) - 1, byteOffset=0, componentType=component,
                         count=int(a.shape[0]), type=type_, name=name)
        if minmax:
            acc.min = [float(x) for x in a.min(0)]
            acc.max = [float(x) for x in a.max(0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def finish(self) -> None:
        import pygltflib as g

        self.gltf.buffers = [g.Buffer(byteLength=self.size)]
        self.gltf.set_binary_blob(b"".join(self.parts))


def _unit_normals(base: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from probtalk3d_cli.render import vertex_normals

    n = vertex_normals(base, faces).astype(np.float64)
    bad = np.linalg.norm(n, axis=1) < 0.5  # unreferenced or degenerate vertices: any unit vector will do
    n[bad] = (0.0, 0.0, 1.0)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def build_gltf(anim: RigAnimation, faces: np.ndarray, fps: float, extras: dict):
    """A pygltflib GLTF2 document (with its binary blob set) for `anim`.

    Layout: node 0 "face" (mesh 0, skin 0 for the rig); nodes 1..5 the FLAME joints root > neck > {jaw, eyes} with
    rest translations; one animation "speech" with a weights channel on node 0 and, for the rig, rotation and
    translation channels on the jaw node. Keyframe i is at i / fps (the last at (T - 1) / fps; the clip lasts T / fps).
    """
    import pygltflib as g

    gltf = g.GLTF2(asset=g.Asset(generator=f"probtalk3d {extras.get('probtalk3d_version', '')} (pygltflib)",
                                 extras=_json_safe(extras)))
    buf = _Buffer(gltf)
    faces = np.asarray(faces, dtype=np.int64)
    n_t, k = anim.weights.shape
    index_type = _USHORT if len(anim.base) < 65535 else _UINT
    attrs = g.Attributes(
        POSITION=buf.accessor(anim.base, "VEC3", _FLOAT, _ARRAY_BUFFER, minmax=True, name="neutral"),
        NORMAL=buf.accessor(_unit_normals(anim.base, faces), "VEC3", _FLOAT, _ARRAY_BUFFER, name="normals"))
    rig = anim.joints is not None
    if rig:
        attrs.JOINTS_0 = buf.accessor(anim.skin_joints, "VEC4", _UBYTE, _ARRAY_BUFFER, name="joints")
        attrs.WEIGHTS_0 = buf.accessor(anim.skin_weights, "VEC4", _FLOAT, _ARRAY_BUFFER, name="weights")
    targets = [{"POSITION": buf.accessor(anim.targets[i], "VEC3", _FLOAT, _ARRAY_BUFFER, minmax=True,
                                         name=anim.target_names[i])} for i in range(k)]
    indices = buf.accessor(faces.reshape(-1), "SCALAR", index_type, _ELEMENT_ARRAY_BUFFER, minmax=True,
                           name="triangles")
    gltf.materials = [g.Material(name="skin", doubleSided=True, pbrMetallicRoughness=g.PbrMetallicRoughness(
        baseColorFactor=[0.80, 0.66, 0.58, 1.0], metallicFactor=0.0, roughnessFactor=0.6))]
    gltf.meshes = [g.Mesh(name="face", primitives=[g.Primitive(attributes=attrs, indices=indices, material=0,
                                                               targets=targets, mode=4)],
                          weights=[0.0] * k, extras={"targetNames": list(anim.target_names)})]
    node_extras = {"mode": anim.mode, "kept_expression": anim.kept_expression,
                   "shape_components": anim.shape_components}
    gltf.nodes = [g.Node(name="face", mesh=0, extras=node_extras)]
    gltf.scenes = [g.Scene(name="probtalk3d", nodes=[0])]
    gltf.scene = 0

    times = np.arange(n_t, dtype=np.float64) / fps
    time_acc = buf.accessor(times, "SCALAR", _FLOAT, minmax=True, name="times")
    samplers = [g.AnimationSampler(input=time_acc, interpolation=anim.interpolation,
                                   output=buf.accessor(anim.weights, "SCALAR", _FLOAT, name="morph weights"))]
    channels = [g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0, path="weights"))]
    if rig:
        first = len(gltf.nodes)  # joint j is node first + j
        parents = [-1, 0, 1, 1, 1]
        for j, name in enumerate(JOINT_NAMES):
            local = anim.joints[j] - (anim.joints[parents[j]] if parents[j] >= 0 else 0.0)
            gltf.nodes.append(g.Node(name=name, translation=[float(x) for x in local]))
        for j in range(N_JOINTS):
            kids = [first + c for c in range(N_JOINTS) if parents[c] == j]
            if kids:
                gltf.nodes[first + j].children = kids
        gltf.scenes[0].nodes.append(first)
        ibm = np.tile(np.eye(4), (N_JOINTS, 1, 1))
        ibm[:, :3, 3] = -anim.joints  # inverse of the rest transform T(J_j)
        ibm_acc = buf.accessor(ibm.transpose(0, 2, 1).reshape(N_JOINTS, 16), "MAT4", _FLOAT,
                               name="inverse bind matrices")  # glTF matrices are column-major
        gltf.skins = [g.Skin(name="flame", joints=[first + j for j in range(N_JOINTS)], skeleton=first,
                             inverseBindMatrices=ibm_acc)]
        gltf.nodes[0].skin = 0
        jaw_node = first + JAW
        samplers.append(g.AnimationSampler(input=time_acc, interpolation="LINEAR", output=buf.accessor(
            anim.jaw_rotation, "VEC4", _FLOAT, name="jaw rotation")))
        samplers.append(g.AnimationSampler(input=time_acc, interpolation="LINEAR", output=buf.accessor(
            anim.jaw_translation, "VEC3", _FLOAT, name="jaw translation")))
        channels.append(g.AnimationChannel(sampler=1, target=g.AnimationChannelTarget(node=jaw_node, path="rotation")))
        channels.append(g.AnimationChannel(sampler=2, target=g.AnimationChannelTarget(node=jaw_node,
                                                                                      path="translation")))
    gltf.animations = [g.Animation(name="speech", samplers=samplers, channels=channels)]
    buf.finish()
    return gltf


def save_gltf(gltf, path: Path, binary: bool) -> None:
    """Write `gltf` to `path`: GLB (one binary container) or .gltf with the buffer embedded as a base64 data URI, so
    that either way one file is the whole artefact (no external .bin to keep next to it)."""
    import pygltflib as g

    if binary:
        ok = gltf.save_binary(str(path))
    else:
        gltf.convert_buffers(g.BufferFormat.DATAURI)
        ok = gltf.save_json(str(path))
    if ok is False or not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"pygltflib could not write {path}")


# --------------------------------------------------------------------------------------------------------
# CSV and OBJ sequences
# --------------------------------------------------------------------------------------------------------


def csv_text(exp: np.ndarray, jaw: np.ndarray, fps: float) -> str:
    """Per-frame coefficients: `frame,time,exp_0,...,exp_{E-1},jaw_x,jaw_y,jaw_z` (time = frame / fps seconds).

    Values are denormalised FLAME coefficients written with 9 significant digits (float32 values round-trip exactly).
    """
    exp = np.asarray(exp, dtype=np.float64)
    jaw = np.asarray(jaw, dtype=np.float64).reshape(-1, 3)
    n_t = exp.shape[0]
    header = ["frame", "time"] + [f"exp_{i}" for i in range(exp.shape[1])] + ["jaw_x", "jaw_y", "jaw_z"]
    lines = [",".join(header)]
    frame_col = np.arange(n_t)
    values = np.concatenate([(frame_col / fps)[:, None], exp, jaw], 1)
    for i in range(n_t):
        lines.append(f"{frame_col[i]}," + ",".join(CSV_FLOAT % x for x in values[i]))
    return "\n".join(lines) + "\n"


def _frame_name(i: int) -> str:
    return f"frame_{i:06d}.obj"


def _is_previous_obj_seq(folder: Path) -> bool:
    items = list(folder.iterdir())
    return all(q.is_file() and q.name.startswith("frame_") and q.suffix == ".obj" for q in items)


# --------------------------------------------------------------------------------------------------------
# export()
# --------------------------------------------------------------------------------------------------------


def sidecar_path(out: str | Path) -> Path:
    """`<out stem>.json` next to the output (for a folder: `<folder>.json` beside it)."""
    p = Path(out)
    return p.with_name(p.stem + ".json") if p.suffix.lower() in SUFFIX_FORMAT else p.with_name(p.name + ".json")


def _check_sidecar_free(sidecar: Path, input_path: Path, out: Path) -> None:
    """Refuse to overwrite a JSON that is not ours, or ours but describing another output that still exists."""
    if not sidecar.exists():
        return
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        meta = None
    if isinstance(meta, dict) and meta.get("kind") == "probtalk3d-export":
        other = meta.get("output")
        if other and other != out.name and (sidecar.parent / str(other)).exists():
            raise ValueError(f"{sidecar} already describes the export {other}; choose another --out name (e.g. "
                             f"{out.stem}_{out.suffix.lstrip('.') or 'frames'}{out.suffix}) so both keep their sidecar")
        return  # ours from an earlier export of the same output: replaced
    raise ValueError(f"{sidecar} already exists and is not an export sidecar (for example the sidecar of "
                     f"{input_path.name}); choose another --out name so it is not overwritten")


def _shape_label(spec: Optional[str], kind: str) -> str:
    if kind == "vertices":
        return "baked into the vertices"
    if spec is None:
        return "keep" if kind == "params" else "zero"
    return Path(spec).name if spec.lower().endswith(".npy") else spec


def _audio_entry(audio: Optional[Path], sidecar: Path) -> Optional[str]:
    if audio is None:
        return None
    a = Path(audio).resolve()
    try:
        return os.path.relpath(a, sidecar.parent.resolve())
    except ValueError:  # another drive on Windows
        return str(a)


def export(input_path: str | Path, out: str | Path, flame=None, *, fmt: Optional[str] = None,
           audio: Optional[str | Path] = None, shape: Optional[str] = None, fps: float = 25.0) -> ExportOutput:
    """`probtalk3d export`: one animation file -> glTF / GLB, CSV or an OBJ sequence, plus a JSON sidecar.

    glTF/GLB from params or motion is an exact FLAME rig (see `rig_animation`); from a vertex file it is per-frame
    vertex animation (`frames_animation`). CSV needs params or motion. Everything is validated before anything is
    written; the output and its sidecar `<out stem>.json` appear atomically (an OBJ sequence is built in a temporary
    folder and renamed). glTF has no audio: the audio to play alongside (from `audio`, else the input's own
    `<stem>.json` sidecar) is recorded in the sidecar and the glTF `asset.extras`; nothing is copied.

    Args:
        input_path: `[1, T, 403]` params, `[T, 53]` motion or `[T, V, 3]` vertices (.npy).
        out: output file (.glb, .gltf, .csv) or folder (obj-seq).
        flame: FlameModel (needed for gltf/glb/obj-seq; not for csv).
        fmt: gltf | glb | csv | obj-seq; None infers it from `out`.
        audio: audio file to pair with the animation. shape: keep | zero | FILE.npy (see `resolve_shape`).
        fps: frame rate of the input (25 for ProbTalk3D).

    Raises:
        ValueError / FileNotFoundError: one line naming the bad input and the fix; nothing is written.
    """
    import shutil
    import tempfile

    from probtalk3d_cli import __version__
    from probtalk3d_cli.flame import FlameConverter, split_motion, split_params
    from probtalk3d_cli.io import TMP_MARK, atomic_path, explain_os_error
    from probtalk3d_cli.render import find_sidecar_audio
    from probtalk3d_cli.vertices import load_animation, write_obj

    t0 = time.perf_counter()
    out = Path(out)
    fmt = infer_format(out, fmt)
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"--fps must be a positive number, got {fps}")
    anim_file = load_animation(input_path)
    kind = anim_file.kind
    if fmt == "csv" and kind == "vertices":
        raise ValueError(f"{anim_file.path} holds vertices {list(anim_file.data.shape)}; CSV needs params "
                         "([1, T, 403]) or motion ([T, 53]) coefficients — export vertices as glb, gltf or obj-seq")
    shape_v = resolve_shape(shape, kind)
    if fmt != "csv":
        if flame is None:
            raise ValueError(f"--format {fmt} needs a FLAME model for the mesh; pass --flame-model PATH or demo")
        if kind == "vertices" and anim_file.data.shape[1] != flame.num_vertices:
            raise ValueError(f"{anim_file.path} has {anim_file.data.shape[1]} vertices but the FLAME model "
                             f"({flame.source}) has {flame.num_vertices}; pass the matching --flame-model")
    if audio is not None:
        audio = Path(audio)
        if not audio.is_file():
            raise FileNotFoundError(f"audio file {audio} does not exist; pass an existing --audio file or omit it")
    else:
        audio = find_sidecar_audio(anim_file.path)
    side = sidecar_path(out)
    _check_sidecar_free(side, anim_file.path, out)
    if fmt == "obj-seq" and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; an OBJ sequence needs a folder name")
    if fmt == "obj-seq" and out.is_dir() and not _is_previous_obj_seq(out):
        raise ValueError(f"--out folder {out} already holds other files; choose a new or empty folder")
    if fmt != "obj-seq" and out.is_dir():
        raise ValueError(f"--out {out} is a folder; pass a file name ending in .{fmt}")

    # coefficients (params / motion)
    n_t = anim_file.frames
    exp = jaw = shape_arr = None
    if kind == "params":
        sh, exp, jaw = split_params(anim_file.data)
        shape_arr = sh if isinstance(shape_v, str) else shape_v
    elif kind == "motion":
        exp, jaw = split_motion(anim_file.data)
        shape_arr = shape_v
    if exp is not None and kind == "params" and not np.any(exp[:, N_EXP_USED:] != 0):
        exp = exp[:, :N_EXP_USED]  # the usual case (generated files): components 50..99 are zero

    meta = {
        "kind": "probtalk3d-export", "probtalk3d_version": __version__, "format": fmt, "output": out.name,
        "source": anim_file.path.name,
        "input_kind": kind, "frames": n_t, "fps": float(fps), "duration_s": n_t / fps,
        "keyframes": "frame i at i / fps seconds; the last keyframe at (frames - 1) / fps, the clip lasts frames / fps",
        "audio": _audio_entry(audio, side), "audio_name": audio.name if audio is not None else None,
        "audio_note": "glTF/CSV/OBJ carry no sound: play this file alongside, starting at time 0",
        "shape": _shape_label(shape, kind),
        "flame_model": None if flame is None else Path(str(flame.source)).name,
    }
    result = ExportOutput(path=out, sidecar=side, format=fmt, kind=kind, mode=fmt, exact=True, frames=n_t,
                          fps=float(fps), audio=audio)

    if fmt in ("gltf", "glb"):
        if kind == "vertices":
            rig = frames_animation(anim_file.data)
        else:
            rig = rig_animation(flame, exp, jaw, None if shape_arr is None else shape_arr)
        meta.update(mode=rig.mode, exact=rig.exact, morph_targets=len(rig.target_names),
                    kept_expression=rig.kept_expression, shape_components=rig.shape_components,
                    notes=rig.notes)
        gltf = build_gltf(rig, flame.faces, fps, meta)
        with atomic_path(out) as tmp, atomic_path(side) as tmp_side:
            save_gltf(gltf, tmp, binary=(fmt == "glb"))
            tmp_side.write_text(json.dumps(_json_safe(meta), indent=2) + "\n", encoding="utf-8")
        result.mode, result.exact, result.notes = rig.mode, rig.exact, rig.notes
        result.morph_targets, result.kept_expression = len(rig.target_names), rig.kept_expression
        result.bytes = out.stat().st_size
    elif fmt == "csv":
        meta.update(mode="csv", exact=True, kept_expression=list(range(exp.shape[1])),
                    columns=f"frame, time, exp_0..exp_{exp.shape[1] - 1}, jaw_x, jaw_y, jaw_z")
        with atomic_path(out) as tmp, atomic_path(side) as tmp_side:
            tmp.write_text(csv_text(exp, jaw, fps), encoding="utf-8")
            tmp_side.write_text(json.dumps(_json_safe(meta), indent=2) + "\n", encoding="utf-8")
        result.mode, result.kept_expression = "csv", list(range(exp.shape[1]))
        result.bytes = out.stat().st_size
    else:  # obj-seq
        conv = FlameConverter(flame)
        faces_text = "".join(f"f {i + 1} {j + 1} {k + 1}\n" for i, j, k in conv.faces)
        meta.update(mode="obj-seq", exact=True, files="frame_000000.obj ... (one mesh per frame, metres)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARK}", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_dir, 0o777 & ~umask)  # mkdtemp creates 0700; the folder gets the usual permissions
        old = None
        try:
            if kind == "vertices":
                chunks = [anim_file.data]
            else:
                chunks = (c.cpu().numpy() for c in conv.iter_vertices(exp, jaw, shape_arr))
            i = 0
            for chunk in chunks:
                for v in chunk:
                    write_obj(tmp_dir / _frame_name(i), v, faces_text)
                    i += 1
            with atomic_path(side) as tmp_side:
                tmp_side.write_text(json.dumps(_json_safe(meta), indent=2) + "\n", encoding="utf-8")
                if out.is_dir():  # an earlier export: moved aside, replaced, then deleted
                    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARK}old-", dir=out.parent))
                    os.replace(out, old / "seq")
                os.replace(tmp_dir, out)
        except BaseException as exc:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            if old is not None and (old / "seq").is_dir() and not out.exists():
                os.replace(old / "seq", out)
            if isinstance(exc, OSError):
                raise explain_os_error(exc, out) from exc
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        result.mode = "obj-seq"
        result.bytes = sum(q.stat().st_size for q in out.iterdir())
    result.seconds = time.perf_counter() - t0
    return result
