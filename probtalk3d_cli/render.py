"""Offscreen rendering of FLAME meshes to H.264 mp4 with AAC audio: pyrender on EGL or OSMesa, no window.

Reference §8.2 describes the official pyrender script; this one keeps one scene and one renderer, updates the vertex
buffer in place each frame, streams RGB frames straight into ffmpeg (imageio-ffmpeg) and reconciles audio length.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import glob
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

GL_BACKENDS = ("egl", "osmesa")
SHADER_DIR = Path(__file__).resolve().parent / "assets" / "shaders"
X264_PRESET = "medium"  # x264's default; measured on 2 cores: as fast as veryfast here (rendering is the bottleneck)
DEFAULT_COLOR = (0.72, 0.72, 0.78)
YFOV = math.pi / 8  # 22.5 degrees


# --------------------------------------------------------------------------------------------------------
# OpenGL platform (must be fixed before pyrender / PyOpenGL are imported)
# --------------------------------------------------------------------------------------------------------


def _has_library(name: str) -> bool:
    return ctypes.util.find_library(name) is not None


def _gpu_egl_available() -> bool:
    """A GPU that EGL can drive: an NVIDIA device with its EGL vendor library, or a DRM render node (Mesa)."""
    if not _has_library("EGL"):
        return False
    nvidia = os.path.exists("/dev/nvidiactl") or bool(glob.glob("/dev/nvidia[0-9]*"))
    if nvidia and (_has_library("EGL_nvidia") or glob.glob("/usr/share/glvnd/egl_vendor.d/*nvidia*")):
        return True
    return bool(glob.glob("/dev/dri/renderD*"))


def choose_gl_backend(requested: str = "auto") -> str:
    """The offscreen GL platform: `requested` when not "auto", else env PYOPENGL_PLATFORM, else EGL on a GPU, else
    OSMesa (faster than EGL's software path on CPU-only machines), else EGL.

    Raises:
        ValueError: unknown name. RuntimeError: neither libOSMesa nor libEGL is installed.
    """
    req = (requested or "auto").strip().lower()
    if req not in ("auto",) + GL_BACKENDS:
        raise ValueError(f"unknown GL backend {requested!r}; use auto, egl or osmesa (--backend / render.backend)")
    if req != "auto":
        return req
    env = os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    if env in GL_BACKENDS:
        return env
    if _gpu_egl_available():
        return "egl"
    if _has_library("OSMesa"):
        return "osmesa"
    if _has_library("EGL"):
        return "egl"
    raise RuntimeError("no offscreen OpenGL found: install OSMesa (apt-get install libosmesa6, or `make gl`) or a GPU "
                       "driver with EGL, then rerun")


def activate_gl_backend(requested: str = "auto") -> str:
    """Choose the backend and set PYOPENGL_PLATFORM for this process (before pyrender/OpenGL are imported).

    Raises:
        RuntimeError: OpenGL was already initialised in this process with a different platform.
    """
    if "OpenGL.platform" in sys.modules:  # PyOpenGL picked its platform at import; it cannot change any more
        name = type(getattr(sys.modules["OpenGL.platform"], "PLATFORM", None)).__name__.lower()
        current = "egl" if "egl" in name else "osmesa" if "osmesa" in name else name or "unknown"
        wanted = current if (requested or "auto").strip().lower() == "auto" and current in GL_BACKENDS \
            else choose_gl_backend(requested)
        if wanted != current:
            raise RuntimeError(f"OpenGL is already initialised with platform {current!r} in this process; cannot "
                               f"switch to {wanted!r} (run a new process, or pass --backend {current})")
        os.environ["PYOPENGL_PLATFORM"] = current
        return current
    backend = choose_gl_backend(requested)
    os.environ["PYOPENGL_PLATFORM"] = backend
    return backend


_PROBE = r"""
import json, sys, time
t = time.perf_counter()
import numpy as np, pyrender
r = pyrender.OffscreenRenderer(16, 16)
s = pyrender.Scene(bg_color=[0.5, 0.5, 0.5, 1.0])
s.add(pyrender.PerspectiveCamera(yfov=0.5))
c, _ = r.render(s)
from OpenGL import GL
info = {"renderer": GL.glGetString(GL.GL_RENDERER).decode(), "version": GL.glGetString(GL.GL_VERSION).decode()}
r.delete()
info["ok"] = bool(c.shape == (16, 16, 3) and abs(int(c[0, 0, 0]) - 127) <= 2)
info["seconds"] = round(time.perf_counter() - t, 3)
print(json.dumps(info))
"""


def probe_gl_backends(timeout: float = 60.0) -> dict:
    """Try each offscreen backend in a fresh process (the platform is fixed per process) and report what works.

    Returns:
        {"egl": {"ok", "renderer", "version", "seconds" | "error"}, "osmesa": {...}, "auto": chosen name or None,
         "env": PYOPENGL_PLATFORM or None}
    """
    report: dict = {}
    for backend in GL_BACKENDS:
        env = dict(os.environ, PYOPENGL_PLATFORM=backend)
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            report[backend] = {"ok": False, "error": f"timed out after {timeout:.0f} s"}
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            report[backend] = json.loads(lines[-1])
        else:
            err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            report[backend] = {"ok": False, "error": err[-1] if err else f"exit code {proc.returncode}"}
    try:
        report["auto"] = choose_gl_backend("auto")
    except RuntimeError as exc:
        report["auto"] = None
        report["auto_error"] = str(exc)
    report["env"] = os.environ.get("PYOPENGL_PLATFORM")
    return report


# --------------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------------


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] float32 for triangles `faces` [F, 3] (smooth shading)."""
    v = np.asarray(verts, dtype=np.float32)
    f = faces
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # [F, 3], length = 2 * area
    n = len(v)
    vn = np.stack([np.bincount(f[:, 0], fn[:, c], n) + np.bincount(f[:, 1], fn[:, c], n)
                   + np.bincount(f[:, 2], fn[:, c], n) for c in range(3)], axis=1)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return (vn / np.maximum(norm, 1e-12)).astype(np.float32)


class _NormalSolver:
    """Vertex normals for a fixed topology, fast: one sparse vertex-face incidence product per frame."""

    def __init__(self, faces: np.ndarray, num_vertices: int):
        from scipy.sparse import csr_matrix

        f = np.asarray(faces, dtype=np.int64)
        rows = f.T.reshape(-1)
        cols = np.tile(np.arange(len(f)), 3)
        self.faces = f
        self.incidence = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(num_vertices, len(f)))

    def __call__(self, v: np.ndarray) -> np.ndarray:
        f = self.faces
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        vn = self.incidence @ fn
        norm = np.sqrt(np.einsum("ij,ij->i", vn, vn))[:, None]
        vn /= np.maximum(norm, 1e-12)
        return vn.astype(np.float32, copy=False)


