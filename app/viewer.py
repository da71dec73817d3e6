"""The live viewer: point cloud, skeleton, skinned mesh, depth panel and a heads-up line.

Camera frame: x right, y down, z forward; millimetres (``calib``). The 3D view starts at the
sensor's viewpoint (the view camera at the origin looking along +z, y down, with the
sensor's field of view fitted into the window) and the mouse moves it; ``v`` puts it back.
Images are (H, W, 3) uint8 RGB.

What the app uses:
- :class:`ViewState`, one per processed frame, checked once when it is built;
- :class:`Viewer`, an Open3D window (legacy ``VisualizerWithKeyCallback``, OpenGL; needs a
  display, Xvfb works). Thread: the main thread (GLFW), the only thread that touches it.
- :class:`SoftwareViewer`, the same interface with no display and no OpenGL: it draws the
  same content with cv2 into an image (``--video`` on a server); ``open_viewer`` picks.
- key events as flags the app polls: ``paused``, ``step_requested()``,
  ``recording_toggled()``; ``poll()`` is False once the window is closed.

Stages, pure functions of a ViewState: :func:`scene_points` (decimated, range-limited
back-projection), :func:`depth_panel` (colourised depth with the joints), :func:`hud_image`,
:func:`sensor_view` (the view camera) and :func:`render_software` (the cv2 drawing).

``python -m app.viewer`` animates the hand model through the viewer (``--bench`` times it,
``--video OUT.mp4`` writes the frames headless, ``--screenshot PATH`` saves the last one).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from calib import Intrinsics, backproject, check_depth_mm, field_of_view_deg, project
from models.joints import CONNECTIONS, FINGER_JOINTS, NUM_JOINTS, palm_centre

# ------------------------------------------------------------------------------ look

BACKGROUND = (0.08, 0.09, 0.11)              # RGB 0-1
SKIN = (0.87, 0.70, 0.59)                    # mesh colour, RGB 0-1
#: One colour per finger (thumb, index, middle, ring, little), RGB 0-1.
FINGER_COLORS = np.array([
    (0.95, 0.25, 0.25),
    (1.00, 0.80, 0.10),
    (0.25, 0.85, 0.30),
    (0.15, 0.60, 1.00),
    (0.80, 0.35, 1.00),
])
WRIST_COLOR = (1.0, 1.0, 1.0)
POINT_TINT = np.array([0.62, 0.70, 0.82])    # point cloud: blue-grey, brighter when nearer


def _joint_colors() -> np.ndarray:
    colors = np.tile(np.asarray(WRIST_COLOR, float), (NUM_JOINTS, 1))
    for finger, joints in enumerate(FINGER_JOINTS):
        colors[list(joints)] = FINGER_COLORS[finger]
    return colors


#: (21, 3) RGB 0-1 per joint and (20, 3) per bone (the colour of the bone's child joint).
JOINT_COLORS = _joint_colors()
BONE_COLORS = JOINT_COLORS[[child for _, child in CONNECTIONS]]

JOINT_RADIUS_MM = 4.5
BONE_RADIUS_MM = 2.0
POINT_SIZE_PX = 2.0
#: Point cloud budget: every 4th pixel of a 640x480 frame in both directions; 40k (every 3rd)
#: cost about 9 ms more per frame in Mesa's software OpenGL (measured, app/README_VIEWER.md).
MAX_POINTS = 20_000
NO_HAND_RANGE_MM = 1200.0      # without a hand: the scene within this depth
CONTEXT_CUBES = 1.5            # with a hand: the scene within this many crop cubes of its centre
PANEL_FRACTION = 0.3           # depth panel width / window width
MARGIN_PX = 12
OVERLAY_DEPTH_MM = 25.0        # the 2D overlays lie this far in front of the view camera
Z_NEAR_MM, Z_FAR_MM = 20.0, 20000.0

KEY_HELP = "space pause  n step  p points  s skeleton  m mesh  d depth  r record  v view  q quit"
LAYERS = ("points", "skeleton", "mesh", "depth")


# ------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class ViewState:
    """What the viewer draws for one processed frame (checked on construction).

    depth_mm: (H, W) float32 mm, 0 = no depth, the full camera frame.
    intrinsics: of depth_mm.
    joints_mm: (21, 3) mm camera frame, canonical order (models/joints.py), None = no hand.
    vertices_mm: (V, 3) mm camera frame, the skinned mesh, or None.
    faces: (F, 3) int triangle indices into vertices_mm (constant for a run), or None.
    com_mm: (3,) mm camera frame, the crop centre, or None.
    cube_mm: crop cube edge, mm (> 0): the point cloud shown is the scene within
        ``CONTEXT_CUBES`` cubes of com_mm (of the palm centre without com_mm), or within
        ``NO_HAND_RANGE_MM`` of the sensor without a hand.
    hud: one heads-up line.
    """

    depth_mm: np.ndarray
    intrinsics: Intrinsics
    joints_mm: np.ndarray | None = None
    vertices_mm: np.ndarray | None = None
    faces: np.ndarray | None = None
    com_mm: np.ndarray | None = None
    cube_mm: float = 250.0
    hud: str = ""

    def __post_init__(self) -> None:
        check_depth_mm(self.depth_mm, self.intrinsics)
        _check_points("joints_mm", self.joints_mm, NUM_JOINTS)
        _check_points("vertices_mm", self.vertices_mm, None)
        if self.com_mm is not None:
            c = self.com_mm
            if not isinstance(c, np.ndarray) or c.shape != (3,) or c.dtype.kind != "f" or not np.isfinite(c).all():
                got = (c.shape, c.dtype) if isinstance(c, np.ndarray) else type(c).__name__
                raise ValueError(f"ViewState.com_mm: expected a finite (3,) float array of mm or None, got {got}")
        if self.faces is not None:
            f = self.faces
            if not isinstance(f, np.ndarray) or f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
                got = (f.shape, f.dtype) if isinstance(f, np.ndarray) else type(f).__name__
                raise ValueError(f"ViewState.faces: expected an (F, 3) integer array, got {got}")
            if self.vertices_mm is not None and f.size and (f.min() < 0 or f.max() >= len(self.vertices_mm)):
                raise ValueError(f"ViewState.faces: indices must lie in [0, {len(self.vertices_mm)}), "
                                 f"got [{f.min()}, {f.max()}]")
        if not isinstance(self.cube_mm, (int, float, np.floating)) or not math.isfinite(self.cube_mm) \
                or self.cube_mm <= 0:
            raise ValueError(f"ViewState.cube_mm: expected a positive number of mm, got {self.cube_mm!r}")
        if not isinstance(self.hud, str):
            raise TypeError(f"ViewState.hud: expected a str, got {type(self.hud).__name__}")

    @property
    def hand_centre_mm(self) -> np.ndarray | None:
        """(3,) the centre of the context region: com_mm, else the palm centre, else None."""
        if self.com_mm is not None:
            return np.asarray(self.com_mm, np.float64).reshape(3)
        if self.joints_mm is not None:
            return palm_centre(np.asarray(self.joints_mm, np.float64))
        return None


def _check_points(name: str, x: np.ndarray | None, n: int | None) -> None:
    if x is None:
        return
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != 3 or (n is not None and x.shape[0] != n):
        want = f"({n}, 3)" if n is not None else "(N, 3)"
        got = x.shape if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"ViewState.{name}: expected a {want} array of mm or None, got {got}")
    if x.dtype.kind != "f" or not np.isfinite(x).all():
        raise ValueError(f"ViewState.{name}: expected finite float mm, got dtype {x.dtype}"
                         f"{'' if x.dtype.kind != 'f' else ' with non-finite values'}")


# ------------------------------------------------------------------------------ pure stages


class ScenePoints(NamedTuple):
    points_mm: np.ndarray   # (N, 3) float64 mm, camera frame
    colors: np.ndarray      # (N, 3) float64 RGB 0-1


def point_stride(intr: Intrinsics, max_points: int) -> int:
    """Pixel step that keeps at most ``max_points`` of an (H, W) frame: ceil(sqrt(H W / max))."""
    if max_points < 1:
        raise ValueError(f"max_points: expected >= 1, got {max_points}")
    return max(1, math.ceil(math.sqrt(intr.width * intr.height / max_points)))


@lru_cache(maxsize=8)
def _unit_rays(intr: Intrinsics, stride: int) -> np.ndarray:
    """(h, w, 3) float64 back-projections at depth 1 of pixels (stride*i, stride*j); lens model included."""
    v, u = np.mgrid[0:intr.height:stride, 0:intr.width:stride].astype(np.float64)
    rays = backproject(np.stack((u, v, np.ones_like(u)), -1), intr)
    rays.setflags(write=False)
    return rays


def scene_points(state: ViewState, max_points: int = MAX_POINTS) -> ScenePoints:
    """The depth frame as coloured camera points, decimated to at most ``max_points``.

    Every ``point_stride``-th pixel in both directions is back-projected (calib's lens
    model); kept are points within CONTEXT_CUBES * cube_mm of the hand centre, or with
    z <= NO_HAND_RANGE_MM when there is no hand. Colour: POINT_TINT, brighter when nearer.
    """
    intr = state.intrinsics
    stride = point_stride(intr, max_points)
    rays = _unit_rays(intr, stride)
    depth = state.depth_mm[::stride, ::stride]
    valid = np.isfinite(depth) & (depth > 0)
    points = rays[valid] * depth[valid, None].astype(np.float64)
    centre = state.hand_centre_mm
    if centre is not None:
        radius = CONTEXT_CUBES * float(state.cube_mm)
        points = points[np.sum((points - centre) ** 2, axis=1) <= radius * radius]
        near, far = centre[2] - radius, centre[2] + radius
    else:
        points = points[points[:, 2] <= NO_HAND_RANGE_MM]
        near, far = (float(points[:, 2].min()) if len(points) else 0.0), NO_HAND_RANGE_MM
    t = np.clip((points[:, 2] - near) / max(far - near, 1.0), 0.0, 1.0)
    colors = (0.95 - 0.65 * t)[:, None] * POINT_TINT
    return ScenePoints(points, colors)


class Rect(NamedTuple):
    x: int   # left column, px
    y: int   # top row, px
    w: int
    h: int


class Layout(NamedTuple):
    panel: Rect   # depth panel, top right
    hud: Rect     # heads-up band, top left


def layout(width: int, height: int, depth_shape: tuple[int, int]) -> Layout:
    """Where the 2D overlays go in a width x height view (depth_shape: (H, W) of the depth frame)."""
    pw = max(64, int(round(PANEL_FRACTION * width)))
    ph = max(48, int(round(pw * depth_shape[0] / depth_shape[1])))
    ph = min(ph, height - 2 * MARGIN_PX)
    panel = Rect(width - pw - MARGIN_PX, MARGIN_PX, pw, ph)
    hud = Rect(MARGIN_PX, MARGIN_PX, max(64, panel.x - 2 * MARGIN_PX), 52)
    return Layout(panel, hud)


def _draw_skeleton_2d(img: np.ndarray, uv: np.ndarray, thickness: int, radius: int) -> None:
    import cv2

    pts = np.round(uv * 16).astype(np.int32)   # 4 fractional bits (cv2 shift=4)
    for (a, b), color in zip(CONNECTIONS, BONE_COLORS):
        cv2.line(img, tuple(pts[a]), tuple(pts[b]), tuple(float(c) * 255 for c in color), thickness,
                 cv2.LINE_AA, shift=4)
    for p, color in zip(pts, JOINT_COLORS):
        cv2.circle(img, tuple(p), radius * 16, tuple(float(c) * 255 for c in color), -1, cv2.LINE_AA, shift=4)


def depth_panel(state: ViewState, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 RGB: the depth frame colourised (TURBO, near = warm), the crop square
    around com_mm, the bones and joints projected with ``calib.project``; size = (w, h)."""
    import cv2

    w, h = size
    intr = state.intrinsics
    depth = cv2.resize(state.depth_mm, (w, h), interpolation=cv2.INTER_NEAREST)
    valid = np.isfinite(depth) & (depth > 0)
    centre = state.hand_centre_mm
    if centre is not None:                      # the hand in warm colours, the background cold
        lo, hi = centre[2] - state.cube_mm / 2, centre[2] + state.cube_mm
    elif valid.any():
        lo, hi = float(depth[valid].min()), NO_HAND_RANGE_MM
    else:
        lo, hi = 0.0, NO_HAND_RANGE_MM
    scaled = np.clip((np.where(valid, depth, hi) - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    img = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    img = np.ascontiguousarray(img)
    img[~valid] = 0
    sx, sy = w / intr.width, h / intr.height
    to_panel = lambda uv: (uv + 0.5) * (sx, sy) - 0.5  # noqa: E731  pixel centres stay centres
    if state.com_mm is not None:
        c = np.asarray(state.com_mm, np.float64).reshape(3)
        half = state.cube_mm / 2
        corners = c + np.array([[-half, -half, -half], [half, half, -half]])
        if corners[0, 2] > 1.0:
            (u0, v0), (u1, v1) = to_panel(project(corners, intr)[:, :2])
            cv2.rectangle(img, (int(u0), int(v0)), (int(u1), int(v1)), (255, 255, 255), 1, cv2.LINE_AA)
    if state.joints_mm is not None and np.all(state.joints_mm[:, 2] > 1.0):
        uv = to_panel(project(np.asarray(state.joints_mm, np.float64), intr)[:, :2])
        _draw_skeleton_2d(img, uv, thickness=max(1, w // 200), radius=max(2, w // 130))
    label = "depth" if state.joints_mm is not None else "depth  (no hand)"
    cv2.putText(img, label, (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (200, 200, 200), 1)
    return img


def hud_image(lines: tuple[str, ...], size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 RGB: the heads-up band, first line large and white, the rest small and grey."""
    import cv2

    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (22, 24, 30)
    y = 20
    for i, text in enumerate(lines):
        scale, color = (0.6, (255, 255, 255)) if i == 0 else (0.42, (175, 182, 195))
        cv2.putText(img, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
        y += 22
    return img


@dataclass(frozen=True)
class ViewCamera:
    """Pinhole of the 3D view: pixels (u, v) = (fx x / z + cx, fy y / z + cy) of
    ``cam_from_world`` applied to camera-frame points (identity = the sensor's viewpoint)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    cam_from_world: np.ndarray

    def project(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) mm -> (N, 3) u px, v px, z mm in the view."""
        p = points_mm @ self.cam_from_world[:3, :3].T + self.cam_from_world[:3, 3]
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack((self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy, z), -1)


#: Open3D's legacy view accepts vertical fields of view in (5, 90) degrees (5 means orthographic).
_FOV_RANGE_DEG = (10.0, 89.0)


def sensor_view(intr: Intrinsics | None, width: int, height: int) -> ViewCamera:
    """The view camera at the sensor's viewpoint: identity pose, square pixels, principal
    point at the window centre, the sensor's field of view (calib, lens model included)
    fitted into the window. Without intrinsics: a 58 deg vertical field of view."""
    if intr is None:
        vfov = 58.0
    else:
        fov = field_of_view_deg(intr)
        hfov_in_v = 2 * math.degrees(math.atan(math.tan(math.radians(min(fov.horizontal_deg, 170.0)) / 2)
                                               * height / width))
        vfov = max(fov.vertical_deg, hfov_in_v)
    vfov = float(np.clip(vfov, *_FOV_RANGE_DEG))
    f = height / 2 / math.tan(math.radians(vfov) / 2)
    return ViewCamera(f, f, width / 2 - 0.5, height / 2 - 0.5, width, height, np.eye(4))


def _view_lines(controls: "_Controls", hud: str) -> tuple[str, str]:
    hidden = [name for name in LAYERS if not controls.show[name]]
    status = ("PAUSED  " if controls.paused else "") + (f"hidden: {' '.join(hidden)}  " if hidden else "")
    return hud, status + KEY_HELP


# ------------------------------------------------------------------------------ controls


class _Controls:
    """Key state shared by both viewers. Thread: the viewer's (main) thread only."""

    def __init__(self) -> None:
        self.paused = False
        self.show = {name: True for name in LAYERS}
        self._steps = 0
        self._record_toggles = 0
        self._close = False
        self._reset_view = False
        self._dirty = False           # a key changed what is drawn: redraw the last state

    def handle_key(self, key: str) -> bool:
        """Applies one key (' ', '.', 'n', 'p', 's', 'm', 'd', 'r', 'v', 'q', 'esc'); True if known."""
        key = key.lower()
        toggles = {"p": "points", "s": "skeleton", "m": "mesh", "d": "depth"}
        if key == " ":
            self.paused = not self.paused
        elif key in (".", "n"):
            if self.paused:
                self._steps += 1
        elif key in toggles:
            self.show[toggles[key]] = not self.show[toggles[key]]
        elif key == "r":
            self._record_toggles += 1
        elif key == "v":
            self._reset_view = True
        elif key in ("q", "esc"):
            self._close = True
        else:
            return False
        self._dirty = True
        return True

    def step_requested(self) -> bool:
        """True once per step key pressed while paused (the app then processes one frame)."""
        if self._steps:
            self._steps -= 1
            return True
        return False

    def recording_toggled(self) -> bool:
        """True once per 'r' press: the app starts or stops recording."""
        if self._record_toggles:
            self._record_toggles -= 1
            return True
        return False


# ------------------------------------------------------------------------------ skeleton as a mesh


def _uv_sphere(radius: float, rings: int = 6, segments: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, unit normals and outward (counter-clockwise) triangles of a sphere at the origin."""
    lat = np.pi * np.arange(1, rings) / rings
    lon = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.sin(lat)[:, None] * np.cos(lon), np.sin(lat)[:, None] * np.sin(lon),
                     np.cos(lat)[:, None] * np.ones_like(lon)], -1).reshape(-1, 3)
    normals = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    top, bottom = 0, len(normals) - 1
    idx = lambda r, j: 1 + r * segments + j % segments  # noqa: E731
    tris = [(top, idx(0, j + 1), idx(0, j)) for j in range(segments)]
    for r in range(rings - 2):
        for j in range(segments):
            tris += [(idx(r, j), idx(r, j + 1), idx(r + 1, j + 1)), (idx(r, j), idx(r + 1, j + 1), idx(r + 1, j))]
    tris += [(bottom, idx(rings - 2, j), idx(rings - 2, j + 1)) for j in range(segments)]
    return radius * normals, normals, np.array(tris)[:, ::-1]


def _unit_tube(radius: float, segments: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An open cylinder of ``radius`` from z = 0 to z = 1 (vertices, unit normals, outward triangles)."""
    a = 2 * np.pi * np.arange(segments) / segments
    circle = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], -1)
    vertices = np.concatenate([circle * (radius, radius, 0), circle * (radius, radius, 0) + (0, 0, 1)])
    j = np.arange(segments)
    k = (j + 1) % segments
    tris = np.concatenate([np.stack([j, k, segments + k], -1), np.stack([j, segments + k, segments + j], -1)])
    return vertices, np.concatenate([circle, circle]), tris


def _rotations_from_z(d: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations taking +z to the unit vectors d (N, 3) (Rodrigues; -z handled)."""
    v = np.stack([-d[:, 1], d[:, 0], np.zeros(len(d))], -1)          # e_z x d
    c = d[:, 2]
    k = np.zeros((len(d), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 0], k[:, 1, 2], k[:, 2, 0], k[:, 2, 1] = -v[:, 2], v[:, 1], v[:, 2], -v[:, 0], \
        -v[:, 1], v[:, 0]
    flip = c < -1 + 1e-9
    r = np.eye(3) + k + k @ k / np.where(flip, 1.0, 1.0 + c)[:, None, None]
    r[flip] = np.diag([1.0, -1.0, -1.0])
    return r


class SkeletonMesh:
    """The skeleton as one triangle mesh: a sphere per joint and a tube per bone.

    The 3D view draws its bones with this (OpenGL core profiles, Mesa's included, draw
    lines 1 px wide whatever the requested width) around the 1 px LineSet.
    ``triangles`` (T, 3) and ``colors`` (N, 3) RGB 0-1 are fixed; ``pose(joints)`` gives the
    vertices and normals (N, 3) for (21, 3) joints in mm.
    """

    def __init__(self, joint_radius_mm: float = JOINT_RADIUS_MM, bone_radius_mm: float = BONE_RADIUS_MM) -> None:
        self._sphere_v, self._sphere_n, sphere_t = _uv_sphere(joint_radius_mm)
        self._tube_v, self._tube_n, tube_t = _unit_tube(bone_radius_mm)
        ns, nb = len(self._sphere_v), len(self._tube_v)
        self._parents = np.array([a for a, _ in CONNECTIONS])
        self._children = np.array([b for _, b in CONNECTIONS])
        nbones = len(CONNECTIONS)
        self.triangles = np.concatenate([
            (sphere_t[None] + ns * np.arange(NUM_JOINTS)[:, None, None]).reshape(-1, 3),
            (tube_t[None] + NUM_JOINTS * ns + nb * np.arange(nbones)[:, None, None]).reshape(-1, 3)]).astype(np.int32)
        self.colors = np.concatenate([np.repeat(JOINT_COLORS, ns, 0), np.repeat(BONE_COLORS, nb, 0)])
        self.num_vertices = NUM_JOINTS * ns + nbones * nb

    def pose(self, joints_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        joints = np.asarray(joints_mm, np.float64)
        a, b = joints[self._parents], joints[self._children]
        length = np.linalg.norm(b - a, axis=1)
        rot = _rotations_from_z((b - a) / np.maximum(length, 1e-9)[:, None])
        tube = self._tube_v[None] * np.stack([np.ones_like(length), np.ones_like(length), length], -1)[:, None]
        vertices = np.concatenate([(joints[:, None] + self._sphere_v[None]).reshape(-1, 3),
                                   (np.einsum("bij,bvj->bvi", rot, tube) + a[:, None]).reshape(-1, 3)])
        normals = np.concatenate([np.tile(self._sphere_n, (NUM_JOINTS, 1)),
                                  np.einsum("bij,vj->bvi", rot, self._tube_n).reshape(-1, 3)])
        return vertices, normals


# ------------------------------------------------------------------------------ software drawing


def _draw_points(img: np.ndarray, cam: ViewCamera, pts: ScenePoints) -> None:
    uvz = cam.project(pts.points_mm)
    ok = uvz[:, 2] > Z_NEAR_MM
    uvz, colors = uvz[ok], pts.colors[ok]
    order = np.argsort(-uvz[:, 2], kind="stable")                 # far first, near drawn last
    u = np.round(uvz[order, 0]).astype(np.int64)
    v = np.round(uvz[order, 1]).astype(np.int64)
    c = (colors[order] * 255).astype(np.uint8)
    h, w = img.shape[:2]
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):                 # 2 x 2 px points
        uu, vv = u + du, v + dv
        inside = (uu >= 0) & (uu < w) & (vv >= 0) & (vv < h)
        img[vv[inside], uu[inside]] = c[inside]


def _draw_mesh(img: np.ndarray, cam: ViewCamera, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Painter's algorithm: front faces, far to near, Lambert shading with a head light."""
    import cv2

    p = vertices @ cam.cam_from_world[:3, :3].T + cam.cam_from_world[:3, 3]
    tri = p[faces]                                                    # (F, 3, 3) view frame
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    front = (np.einsum("fc,fc->f", normal, centre) < 0) & (tri[:, :, 2].min(1) > Z_NEAR_MM)
    if not front.any():
        return
    normal, centre = normal[front], centre[front]
    lambert = np.abs(np.einsum("fc,fc->f", normal, centre)) / (
        np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1) + 1e-12)
    shade = np.clip(0.3 + 0.7 * lambert, 0, 1)[:, None] * np.asarray(SKIN) * 255
    uvz = cam.project(vertices)
    corners = np.round(uvz[faces[front], :2] * 16).astype(np.int32)  # 4 fractional bits
    for i in np.argsort(-centre[:, 2], kind="stable"):
        cv2.fillConvexPoly(img, corners[i], tuple(shade[i].tolist()), cv2.LINE_8, shift=4)


def _paste(img: np.ndarray, rect: Rect, content: np.ndarray) -> None:
    h, w = content.shape[:2]
    img[rect.y:rect.y + h, rect.x:rect.x + w] = content[:img.shape[0] - rect.y, :img.shape[1] - rect.x]


def render_software(state: ViewState, cam: ViewCamera, show: dict[str, bool], max_points: int = MAX_POINTS,
                    lines: tuple[str, ...] | None = None) -> np.ndarray:
    """(cam.height, cam.width, 3) uint8 RGB: what :class:`Viewer` shows, drawn with numpy/cv2.

    Points, then the skeleton (bones and joints as wide as the 3D view's tubes and spheres), then the mesh
    over them (as in the 3D view the mesh hides the skeleton inside it), then the overlays.
    Differences to the OpenGL view: no depth test between points and mesh (the mesh covers
    points just in front of it) and flat shading per triangle.
    """
    img = np.empty((cam.height, cam.width, 3), np.uint8)
    img[:] = np.round(np.asarray(BACKGROUND) * 255).astype(np.uint8)
    if show["points"]:
        _draw_points(img, cam, scene_points(state, max_points))
    if show["skeleton"] and state.joints_mm is not None:
        uvz = cam.project(np.asarray(state.joints_mm, np.float64))
        if np.all(uvz[:, 2] > Z_NEAR_MM):
            px_per_mm = cam.fx / float(np.median(uvz[:, 2]))
            _draw_skeleton_2d(img, uvz[:, :2], thickness=max(2, int(round(2 * BONE_RADIUS_MM * px_per_mm))),
                              radius=max(2, int(round(JOINT_RADIUS_MM * px_per_mm))))
    if show["mesh"] and state.vertices_mm is not None and state.faces is not None:
        _draw_mesh(img, cam, np.asarray(state.vertices_mm, np.float64), state.faces)
    lay = layout(cam.width, cam.height, state.depth_mm.shape)
    if show["depth"]:
        _paste(img, lay.panel, depth_panel(state, (lay.panel.w, lay.panel.h)))
    _paste(img, lay.hud, hud_image(lines if lines is not None else (state.hud,), (lay.hud.w, lay.hud.h)))
    return img


class SoftwareViewer(_Controls):
    """The viewer's interface without a display or OpenGL: each ``update`` draws the frame
    with :func:`render_software` at the sensor's viewpoint; ``capture`` returns it.
    Thread: the caller's (one thread)."""

    def __init__(self, width: int = 1280, height: int = 720, faces: np.ndarray | None = None,
                 visible: bool = False, max_points: int = MAX_POINTS) -> None:
        super().__init__()
        del visible  # nothing to show
        self.width, self.height, self.max_points = int(width), int(height), int(max_points)
        self.faces = faces
        self._frame = np.zeros((self.height, self.width, 3), np.uint8)
        self._closed = False

        self._last: ViewState | None = None

    def update(self, state: ViewState) -> None:
        """Draws ``state`` into the frame that ``capture`` returns."""
        if state.faces is None and self.faces is not None:
            state = replace(state, faces=self.faces)
        self._last, self._dirty = state, False
        cam = sensor_view(state.intrinsics, self.width, self.height)
        self._frame = render_software(state, cam, self.show, self.max_points, _view_lines(self, state.hud))

    def poll(self) -> bool:
        """Redraws the last state if a key changed the layers; False once closed or quit."""
        if self._dirty and self._last is not None and not self._closed:
            self.update(self._last)
        return not (self._closed or self._close)

    def capture(self) -> np.ndarray:
        """(height, width, 3) uint8 RGB of the last drawn frame."""
        return self._frame.copy()

    def screenshot(self, path: str | Path) -> None:
        _write_png(path, self.capture())

    def close(self) -> None:
        self._closed = True


def _write_png(path: str | Path, rgb: np.ndarray) -> None:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


# ------------------------------------------------------------------------------ Open3D window

#: Legacy Phong lights (their JSON keys): soft front lights, a little fill from behind, ambient,
#: and almost no specular (the default one whitens the palm).
_LIGHTS = {
    **{f"light{i}_diffuse_power": 0.36 for i in (0, 1)},
    **{f"light{i}_diffuse_power": 0.06 for i in (2, 3)},
    **{f"light{i}_specular_power": 0.03 for i in range(4)},
    **{f"light{i}_specular_shininess": 30.0 for i in range(4)},
    "light_ambient_color": [0.22, 0.22, 0.22],
}


def _set_render_options(opt) -> None:
    """Background, point size and the lights above (the lights are reachable through JSON only)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "render_option.json")
        opt.save_to_json(path)
        with open(path) as f:
            data = json.load(f)
        data.update(_LIGHTS, background_color=list(BACKGROUND), point_size=POINT_SIZE_PX, light_on=True,
                    mesh_show_back_face=False)
        with open(path, "w") as f:
            json.dump(data, f)
        opt.load_from_json(path)


# GLFW key codes (letters are their upper-case ASCII codes).
_GLFW_KEYS = {" ": 32, ".": 46, "esc": 256, **{c: ord(c.upper()) for c in "npsmdrvqh"}}


class Viewer(_Controls):
    """The Open3D window (legacy OpenGL visualizer). Thread: the main thread only.

    All geometry is allocated here once and updated in place by ``update``: the point
    cloud (resized to the points of the frame), the skeleton LineSet (21 points, 20 bones
    coloured per finger; 1 px), the :class:`SkeletonMesh` around it (joint spheres and bone
    tubes in the same colours, one mesh), the skinned mesh (allocated with ``faces``; vertices and normals per frame) and two
    textured quads that carry the depth panel and the heads-up band. The quads are kept
    OVERLAY_DEPTH_MM in front of the view camera, facing it, with one texel per screen
    pixel; they move with the camera when the mouse moves it.

    width, height: window size, px. faces: (F, 3) mesh triangles (or from the first state).
    visible: False opens a hidden window (still needs a display; screenshots work).
    max_points: point budget of the cloud (decimation step from ``point_stride``).
    """

    def __init__(self, width: int = 1280, height: int = 720, faces: np.ndarray | None = None,
                 visible: bool = True, max_points: int = MAX_POINTS, title: str = "handtrack") -> None:
        super().__init__()
        import open3d as o3d

        self._o3d = o3d
        self.width, self.height, self.max_points = int(width), int(height), int(max_points)
        self._vis = o3d.visualization.VisualizerWithKeyCallback()
        if not self._vis.create_window(title, self.width, self.height, visible=visible):
            raise RuntimeError("Viewer: Open3D could not open an OpenGL window (no display?); "
                               "use SoftwareViewer or open_viewer(headless=True)")
        self._closed = False
        _set_render_options(self._vis.get_render_option())
        for key, code in _GLFW_KEYS.items():
            self._vis.register_key_callback(code, self._key_callback(key))

        geo = o3d.geometry
        V3 = o3d.utility.Vector3dVector
        # The first geometry sets the view's bounding box, which places the point the mouse
        # rotates about (on the optical axis at the box centre's depth, 450 mm, a hand's usual distance).
        self._points = geo.PointCloud(V3(np.array([[-400.0, -300.0, 150.0], [400.0, 300.0, 750.0]])))
        self._bones = geo.LineSet(V3(np.zeros((NUM_JOINTS, 3))), o3d.utility.Vector2iVector(np.array(CONNECTIONS)))
        self._bones.colors = V3(BONE_COLORS)
        self._skeleton = SkeletonMesh()
        self._joints = geo.TriangleMesh(V3(np.zeros((self._skeleton.num_vertices, 3))),
                                        o3d.utility.Vector3iVector(self._skeleton.triangles))
        self._joints.vertex_normals = V3(np.zeros((self._skeleton.num_vertices, 3)))
        self._joints.vertex_colors = V3(self._skeleton.colors)
        self._mesh = None
        if faces is not None:
            self._allocate_mesh(faces)
        self._quads = {name: self._make_quad() for name in ("depth", "hud")}
        self._added: set[str] = set()
        self._vis.add_geometry(self._points, reset_bounding_box=True)
        self._added.add("points")
        self._vis.get_view_control().set_constant_z_near(Z_NEAR_MM)
        self._vis.get_view_control().set_constant_z_far(Z_FAR_MM)
        self._intr: Intrinsics | None = None
        self._camera_key: tuple | None = None
        self._hud_key: tuple | None = None
        self._layout: Layout | None = None
        self._last: ViewState | None = None
        self.reset_view()

    # -- geometry ---------------------------------------------------------------------------

    def _allocate_mesh(self, faces: np.ndarray) -> None:
        o3d = self._o3d
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"Viewer: expected faces (F, 3), got {faces.shape}")
        n = int(faces.max()) + 1
        self._mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.zeros((n, 3))),
                                               o3d.utility.Vector3iVector(faces.astype(np.int32)))
        self._mesh.paint_uniform_color(SKIN)
        self._faces = faces

    def _make_quad(self):
        o3d = self._o3d
        quad = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.zeros((4, 3))),
                                         o3d.utility.Vector3iVector(np.array([[0, 2, 1], [0, 3, 2]])))
        # corners: top-left, top-right, bottom-right, bottom-left; uv (0, 0) = first image row
        quad.triangle_uvs = o3d.utility.Vector2dVector(np.array([[0, 0], [1, 1], [1, 0], [0, 0], [0, 1], [1, 1]], float))
        quad.triangle_material_ids = o3d.utility.IntVector([0, 0])
        quad.textures = [o3d.geometry.Image(np.zeros((2, 2, 3), np.uint8))]
        return quad

    def _set_texture(self, name: str, rgb: np.ndarray) -> None:
        quad = self._quads[name]
        tex = np.asarray(quad.textures[0])
        if tex.shape == rgb.shape:
            tex[:] = rgb                                   # in place
        else:                                              # first frame or a new size
            quad.textures = [self._o3d.geometry.Image(np.ascontiguousarray(rgb))]

    def _geometry(self, name: str):
        return {"points": self._points, "skeleton": self._bones, "joints": self._joints, "mesh": self._mesh,
                "depth": self._quads["depth"], "hud": self._quads["hud"]}[name]

    def _sync(self, wanted: set[str]) -> None:
        """Adds and removes geometries so that exactly ``wanted`` are drawn (never reallocates)."""
        for name in sorted(self._added - wanted):
            self._vis.remove_geometry(self._geometry(name), reset_bounding_box=False)
        for name in sorted(wanted - self._added):
            self._vis.add_geometry(self._geometry(name), reset_bounding_box=False)
        self._added = set(wanted)

    # -- camera and overlays ----------------------------------------------------------------

    def reset_view(self) -> None:
        """The sensor's viewpoint (``sensor_view`` of the last frame's intrinsics)."""
        cam = sensor_view(self._intr, self.width, self.height)
        vc = self._vis.get_view_control()
        params = vc.convert_to_pinhole_camera_parameters()
        params.extrinsic = cam.cam_from_world
        params.intrinsic.set_intrinsics(self.width, self.height, cam.fx, cam.fy, cam.cx, cam.cy)
        vc.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
        self._camera_key = None

    def orbit(self, yaw_deg: float, pitch_deg: float = 0.0) -> None:
        """Turns the view about its rotation centre as a mouse drag does (degrees)."""
        per_px = 0.003   # Open3D's ViewControl: radians per pixel of drag
        self._vis.get_view_control().rotate(math.radians(yaw_deg) / per_px, math.radians(pitch_deg) / per_px)
        self._vis.update_renderer()

    def view_camera(self) -> ViewCamera:
        """The current 3D view camera (after mouse moves)."""
        params = self._vis.get_view_control().convert_to_pinhole_camera_parameters()
        k = params.intrinsic.intrinsic_matrix
        return ViewCamera(k[0, 0], k[1, 1], k[0, 2], k[1, 2], params.intrinsic.width, params.intrinsic.height,
                          np.asarray(params.extrinsic))

    def _place_overlays(self, force: bool = False, update: bool = True) -> bool:
        """Moves the overlay quads in front of the current view camera; True if they moved."""
        if self._layout is None:
            return False
        cam = self.view_camera()
        key = (cam.fx, cam.cx, cam.cy, cam.cam_from_world.tobytes(), self._layout)
        if key == self._camera_key and not force:
            return False
        self._camera_key = key
        world_from_cam = np.linalg.inv(cam.cam_from_world)
        d = OVERLAY_DEPTH_MM
        for name, r in (("depth", self._layout.panel), ("hud", self._layout.hud)):
            u = np.array([r.x, r.x + r.w, r.x + r.w, r.x], float) - 0.5   # pixel edges
            v = np.array([r.y, r.y, r.y + r.h, r.y + r.h], float) - 0.5
            corners = np.stack(((u - cam.cx) / cam.fx * d, (v - cam.cy) / cam.fy * d, np.full(4, d)), -1)
            np.asarray(self._quads[name].vertices)[:] = corners @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]
            if update and name in self._added:
                self._vis.update_geometry(self._quads[name])
        return True

    # -- the app's interface ----------------------------------------------------------------

    def update(self, state: ViewState) -> None:
        """Updates every drawn geometry in place from ``state`` and draws the window."""
        if self._closed:
            return
        self._apply(state)
        self.poll()

    def _apply(self, state: ViewState) -> None:
        self._last, self._dirty = state, False
        if state.intrinsics != self._intr:
            first = self._intr is None
            self._intr = state.intrinsics
            self._layout = layout(self.width, self.height, state.depth_mm.shape)
            if first:
                self.reset_view()
        if self._reset_view:
            self._reset_view = False
            self.reset_view()
        wanted = {"hud"}
        if self.show["points"]:
            pts = scene_points(state, self.max_points)
            if len(pts.points_mm):
                self._points.points = self._o3d.utility.Vector3dVector(pts.points_mm)
                self._points.colors = self._o3d.utility.Vector3dVector(pts.colors)
                wanted.add("points")
        if self.show["skeleton"] and state.joints_mm is not None:
            joints = np.asarray(state.joints_mm, np.float64)
            np.asarray(self._bones.points)[:] = joints
            np.asarray(self._joints.vertices)[:], np.asarray(self._joints.vertex_normals)[:] = \
                self._skeleton.pose(joints)
            wanted |= {"skeleton", "joints"}
        if self.show["mesh"] and state.vertices_mm is not None:
            if self._mesh is None:
                if state.faces is None:
                    raise ValueError("Viewer.update: vertices_mm without faces (pass faces to Viewer or ViewState)")
                self._allocate_mesh(state.faces)
            verts = np.asarray(self._mesh.vertices)
            if state.vertices_mm.shape != verts.shape:
                raise ValueError(f"Viewer.update: vertices_mm {state.vertices_mm.shape} do not match the mesh "
                                 f"allocated with {len(self._faces)} faces ({verts.shape})")
            verts[:] = state.vertices_mm
            self._mesh.compute_vertex_normals()
            wanted.add("mesh")
        if self.show["depth"]:
            self._set_texture("depth", depth_panel(state, (self._layout.panel.w, self._layout.panel.h)))
            wanted.add("depth")
        lines = _view_lines(self, state.hud)
        changed = wanted - {"hud"}             # the heads-up texture is uploaded again only when it changes
        if lines != self._hud_key:
            self._hud_key = lines
            self._set_texture("hud", hud_image(lines, (self._layout.hud.w, self._layout.hud.h)))
            changed.add("hud")
        self._sync(wanted)
        if self._place_overlays(update=False):
            changed.add("hud")
        for name in changed & wanted:
            self._vis.update_geometry(self._geometry(name))
        self._vis.update_renderer()

    def poll(self) -> bool:
        """Handles window events (keys, mouse) and draws what changed; False once closed."""
        if self._closed:
            return False
        alive = self._vis.poll_events()      # draws pending changes first, then handles events
        if not alive or self._close:
            self.close()
            return False
        if self._dirty and self._last is not None:
            self._apply(self._last)           # a key changed the layers (or paused): redraw
        elif self._reset_view:
            self._reset_view = False
            self.reset_view()
        if self._place_overlays():            # the mouse moved the camera: overlays follow
            self._vis.update_renderer()
        return True

    def handle_key(self, key: str) -> bool:
        """Applies a key as if pressed in the window (see ``_Controls.handle_key``)."""
        known = super().handle_key(key)
        if key == "h":
            print(f"keys: {KEY_HELP}; mouse: drag rotate, ctrl+drag pan, wheel zoom", flush=True)
        return known

    def _key_callback(self, key: str):
        def callback(_vis) -> bool:
            self.handle_key(key)
            return False
        return callback

    def capture(self) -> np.ndarray:
        """(height, width, 3) uint8 RGB of the window as drawn (re-renders it once)."""
        if self._closed:
            raise RuntimeError("Viewer.capture: the window is closed")
        buf = np.asarray(self._vis.capture_screen_float_buffer(do_render=True))
        return np.round(np.clip(buf, 0.0, 1.0) * 255).astype(np.uint8)

    def screenshot(self, path: str | Path) -> None:
        """Writes the window as a PNG (or any format cv2 knows from the extension)."""
        _write_png(path, self.capture())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._vis.destroy_window()


def open_viewer(width: int = 1280, height: int = 720, faces: np.ndarray | None = None, visible: bool = True,
                headless: bool | None = None, max_points: int = MAX_POINTS) -> Viewer | SoftwareViewer:
    """The viewer for this machine.

    headless None: a :class:`Viewer` when a display is set and an OpenGL window opens, else
    (with a note on stderr when the window failed) a :class:`SoftwareViewer`;
    headless True: a SoftwareViewer; False: a Viewer or RuntimeError.
    """
    if headless is None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            headless = True
        else:
            try:
                return Viewer(width, height, faces=faces, visible=visible, max_points=max_points)
            except RuntimeError as exc:
                print(f"viewer: {exc}; drawing without OpenGL instead", file=sys.stderr)
                headless = True
    cls = SoftwareViewer if headless else Viewer
    return cls(width, height, faces=faces, visible=visible, max_points=max_points)


# ------------------------------------------------------------------------------ demo and bench


def demo_states(frames: int, preset: str = "d435_640x480", wall_mm: float = 650.0,
                hud: str = "demo") -> Iterator[ViewState]:
    """ViewStates of the hand model animated through named poses in front of a wall,
    ray-cast at ``preset`` (models.render): what the app will hand the viewer."""
    import torch

    from calib import get_preset
    from models.hand_layer import HandLayer
    from models.poses import named_theta
    from models.render import raycast

    intr = get_preset(preset).intrinsics
    layer = HandLayer().eval()
    faces = layer.faces.numpy()
    keys = [named_theta(n, translation=(10.0, 70.0, 430.0)) for n in
            ("relaxed", "spread", "point", "pinch", "victory", "fist", "relaxed")]
    w = 2000.0
    wall = (np.array([[-w, -w, wall_mm], [w, -w, wall_mm], [w, w, wall_mm], [-w, w, wall_mm]], np.float32),
            np.array([[0, 1, 2], [0, 2, 3]]))
    for i in range(frames):
        s = i / max(frames - 1, 1) * (len(keys) - 1)
        k = min(int(s), len(keys) - 2)
        theta = (1 - (s - k)) * keys[k] + (s - k) * keys[k + 1]
        theta[0:3] += (0.0, 0.35 * math.sin(2 * math.pi * i / max(frames, 2)), 0.0)
        with torch.inference_mode():
            out = layer(torch.as_tensor(theta[None], dtype=torch.float32))
        verts, joints = out.vertices[0].numpy(), out.joints[0].numpy()
        depth = raycast([(verts, faces), wall], intr).depth
        yield ViewState(depth, intr, joints, verts, faces, palm_centre(joints), 250.0, f"{hud}  frame {i}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.viewer", description="Animate the hand model in the viewer.")
    parser.add_argument("--frames", type=int, default=90, help="frames to show (default 90)")
    parser.add_argument("--distinct", type=int, default=0,
                        help="render only this many distinct frames and cycle them (0 = all; the bench uses 12)")
    parser.add_argument("--bench", action="store_true", help="time update()+draw and print the median")
    parser.add_argument("--headless", action="store_true", help="software viewer, no window")
    parser.add_argument("--hidden", action="store_true", help="hidden OpenGL window (still needs a display)")
    parser.add_argument("--video", type=Path, help="write the frames to this file (.mp4, .mkv, ...)")
    parser.add_argument("--screenshot", type=Path, help="save the last frame as a picture")
    parser.add_argument("--orbit", type=float, nargs=2, metavar=("YAW", "PITCH"), default=(0.0, 0.0),
                        help="turn the window's view by these degrees first (as a mouse drag)")
    parser.add_argument("--size", default="1280x720", help="window size WxH (default 1280x720)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of --video (default 30)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS, help=f"point cloud budget (default {MAX_POINTS})")
    args = parser.parse_args(argv)
    try:
        width, height = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        print(f"error: --size expects WxH, got {args.size!r}", file=sys.stderr)
        return 2
    if args.frames < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    distinct = args.distinct or (12 if args.bench else args.frames)
    preset = "d435_640x480"
    states = list(demo_states(min(distinct, args.frames), preset))
    viewer = open_viewer(width, height, faces=states[0].faces, visible=not args.hidden,
                         headless=True if args.headless else None, max_points=args.max_points)
    from app.video import VideoWriter

    writer = VideoWriter(args.video, args.fps, (width, height)) if args.video else None
    times, cpu = [], []
    try:
        for i in range(args.frames):
            t0, c0 = time.perf_counter(), time.process_time()
            state = states[i % len(states)]
            last = f"  update+draw {1e3 * times[-1]:.0f} ms" if times else ""
            viewer.update(replace(state, hud=f"hand model demo  frame {i}{last}  (depth {preset})"))
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if i == 0 and any(args.orbit) and isinstance(viewer, Viewer):
                viewer.orbit(*args.orbit)      # after the first frame, which sets the sensor's view
            if writer is not None:
                writer.write(viewer.capture())
            if not viewer.poll():
                break
        if args.screenshot:
            viewer.screenshot(args.screenshot)
    finally:
        if writer is not None:
            writer.close()
        viewer.close()
    ms, cpu_ms = 1e3 * np.asarray(times[2:] or times), 1e3 * np.asarray(cpu[2:] or cpu)
    kind = type(viewer).__name__
    print(f"{kind} {width}x{height}, depth {states[0].depth_mm.shape[1]}x{states[0].depth_mm.shape[0]}, "
          f"{len(states[0].vertices_mm)}-vertex mesh: update+draw median {np.median(ms):.1f} ms "
          f"(p90 {np.percentile(ms, 90):.1f} ms, {1e3 / np.median(ms):.1f} FPS; CPU time of this process "
          f"{np.median(cpu_ms):.1f} ms/frame) over {len(ms)} frames; load average {os.getloadavg()[0]:.1f}"
          + (f"; video {args.video} ({writer.frames_written} frames)" if writer else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