def frame_camera(verts: np.ndarray, yfov: float = YFOV, distance: float = 0.0, aspect: float = 1.0,
                 margin: float = 1.1, drop_bottom: float = 0.2, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """Camera pose (4x4, looking down -z, y up) that frames the mesh bounds of `verts` [..., V, 3].

    The lowest `drop_bottom` of the height (the neck of a FLAME head) is left out of the framing, so the face fills
    the picture.

    Args:
        distance: camera distance from the centre of the bounds in metres; 0 = fit the bounds automatically.
        yaw, pitch: degrees; the camera orbits the centre at that distance, always looking at it: yaw about the
            vertical axis (+ = toward +x, the head's left side, seen from the viewer's right), pitch up (+ = from
            above). (0, 0) = straight from the front.
    """
    pts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    lo, hi = pts.min(0), pts.max(0)
    lo[1] += drop_bottom * (hi[1] - lo[1])
    centre = 0.5 * (lo + hi)
    a, b = math.radians(yaw), math.radians(-pitch)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rot = ry @ rx  # camera axes in world coordinates; it looks along its -z, at the centre
    if distance and distance > 0:
        dist = float(distance)
    else:  # fit the kept part (above the dropped bottom), measured along the camera's own axes
        rel = (pts[pts[:, 1] >= lo[1]] - centre) @ rot
        half_h = np.abs(rel[:, 1]).max()
        half_w = np.abs(rel[:, 0]).max() / max(aspect, 1e-6)
        dist = rel[:, 2].max() + margin * max(half_h, half_w, 1e-6) / math.tan(yfov / 2)
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = centre + rot @ np.array([0.0, 0.0, dist])
    return pose


def _light_pose(cam_pose: np.ndarray, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """A directional light pose tilted from the camera direction (the light shines along its -z)."""
    a, b = math.radians(pitch_deg), math.radians(yaw_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    pose = cam_pose.copy()
    pose[:3, :3] = cam_pose[:3, :3] @ ry @ rx  # the lights turn with the camera
    return pose


# --------------------------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------------------------


class MeshRenderer:
    """One offscreen pyrender scene and renderer for a mesh sequence with fixed topology.

    Each `render(verts)` updates the vertex buffer in place (positions + smooth normals) instead of rebuilding the
    pyrender mesh, and returns an RGB image [H, W, 3] uint8.

    Args:
        faces: [F, 3] triangles. num_vertices: V.
        camera_pose: 4x4 (see `frame_camera`). size: (width, height) in pixels.
        color: RGB in [0, 1]. backend: auto | egl | osmesa.
        vertex_colors: optional per-vertex RGB(A) in [0, 1], [V, 3|4] (e.g. a heat map); multiplied by `color`, so
            pass color=(1, 1, 1) to show them unchanged.
    """

    def __init__(self, faces: np.ndarray, num_vertices: int, camera_pose: np.ndarray, size=(512, 512),
                 color: Sequence[float] = DEFAULT_COLOR, backend: str = "auto", background=(1.0, 1.0, 1.0),
                 vertex_colors: Optional[np.ndarray] = None):
        self.backend = activate_gl_backend(backend)
        import pyrender

        self._pyrender = pyrender
        self.width, self.height = int(size[0]), int(size[1])
        self.num_vertices = int(num_vertices)
        self.faces = np.ascontiguousarray(faces, dtype=np.uint32)
        self._normals = _NormalSolver(self.faces, self.num_vertices)
        self._flip_checked = False
        self._colors = None
        if vertex_colors is not None:
            vc = np.asarray(vertex_colors, dtype=np.float32)
            if vc.ndim != 2 or vc.shape[0] != self.num_vertices or vc.shape[1] not in (3, 4):
                raise ValueError(f"vertex_colors has shape {list(vc.shape)}; expected [{self.num_vertices}, 3 or 4]")
            alpha = np.ones((vc.shape[0], 1), np.float32)
            self._colors = np.ascontiguousarray(np.concatenate([vc[:, :3], alpha], axis=1).clip(0.0, 1.0))
        rgb = [float(c) for c in color][:3]
        self.material = pyrender.MetallicRoughnessMaterial(baseColorFactor=rgb + [1.0], metallicFactor=0.0,
                                                           roughnessFactor=0.55, doubleSided=True)
        self.scene = pyrender.Scene(ambient_light=np.array([0.28, 0.28, 0.28]),
                                    bg_color=np.array([float(c) for c in background] + [1.0]))
        cam = pyrender.PerspectiveCamera(yfov=YFOV, aspectRatio=self.width / self.height, znear=0.01, zfar=20.0)
        self.scene.add(cam, pose=camera_pose)
        self.scene.add(pyrender.DirectionalLight(intensity=0.85), pose=_light_pose(camera_pose, 18.0, -22.0))
        self.scene.add(pyrender.DirectionalLight(intensity=0.30), pose=_light_pose(camera_pose, -10.0, 35.0))
        self._mesh_node = None
        self._primitive = None
        self._in_place = True
        try:
            self.renderer = pyrender.OffscreenRenderer(self.width, self.height)
        except Exception as exc:  # noqa: BLE001 - platform errors come in many types; report one line
            other = "osmesa" if self.backend == "egl" else "egl"
            raise RuntimeError(f"could not create an offscreen OpenGL context with {self.backend} ({exc}); try "
                               f"--backend {other}, or install libosmesa6 (make gl)") from None
        renderer = getattr(self.renderer, "_renderer", None)
        if renderer is not None and hasattr(renderer, "_program_cache") and SHADER_DIR.is_dir():
            from pyrender.shader_program import ShaderProgramCache

            renderer._program_cache = ShaderProgramCache(shader_dir=str(SHADER_DIR))  # fast Lambert/Phong shading

    def _interleaved(self, verts: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(verts, dtype=np.float32)
        n = self._normals(v)
        parts = [v, n] if self._colors is None else [v, n, self._colors]  # pyrender's interleaved buffer layout
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _orient(self, verts: np.ndarray) -> None:
        """Flip the triangle winding once if the mesh's normals point inward (so front faces face the camera)."""
        v = np.asarray(verts, dtype=np.float64)
        f = self.faces.astype(np.int64)
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        outward = np.einsum("ij,ij->i", fn, v[f].mean(1) - v.mean(0)).sum()
        if outward < 0:
            self.faces = np.ascontiguousarray(self.faces[:, ::-1])
            self._normals = _NormalSolver(self.faces, self.num_vertices)
        self._flip_checked = True

    def render(self, verts: np.ndarray) -> np.ndarray:
        """Render one frame of vertices [V, 3] (metres) to RGB uint8 [H, W, 3]."""
        pyrender = self._pyrender
        if verts.shape != (self.num_vertices, 3):
            raise ValueError(f"frame has shape {list(verts.shape)}, expected [{self.num_vertices}, 3]")
        if not self._flip_checked:
            self._orient(verts)
        data = self._interleaved(verts)
        if self._primitive is None or not self._in_place:
            if self._mesh_node is not None:
                self.scene.remove_node(self._mesh_node)
            self._primitive = pyrender.Primitive(positions=data[:, :3], normals=data[:, 3:6], indices=self.faces,
                                                 material=self.material, color_0=self._colors)
            self._mesh_node = self.scene.add(pyrender.Mesh([self._primitive]))
        else:
            self._upload(data)
        color, _ = self.renderer.render(self.scene)
        return color

    def _upload(self, data: np.ndarray) -> None:
        buffers = getattr(self._primitive, "_buffers", None)
        if not buffers:  # pyrender internals changed: rebuild the mesh each frame instead (slower, same image)
            log.debug("pyrender primitive has no vertex buffer handle; rebuilding the mesh per frame")
            self._in_place = False
            self.scene.remove_node(self._mesh_node)
            self._primitive = self._pyrender.Primitive(positions=data[:, :3], normals=data[:, 3:6],
                                                       indices=self.faces, material=self.material,
                                                       color_0=self._colors)
            self._mesh_node = self.scene.add(self._pyrender.Mesh([self._primitive]))
            return
        from OpenGL import GL

        self.renderer._platform.make_current()
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

    def close(self) -> None:
        r = getattr(self, "renderer", None)
        if r is not None:
            with contextlib.suppress(Exception):
                r.delete()
            self.renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------


def label_overlay(text: str, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A small text label as (alpha [h, w] float32, (y0, x0)) for the top-left of a panel (PIL bitmap font)."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(10, int(round(height / 24)))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    box = probe.textbbox((0, 0), text, font=font)
    w = min(width, box[2] - box[0] + 2 * (size // 3) + 2)
    h = min(height, box[3] - box[1] + 2 * (size // 3) + 2)
    img = Image.new("L", (max(w, 1), max(h, 1)), 0)
    ImageDraw.Draw(img).text((size // 3 + 1 - box[0], size // 3 + 1 - box[1]), text, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0, (max(2, size // 3), max(2, size // 3))


def _apply_label(frame: np.ndarray, alpha: np.ndarray, at: tuple[int, int], x_offset: int) -> None:
    y0, x0 = at
    h, w = alpha.shape
    region = frame[y0:y0 + h, x_offset + x0:x_offset + x0 + w]
    a = alpha[:region.shape[0], :region.shape[1], None]
    region[...] = (region * (1.0 - a) + 20.0 * a).astype(np.uint8)  # dark text


# --------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------


def find_sidecar_audio(path: str | Path) -> Optional[Path]:
    """The audio named by `<stem>.json` next to an animation file (field "audio").

    A relative path is looked up next to the JSON file first, then in the current folder; None when absent.
    """
    p = Path(path)
    sidecar = p.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable sidecar %s (%s)", sidecar, exc)
        return None
    audio = meta.get("audio") if isinstance(meta, dict) else None
    if not audio:
        return None
    a = Path(str(audio)).expanduser()
    candidates = [a] if a.is_absolute() else [sidecar.parent / a, Path.cwd() / a]
    for c in candidates:
        if c.is_file():
            return c
    log.warning("audio %s named in %s does not exist; rendering without audio", audio, sidecar)
    return None


def fit_audio(audio: np.ndarray, sample_rate: int, frames: int, fps: float) -> tuple[np.ndarray, str]:
    """Trim or pad (silence) `audio` to exactly the video duration `frames / fps`; returns (audio, note)."""
    target = int(round(frames / fps * sample_rate))
    diff = len(audio) - target
    if diff > 0:
        return audio[:target], f"audio trimmed by {diff / sample_rate:.3f} s to the video length"
    if diff < 0:
        return np.concatenate([audio, np.zeros(-diff, dtype=audio.dtype)]), \
            f"audio padded with {-diff / sample_rate:.3f} s of silence to the video length"
    return audio, "audio length matches the video"


def _audio_rate(path: Path) -> int:
    try:
        import soundfile as sf

        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - formats soundfile cannot read are decoded by ffmpeg at 48 kHz
        return 48000


# --------------------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------------------


@dataclass
class RenderOutput:
    """What `render_video` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    audio: Optional[Path]
    audio_note: Optional[str]
    backend: str
    seconds: float
    panels: int = 1
    notes: list = field(default_factory=list)

    @property
    def render_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def render_video(sequences: Sequence[np.ndarray], faces: np.ndarray, out: str | Path, *, fps: float = 25.0,
                 size: int = 512, audio: Optional[str | Path] = None, labels: Optional[Sequence[str]] = None,
                 color: Sequence[float] = DEFAULT_COLOR, camera_distance: float = 0.0, backend: str = "auto",
                 crf: int = 20, camera: Sequence[float] = (0.0, 0.0)) -> RenderOutput:
    """Render one or more vertex sequences side by side into an H.264/AAC mp4 (yuv420p), written atomically.

    Args:
        sequences: K arrays [T_k, V, 3] (metres, same topology); the video has max(T_k) frames, shorter sequences
            hold their last frame.
        faces: [F, 3] triangles.
        out: the .mp4 path. size: panel height and width in pixels (even). fps: frames per second.
        audio: any audio file (wav/flac/mp3/m4a...); trimmed or padded with silence to the video length.
        labels: one text per panel (drawn top left), or None.
        color: mesh RGB in [0, 1]. camera_distance: metres from the mesh centre, 0 = frame automatically.
        backend: auto | egl | osmesa. crf: H.264 quality (lower = better, 18-23 typical).
        camera: (yaw, pitch) in degrees around the head (see `frame_camera`); (0, 0) = from the front.

    Returns:
        RenderOutput with frame count, size, audio handling and timing.
    """
    import imageio_ffmpeg

    from probtalk3d_cli.io import TMP_MARK, atomic_path, load_audio, save_wav
    from probtalk3d_cli.ui import progress

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output {out} must end in .mp4")
    if not sequences:
        raise ValueError("nothing to render: pass at least one animation")
    size = int(size)
    if size < 16 or size % 2:
        raise ValueError(f"--size must be an even number of pixels >= 16, got {size}")
    if not fps > 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    if len(color) != 3 or not all(0.0 <= float(c) <= 1.0 for c in color):
        raise ValueError(f"--color must be three numbers in [0, 1] (R,G,B), got {list(color)}")
    num_v = sequences[0].shape[1]
    for k, s in enumerate(sequences):
        if s.ndim != 3 or s.shape[1:] != (num_v, 3) or s.shape[0] == 0:
            raise ValueError(f"sequence {k + 1} has shape {list(s.shape)}; all must be [T, {num_v}, 3] with T >= 1")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"sequence {k + 1} contains NaN or infinite vertices")
    if labels is not None and len(labels) != len(sequences):
        raise ValueError(f"--labels has {len(labels)} entries for {len(sequences)} videos panels; give one per panel")
    n_frames = max(s.shape[0] for s in sequences)
    notes = [f"panel {k + 1} has {s.shape[0]} frames; its last frame is held to {n_frames}"
             for k, s in enumerate(sequences) if s.shape[0] < n_frames]
    for n in notes:
        log.info(n)
    k_panels = len(sequences)
    width, height = size * k_panels, size

    # One camera for all panels, framing the first frames of every sequence together.
    try:
        yaw, pitch = (float(a) for a in camera)
    except (TypeError, ValueError):
        yaw = pitch = float("nan")
    if not (np.isfinite(yaw) and np.isfinite(pitch) and abs(pitch) < 90):
        raise ValueError(f"render.camera must be [yaw, pitch] in degrees with |pitch| < 90, got {camera!r}; "
                         "e.g. --camera 30,10")
    cam_pose = frame_camera(np.concatenate([s[:1] for s in sequences], 0), distance=camera_distance, yaw=yaw,
                            pitch=pitch)
    overlays = [label_overlay(str(t), size, size) if str(t) else None for t in labels] if labels else []

    audio_path = Path(audio) if audio is not None else None
    audio_note = None
    t0 = time.perf_counter()
    renderer = MeshRenderer(faces, num_v, cam_pose, size=(size, size), color=color, backend=backend)
    tmp_wav = None
    try:
        if audio_path is not None:
            rate = _audio_rate(audio_path)
            samples = load_audio(audio_path, sample_rate=rate)
            samples, audio_note = fit_audio(samples, rate, n_frames, fps)
            log.info("%s (%s)", audio_note, audio_path)
            tmp_wav = out.parent / f".{out.stem}{TMP_MARK}audio.wav"
            save_wav(tmp_wav, samples, sample_rate=rate)
        with atomic_path(out) as tmp:
            writer = imageio_ffmpeg.write_frames(
                str(tmp), (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                quality=None, macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-crf", str(int(crf)), "-preset", X264_PRESET, "-movflags", "+faststart"]
                + (["-shortest"] if tmp_wav else []),
                audio_path=str(tmp_wav) if tmp_wav else None, audio_codec="aac" if tmp_wav else None,
            )
            writer.send(None)
            frame = np.empty((height, width, 3), dtype=np.uint8)
            try:
                for t in progress(range(n_frames), total=n_frames, desc=f"render {out.name}", unit="frame"):
                    for k, seq in enumerate(sequences):
                        frame[:, k * size:(k + 1) * size] = renderer.render(seq[min(t, seq.shape[0] - 1)])
                        if overlays and overlays[k] is not None:
                            _apply_label(frame, overlays[k][0], overlays[k][1], k * size)
                    writer.send(frame)
            finally:
                writer.close()
    finally:
        renderer.close()
        if tmp_wav is not None:
            with contextlib.suppress(OSError):
                tmp_wav.unlink()
    seconds = time.perf_counter() - t0
    return RenderOutput(path=out, frames=n_frames, width=width, height=height, fps=fps, audio=audio_path,
                        audio_note=audio_note, backend=renderer.backend, seconds=seconds, panels=k_panels,
                        notes=notes)


def render(inputs: Sequence[str | Path], out: str | Path, flame=None, *, audio: Optional[str | Path] = None,
           labels: Optional[Sequence[str]] = None, fps: float = 25.0, size: int = 512,
           color: Sequence[float] = DEFAULT_COLOR, camera_distance: float = 0.0, backend: str = "auto", crf: int = 20,
           device=None, camera: Sequence[float] = (0.0, 0.0)) -> RenderOutput:
    """`probtalk3d render`: params, motion or vertex `.npy` files -> one mp4 (several inputs = side by side).

    Args:
        inputs: the main animation first, then the side-by-side ones.
        flame: FlameModel (needed for params/motion and for the triangles of vertex files).
        audio: audio file; when None, the first input's `<stem>.json` sidecar "audio" field is used if present.
        labels: panel labels; default: the file stems when there are several panels, none for one.
        device: torch device for the FLAME conversion.
    """
    from probtalk3d_cli.flame import FlameConverter
    from probtalk3d_cli.vertices import animation_vertices, load_animation

    if flame is None:
        raise ValueError("render needs a FLAME model for the mesh triangles; pass --flame-model PATH or demo")
    paths = [Path(p) for p in inputs]
    anims = [load_animation(p) for p in paths]  # validate everything before any work
    conv = FlameConverter(flame, device=device)
    seqs = [animation_vertices(a, conv, shape="keep") for a in anims]
    if audio is None:
        audio = find_sidecar_audio(paths[0])
        if audio is not None:
            log.info("audio from sidecar %s: %s", paths[0].with_suffix(".json"), audio)
    elif not Path(audio).is_file():
        raise FileNotFoundError(f"audio file {audio} does not exist; check --audio")
    if labels is None and len(paths) > 1:
        labels = [p.stem for p in paths]
    return render_video(seqs, flame.faces, out, fps=fps, size=size, audio=audio, labels=labels, color=color,
                        camera_distance=camera_distance, backend=backend, crf=crf, camera=camera)
