"""Backgrounds and clutter as low-poly triangle meshes, ray-cast together with the hand.

Camera frame: x right, y down, z forward; millimetres. Every mesh is built from a few cached
unit primitives (box, UV sphere, tube, quad) scaled, rotated and moved per frame, so that
occlusions and sensor shadows between hand, arm, body, walls and objects are geometric.

Views (``sample_scene(..., view=...)``):

* ``"third_person"``: a camera roughly level (pitch, roll within ``SceneConfig``), a person facing
  it behind the hand (torso, shoulders, neck, head, the other arm hanging), an upper arm from the
  forearm stub's far end to the hand-side shoulder (or, without a body, out of the image), a wall
  0.2-1.5 m behind the hand, sometimes a table under it.
* ``"egocentric"``: a head-mounted camera looking down (pitch 25-65 deg); the upper arm runs from
  the forearm's far end towards a shoulder just below and beside the camera, so the arm leaves
  through the bottom of the image; often a table or the floor under the hand.

Placement rules that keep the hand visible: walls, tables and floors are planes with the camera
and every hand vertex on the same side; the person is entirely farther (z) than the farthest
hand (non-forearm) vertex plus ``margin_mm``; the upper arm and the objects near the hand are
rejected (and re-drawn, up to ``max_tries``) when their bounding capsule or sphere comes within
``palm_clearance_mm`` of the segment from the camera to the palm centre.

Pure functions of their arguments (numpy), except :func:`forearm_vertex_mask`, which reads the
hand asset once (cached).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from calib import Intrinsics
from models.joints import palm_centre

__all__ = [
    "VIEWS", "SceneConfig", "SceneMesh", "Scene", "ForearmEnd", "HandSummary",
    "forearm_vertex_mask", "forearm_end", "summarize_hand", "upper_arm", "build_scene", "sample_scene",
]

VIEWS: tuple[str, ...] = ("third_person", "egocentric")
FOREARM_PART = 6   # ``part`` value of forearm vertices in models/assets/hand_model.npz


class SceneMesh(NamedTuple):
    """One triangle mesh: vertices (V, 3) float32 mm camera frame, faces (F, 3) int32."""

    vertices: np.ndarray
    faces: np.ndarray


class Scene(NamedTuple):
    """Meshes to ray-cast with the hand, and what each one is (same order)."""

    meshes: list[SceneMesh]
    kinds: tuple[str, ...]   # "wall", "table", "floor", "upper_arm", "body", "object", "second_hand"


@dataclass(frozen=True)
class SceneConfig:
    """Probabilities per frame and size ranges (mm, degrees). Adult sizes; bodies and arms are
    scaled by the hand's length / ``reference_hand_mm`` so children get small bodies.

    p_empty: nothing but the hand and its arm (everything else beyond range).
    p_arm: the upper arm continues the forearm stub.
    p_body: (third person) a person behind the hand.
    p_wall / p_table: per view (third person, egocentric).
    p_floor: (egocentric) a floor 1.0-1.7 m below the camera when there is no table.
    p_clutter, max_objects, object_size_mm: boxes / cylinders / spheres near the hand.
    p_second_hand: a hand-sized blob with a forearm near the hand.
    wall_gap_mm: wall distance behind the hand's (forearm included) farthest point, along the
        wall's normal; the wall also stays 50 mm behind the person and the arm. wall_tilt_deg: max tilt.
    table_gap_mm: table distance below the lowest hand vertex (along gravity).
    pitch_deg / roll_deg: camera orientation ranges per view (gravity direction in the camera).
    margin_mm: the body starts at least this far behind the farthest hand vertex.
    palm_clearance_mm: clearance of arm / objects from the camera-to-palm segment.
    """

    p_empty: float = 0.08
    p_arm: float = 0.92
    p_body: float = 0.75
    p_wall: tuple[float, float] = (0.55, 0.3)
    p_table: tuple[float, float] = (0.25, 0.55)
    p_floor: float = 0.5
    p_clutter: float = 0.3
    max_objects: int = 3
    object_size_mm: tuple[float, float] = (30.0, 150.0)
    p_second_hand: float = 0.05
    wall_gap_mm: tuple[float, float] = (200.0, 1500.0)
    wall_tilt_deg: float = 30.0
    table_gap_mm: tuple[float, float] = (20.0, 300.0)
    floor_depth_mm: tuple[float, float] = (1000.0, 1700.0)
    pitch_deg: tuple[tuple[float, float], tuple[float, float]] = ((-20.0, 20.0), (25.0, 65.0))
    roll_deg: float = 10.0
    body_yaw_deg: float = 30.0
    margin_mm: float = 30.0
    palm_clearance_mm: float = 15.0
    reference_hand_mm: float = 190.0
    max_tries: int = 5

    def __post_init__(self) -> None:
        probs = [self.p_empty, self.p_arm, self.p_body, self.p_floor, self.p_clutter, self.p_second_hand,
                 *self.p_wall, *self.p_table]
        if any(not 0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"SceneConfig: expected probabilities in [0, 1], got {probs}")
        for name in ("object_size_mm", "wall_gap_mm", "table_gap_mm", "floor_depth_mm"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"SceneConfig.{name}: expected 0 < min <= max, got {(lo, hi)}")
        if self.max_objects < 0 or self.max_tries < 1:
            raise ValueError(f"SceneConfig: expected max_objects >= 0 and max_tries >= 1, got "
                             f"{self.max_objects} and {self.max_tries}")


# ============================================================================ unit primitives


def _freeze(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=1)
def _unit_box() -> tuple[np.ndarray, np.ndarray]:
    """Cube [-1, 1]^3 (semi-axes 1), outward faces."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int32)
    return _freeze(v, f)


@lru_cache(maxsize=4)
def _unit_sphere(n_lat: int = 6, n_lon: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """UV sphere of radius 1: poles plus (n_lat - 1) rings of n_lon vertices."""
    rings = []
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        ph = 2 * math.pi * np.arange(n_lon) / n_lon
        rings.append(np.stack([math.sin(th) * np.cos(ph), math.sin(th) * np.sin(ph),
                               np.full(n_lon, math.cos(th))], 1))
    v = np.concatenate([[[0.0, 0.0, 1.0]], *rings, [[0.0, 0.0, -1.0]]]).astype(np.float32)
    faces = []
    top, bottom = 0, len(v) - 1
    for j in range(n_lon):
        faces.append([top, 1 + j, 1 + (j + 1) % n_lon])
    for i in range(n_lat - 2):
        a, b = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            j1 = (j + 1) % n_lon
            faces += [[a + j, b + j, b + j1], [a + j, b + j1, a + j1]]
    last = 1 + (n_lat - 2) * n_lon
    for j in range(n_lon):
        faces.append([last + j, bottom, last + (j + 1) % n_lon])
    return _freeze(v, np.asarray(faces, dtype=np.int32))


@lru_cache(maxsize=4)
def _tube_topology(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Capped tube between two rings of n vertices: (2n + 2, 6) coefficients, faces.

    vertices = coefficients @ [a0, b0, c0, a1, b1, c1] (rows: the semi-axis vectors and centre
    of ring 0, then of ring 1). Vertex order: ring 0 (n), ring 1 (n), centre 0, centre 1.
    """
    ph = 2 * math.pi * np.arange(n) / n
    faces = []
    for j in range(n):
        j1 = (j + 1) % n
        faces += [[j, j1, n + j1], [j, n + j1, n + j], [2 * n, j1, j], [2 * n + 1, n + j, n + j1]]
    coef = np.zeros((2 * n + 2, 6))
    coef[:n, 0], coef[:n, 1], coef[:n, 2] = np.cos(ph), np.sin(ph), 1.0
    coef[n:2 * n, 3], coef[n:2 * n, 4], coef[n:2 * n, 5] = np.cos(ph), np.sin(ph), 1.0
    coef[2 * n, 2] = coef[2 * n + 1, 5] = 1.0
    return _freeze(coef, np.asarray(faces, dtype=np.int32))


_QUAD_FACES = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
_QUAD_FACES.setflags(write=False)


# ============================================================================ small geometry


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(v @ v)), 1e-9)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~30 us a call)."""
    a0, a1, a2 = float(a[0]), float(a[1]), float(a[2])
    b0, b1, b2 = float(b[0]), float(b[1]), float(b[2])
    return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rot_axis(axis: np.ndarray, a: float) -> np.ndarray:
    k = _unit(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(a) * kx + (1 - math.cos(a)) * kx @ kx


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random rotation (Shoemake's quaternion method)."""
    u1, u2, u3 = rng.random(3)
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    x, y, z, w = a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2), \
        b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _perpendiculars(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _unit(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    p = _unit(_cross(a, helper))
    return p, _cross(a, p)


def _segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> float:
    """Closest distance between segments [p0, p1] and [q0, q1] (Ericson, Real-Time Collision Detection)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e, f = float(d1 @ d1), float(d2 @ d2), float(d2 @ r)
    c, b = float(d1 @ r), float(d1 @ d2)
    denom = a * e - b * b
    s = float(np.clip((b * f - c * e) / denom, 0.0, 1.0)) if denom > 1e-12 else 0.0
    t = (b * s + f) / e if e > 1e-12 else 0.0
    if t < 0.0:
        t, s = 0.0, float(np.clip(-c / a, 0.0, 1.0)) if a > 1e-12 else 0.0
    elif t > 1.0:
        t, s = 1.0, float(np.clip((b - c) / a, 0.0, 1.0)) if a > 1e-12 else 0.0
    gap = p0 + d1 * s - (q0 + d2 * t)
    return math.sqrt(float(gap @ gap))


# ============================================================================ mesh builders


def _ellipsoid(centre: np.ndarray, axes: np.ndarray) -> SceneMesh:
    """axes: (3, 3) rows = the three semi-axis vectors (mm)."""
    v, f = _unit_sphere()
    return SceneMesh((v @ axes + centre).astype(np.float32), f)


def _box(centre: np.ndarray, axes: np.ndarray) -> SceneMesh:
    v, f = _unit_box()
    return SceneMesh((v @ axes + centre).astype(np.float32), f)


def _tube(c0: np.ndarray, c1: np.ndarray, r0: float | tuple[float, float], r1: float | tuple[float, float],
          n: int = 10) -> SceneMesh:
    """Capped (elliptic) tube from c0 to c1; r = radius or (semi-axis 1, semi-axis 2)."""
    coef, faces = _tube_topology(n)
    p, q = _perpendiculars(c1 - c0)
    ra = (r0, r0) if np.isscalar(r0) else r0
    rb = (r1, r1) if np.isscalar(r1) else r1
    rows = np.stack([p * ra[0], q * ra[1], c0, p * rb[0], q * rb[1], c1])
    return SceneMesh((coef @ rows).astype(np.float32), faces)


def _quad(centre: np.ndarray, u_axis: np.ndarray, v_axis: np.ndarray) -> SceneMesh:
    """Rectangle centre +- u_axis +- v_axis (semi-extents as vectors)."""
    v = np.stack([centre - u_axis - v_axis, centre + u_axis - v_axis,
                  centre + u_axis + v_axis, centre - u_axis + v_axis]).astype(np.float32)
    return SceneMesh(v, _QUAD_FACES)


def merge_meshes(meshes: list[SceneMesh]) -> SceneMesh:
    """One mesh holding all of ``meshes`` (a ray-cast scene with one geometry builds faster)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return SceneMesh(np.concatenate([m.vertices for m in meshes]),
                     np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int32))


# ============================================================================ the hand


@lru_cache(maxsize=1)
def forearm_vertex_mask() -> np.ndarray:
    """(V,) bool: forearm vertices of the hand template (``part == 6`` in the asset). Reads once."""
    from models.handmesh import ASSET_PATH
    with np.load(ASSET_PATH) as data:
        mask = data["part"] == FOREARM_PART
    mask.setflags(write=False)
    return mask


def _part_indices(mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(forearm vertex indices, other vertex indices) of a (V,) bool mask (default: the template's)."""
    if mask is None:
        return _template_part_indices()
    mask = np.asarray(mask, dtype=bool)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


@lru_cache(maxsize=1)
def _template_part_indices() -> tuple[np.ndarray, np.ndarray]:
    mask = forearm_vertex_mask()
    return _freeze(np.flatnonzero(mask), np.flatnonzero(~mask))


class ForearmEnd(NamedTuple):
    """The far end of the forearm stub (the elbow side), camera frame, mm."""

    centre: np.ndarray     # (3,) centroid of the end ring
    axes: np.ndarray       # (2, 3) semi-axis vectors of the end ring (major first)
    direction: np.ndarray  # (3,) unit, from the wrist towards the end


def _check_hand(vertices: np.ndarray, joints: np.ndarray, forearm_mask: np.ndarray | None) -> None:
    n_mask = len(forearm_vertex_mask()) if forearm_mask is None else np.shape(forearm_mask)[0]
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) != n_mask:
        raise ValueError(f"hand vertices: expected shape ({n_mask}, 3) (the forearm mask's length), "
                         f"got {vertices.shape}")
    if joints.shape != (21, 3):
        raise ValueError(f"joints: expected shape (21, 3), got {joints.shape}")


def forearm_end(vertices: np.ndarray, joints: np.ndarray, forearm_mask: np.ndarray | None = None,
                ring_mm: float = 20.0) -> ForearmEnd:
    """End ring of the forearm stub: its vertices farther than (max - ring_mm) from the wrist (joint 0)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    _check_hand(vertices, joints, forearm_mask)
    arm = vertices[_part_indices(forearm_mask)[0]]
    if len(arm) < 3:
        raise ValueError(f"forearm_end: expected at least 3 forearm vertices, got {len(arm)}")
    rel = arm - joints[0]
    dist2 = (rel * rel).sum(1)
    ring = arm[dist2 >= (math.sqrt(float(dist2.max())) - ring_mm) ** 2]
    centre = ring.mean(0)
    direction = _unit(centre - joints[0])
    # semi-axes: the farthest ring vertex from the centre (within the plane across the arm), and
    # the largest extent perpendicular to it
    flat = ring - centre
    flat = flat - np.outer(flat @ direction, direction)
    major = flat[int(np.argmax((flat * flat).sum(1)))]
    minor_dir = _unit(_cross(direction, major))
    axes = np.stack([major, minor_dir * float(np.abs(flat @ minor_dir).max())])
    return ForearmEnd(centre, axes, direction)


class HandSummary(NamedTuple):
    """What scene placement needs to know about the hand (camera frame, mm)."""

    palm: np.ndarray        # (3,) palm centre: mean of the wrist and the four finger MCPs
    far_z: float            # largest z of the hand (forearm excluded)
    radius: float           # largest distance of a hand vertex (forearm excluded) from the palm
    scale: float            # hand length (wrist to middle tip, straightened) / reference
    hand_vertices: np.ndarray  # (V', 3) hand vertices without the forearm
    all_vertices: np.ndarray   # (V, 3)
    end: ForearmEnd


_MIDDLE_CHAIN = (0, 9, 10, 11, 12)


def summarize_hand(vertices: np.ndarray, joints: np.ndarray, reference_hand_mm: float = 190.0,
                   forearm_mask: np.ndarray | None = None) -> HandSummary:
    vertices = np.asarray(vertices, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float64)
    end = forearm_end(vertices, joints, forearm_mask)
    hand = vertices[_part_indices(forearm_mask)[1]]
    palm = palm_centre(joints)
    bones = np.diff(joints[list(_MIDDLE_CHAIN)], axis=0)
    length = float(np.sqrt((bones * bones).sum(1)).sum())
    offsets = hand - palm
    radius = math.sqrt(float((offsets * offsets).sum(1).max()))
    return HandSummary(palm, float(hand[:, 2].max()), radius, length / reference_hand_mm, hand, vertices, end)


def upper_arm(end: ForearmEnd, target: np.ndarray, target_radius_mm: float) -> SceneMesh:
    """Upper arm continuing the forearm stub: a sphere closing the elbow (radius = the end ring's
    mean semi-axis) and a tube from the end ring's centre to ``target`` (shoulder, or a point
    outside the image), radius growing from the elbow's to ``target_radius_mm``."""
    r_elbow = _arm_radius(end)
    target = np.asarray(target, dtype=np.float64)
    elbow = _ellipsoid(end.centre, np.eye(3) * r_elbow)
    return merge_meshes([elbow, _tube(end.centre, target, r_elbow, target_radius_mm)])


# ============================================================================ layout


class _Frame(NamedTuple):
    """Gravity-aligned directions in the camera frame."""

    down: np.ndarray
    forward: np.ndarray   # horizontal, away from the camera
    right: np.ndarray     # horizontal, camera right


def _gravity(rng: np.random.Generator, pitch_range: tuple[float, float], roll_deg: float) -> _Frame:
    pitch = math.radians(rng.uniform(*pitch_range))
    roll = math.radians(rng.uniform(-roll_deg, roll_deg))
    r = _rot_z(roll) @ _rot_x(pitch)
    down, forward = r @ np.array([0.0, 1.0, 0.0]), r @ np.array([0.0, 0.0, 1.0])
    return _Frame(down, forward, _cross(down, forward))


def _project(points: np.ndarray, intr: Intrinsics) -> np.ndarray:
    z = np.maximum(points[..., 2], 1e-6)
    return np.stack([intr.fx * points[..., 0] / z + intr.cx, intr.fy * points[..., 1] / z + intr.cy], -1)


def _exit_point(start: np.ndarray, direction: np.ndarray, intr: Intrinsics, max_len: float) -> np.ndarray:
    """First point along start + t direction (t <= max_len) outside the image or behind the camera,
    plus 100 mm; the end point if none."""
    ts = np.linspace(0.0, max_len, 33)[1:]
    pts = start + ts[:, None] * direction
    uv = _project(pts, intr)
    out = (pts[:, 2] <= 10.0) | (uv[:, 0] < -0.5) | (uv[:, 0] > intr.width - 0.5) \
        | (uv[:, 1] < -0.5) | (uv[:, 1] > intr.height - 0.5)
    k = int(np.argmax(out)) if out.any() else len(ts) - 1
    return start + (ts[k] + 100.0) * direction


def _clear_of_palm(hand: HandSummary, p0: np.ndarray, p1: np.ndarray, radius: float, clearance: float) -> bool:
    return _segment_distance(np.zeros(3), hand.palm, p0, p1) > radius + clearance


def _arm_radius(end: ForearmEnd) -> float:
    """Mean semi-axis of the forearm's end ring, mm."""
    return float(np.sqrt((end.axes * end.axes).sum(1)).mean())


def _person(rng: np.random.Generator, hand: HandSummary, grav: _Frame, side: float,
            cfg: SceneConfig) -> tuple[list[SceneMesh], np.ndarray]:
    """Torso, shoulders, neck, head and the other arm of a person facing the camera; the
    hand-side shoulder is placed an upper arm's length from the elbow. Returns (meshes, shoulder)."""
    s = hand.scale
    up = -grav.down
    yaw = math.radians(rng.uniform(-cfg.body_yaw_deg, cfg.body_yaw_deg))
    facing = _rot_axis(up, yaw) @ (-grav.forward)          # the person looks towards the camera
    right = _cross(facing, up)                            # the person's right
    lateral = side * right                                  # towards the hand-side shoulder
    elbow = hand.end.centre
    for _ in range(cfg.max_tries):
        w = rng.uniform([0.3, -0.2, -0.4], [1.0, 1.0, 0.8])
        u = _unit(w[0] * -facing + w[1] * up + w[2] * lateral)
        shoulder = elbow + rng.uniform(250.0, 320.0) * s * u
        if _clear_of_palm(hand, elbow, shoulder, 45.0 * s, cfg.palm_clearance_mm):
            break
    half_shoulders = rng.uniform(160.0, 200.0) * s
    torso_half = np.array([rng.uniform(140.0, 180.0), rng.uniform(240.0, 300.0), rng.uniform(95.0, 125.0)]) * s
    torso_top = shoulder - lateral * half_shoulders - up * 40.0 * s
    torso_centre = torso_top - up * torso_half[1]
    other = shoulder - lateral * 2.0 * half_shoulders
    head_half = np.array([rng.uniform(70.0, 82.0), rng.uniform(105.0, 120.0), rng.uniform(88.0, 100.0)]) * s
    neck_top = torso_top + up * 90.0 * s
    head_centre = neck_top + up * head_half[1] * 0.85 + facing * 10.0 * s
    hang = _unit(-up + rng.uniform(0.0, 0.3) * (-lateral) + rng.uniform(-0.3, 0.3) * facing)
    meshes = [
        _tube(torso_centre - up * torso_half[1], torso_top, (torso_half[0], torso_half[2]),
              (torso_half[0] * 1.05, torso_half[2]), n=14),
        _ellipsoid(shoulder, np.eye(3) * 62.0 * s),
        _ellipsoid(other, np.eye(3) * 62.0 * s),
        _tube(torso_top - up * 20.0 * s, neck_top + up * 20.0 * s, 52.0 * s, 48.0 * s, n=8),
        _ellipsoid(head_centre, np.stack([right * head_half[0], up * head_half[1], facing * head_half[2]])),
        _tube(other, other + hang * rng.uniform(500.0, 600.0) * s, 48.0 * s, 35.0 * s, n=8),
    ]
    # the torso tube's ellipse axes follow _perpendiculars(up); rotate it to (right, facing)
    torso = meshes[0]
    p, q = _perpendiculars(up)
    basis_from = np.stack([p, q, _unit(up)])
    basis_to = np.stack([right, facing, _unit(up)])
    rot = basis_to.T @ basis_from
    meshes[0] = SceneMesh(((torso.vertices - torso_centre) @ rot.T + torso_centre).astype(np.float32), torso.faces)
    # everything of the person must lie behind the hand
    near = min(float(m.vertices[:, 2].min()) for m in meshes)
    push = hand.far_z + cfg.margin_mm - near
    if push > 0:
        shift = np.array([0.0, 0.0, push], dtype=np.float32)
        meshes = [SceneMesh(m.vertices + shift, m.faces) for m in meshes]
        shoulder = shoulder + shift
    return meshes, shoulder


def _plane_offset(normal: np.ndarray, points: np.ndarray) -> float:
    return float((points @ normal).max())


def _wall(rng: np.random.Generator, hand: HandSummary, grav: _Frame, behind: np.ndarray,
          cfg: SceneConfig) -> SceneMesh | None:
    tilt = math.radians(cfg.wall_tilt_deg)
    n = _rot_axis(-grav.down, rng.uniform(-tilt, tilt)) @ _rot_axis(grav.right, rng.uniform(-tilt, tilt)) @ grav.forward
    if n[2] <= 0.2:
        return None
    offset = max(_plane_offset(n, hand.all_vertices) + rng.uniform(*cfg.wall_gap_mm),
                 _plane_offset(n, behind) + 50.0)
    centre = hand.palm + (offset - float(hand.palm @ n)) * n
    a, b = _perpendiculars(n)
    return _quad(centre, a * 6000.0, b * 6000.0)


def _ground(hand: HandSummary, grav: _Frame, offset: float, half_extent: tuple[float, float],
            shift: np.ndarray) -> SceneMesh | None:
    """Horizontal rectangle in the plane ``down . X = offset`` (mm along gravity from the camera),
    centred under the palm + ``shift``; None when the camera would not be above it."""
    if offset <= 50.0:   # the camera would be at or below it
        return None
    centre = hand.palm + (offset - float(hand.palm @ grav.down)) * grav.down + shift
    return _quad(centre, grav.forward * half_extent[0], grav.right * half_extent[1])


def _objects(rng: np.random.Generator, hand: HandSummary, cfg: SceneConfig, second_hand: bool,
             clutter: bool) -> list[tuple[SceneMesh, str]]:
    """Boxes, cylinders and spheres (and a second hand-sized blob) near the hand, at its depth,
    clear of the hand's vertices and of the camera-to-palm segment."""
    out: list[tuple[SceneMesh, str]] = []
    count = int(rng.integers(1, cfg.max_objects + 1)) if clutter and cfg.max_objects else 0
    kinds = ["second_hand"] if second_hand else []
    kinds += [("box", "cylinder", "sphere")[int(rng.integers(3))] for _ in range(count)]
    for kind in kinds:
        for _ in range(cfg.max_tries):
            if kind == "second_hand":
                size = np.array([45.0, 90.0, 20.0]) * hand.scale
                bound = 90.0 * hand.scale
            else:
                size = rng.uniform(*cfg.object_size_mm, size=3) / 2.0       # semi-extents
                bound = float(np.linalg.norm(size)) if kind == "box" else float(size.max())
            phi = rng.uniform(0.0, 2.0 * math.pi)
            dist = hand.radius * 0.6 + bound + rng.uniform(0.0, 200.0)
            centre = hand.palm + dist * np.array([math.cos(phi), math.sin(phi), 0.0]) \
                + np.array([0.0, 0.0, rng.uniform(-60.0, 200.0)])
            if centre[2] - bound < 50.0:
                continue
            gaps = hand.all_vertices - centre
            clearance = math.sqrt(float((gaps * gaps).sum(1).min()))
            if clearance < 0.8 * bound or not _clear_of_palm(hand, centre, centre, bound, cfg.palm_clearance_mm):
                continue
            rot = _random_rotation(rng)
            if kind == "box":
                out.append((_box(centre, rot * size[:, None]), "object"))
            elif kind == "sphere":
                out.append((_ellipsoid(centre, np.eye(3) * size[0]), "object"))
            elif kind == "cylinder":
                axis = rot[2] * size[1]
                out.append((_tube(centre - axis, centre + axis, size[0], size[0], n=10), "object"))
            else:
                blob = _ellipsoid(centre, rot * size[:, None])
                arm_dir = -rot[1]
                if arm_dir[2] < 0.3:      # the other arm leaves sideways or away, never at the camera
                    arm_dir = _unit(arm_dir * np.array([1.0, 1.0, 0.0]) + np.array([0.0, 0.0, 0.5]))
                arm = _tube(centre + arm_dir * 70.0 * hand.scale, centre + arm_dir * 330.0 * hand.scale,
                            28.0 * hand.scale, 35.0 * hand.scale, n=8)
                out.append((merge_meshes([blob, arm]), "second_hand"))
            break
    return out


def build_scene(rng: np.random.Generator, hand_vertices: np.ndarray, joints: np.ndarray, intr: Intrinsics,
                view: str = "third_person", cfg: SceneConfig = SceneConfig(), right_hand: bool = True,
                forearm_mask: np.ndarray | None = None) -> Scene:
    """Scene meshes around one posed hand (see the module docstring), with their kinds.

    hand_vertices: (V, 3) mm, camera frame (the ``HandLayer`` mesh, forearm stub included);
    joints: (21, 3) mm; right_hand: False when the hand was mirrored into a left hand (the
    body's shoulder side follows it); forearm_mask: (V,) bool, default the template's.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
    if view not in VIEWS:
        raise ValueError(f"view: expected one of {VIEWS}, got {view!r}")
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    hand = summarize_hand(hand_vertices, joints, cfg.reference_hand_mm, forearm_mask)
    ego = view == "egocentric"
    grav = _gravity(rng, cfg.pitch_deg[int(ego)], cfg.roll_deg)
    side = 1.0 if right_hand else -1.0
    meshes: list[SceneMesh] = []
    kinds: list[str] = []
    empty = rng.random() < cfg.p_empty
    arm_end = hand.end
    r_arm = _arm_radius(arm_end)
    behind = hand.all_vertices      # the wall goes behind all of these (hand, forearm, person, arm)

    if not ego and not empty and rng.random() < cfg.p_body:
        body, shoulder = _person(rng, hand, grav, side, cfg)
        meshes += body
        kinds += ["body"] * len(body)
        behind = np.concatenate([behind, *[m.vertices for m in body]])
        if rng.random() < cfg.p_arm and _clear_of_palm(hand, arm_end.centre, shoulder, r_arm * 1.3,
                                                       cfg.palm_clearance_mm):
            meshes.append(upper_arm(arm_end, shoulder, r_arm * 1.3))
            kinds.append("upper_arm")
            behind = np.concatenate([behind, meshes[-1].vertices])
    elif rng.random() < cfg.p_arm:
        target = None
        for attempt in range(cfg.max_tries):
            if ego:
                shoulder = (side * rng.uniform(140.0, 200.0) * grav.right + rng.uniform(200.0, 300.0) * grav.down
                            - rng.uniform(0.0, 100.0) * grav.forward) * hand.scale
                direction = _unit(shoulder - arm_end.centre)
                if attempt == cfg.max_tries - 1:
                    direction = arm_end.direction       # last try: straight on
            else:
                w = rng.uniform([-0.2, 0.0, 0.0], [0.8, 1.0, 1.0])
                direction = _unit(arm_end.direction + w[0] * grav.forward - w[1] * grav.down
                                  + (w[2] - 0.5) * side * grav.right)
                if direction[2] < 0:
                    continue
            candidate = _exit_point(arm_end.centre, direction, intr, 1500.0)
            if _clear_of_palm(hand, arm_end.centre, candidate, r_arm * 1.3, cfg.palm_clearance_mm):
                target = candidate
                break
        if target is not None:
            meshes.append(upper_arm(arm_end, target, r_arm * 1.3))
            kinds.append("upper_arm")
            behind = np.concatenate([behind, meshes[-1].vertices])

    if not empty:
        if rng.random() < cfg.p_table[int(ego)]:
            offset = _plane_offset(grav.down, hand.all_vertices) + rng.uniform(*cfg.table_gap_mm)
            shift = grav.forward * rng.uniform(-300.0, 300.0) + grav.right * rng.uniform(-300.0, 300.0)
            table = _ground(hand, grav, offset, (rng.uniform(350.0, 700.0), rng.uniform(500.0, 1000.0)), shift)
            if table is not None:
                meshes.append(table)
                kinds.append("table")
        elif ego and rng.random() < cfg.p_floor:
            offset = max(rng.uniform(*cfg.floor_depth_mm), _plane_offset(grav.down, hand.all_vertices) + 100.0)
            floor = _ground(hand, grav, offset, (6000.0, 6000.0), np.zeros(3))
            if floor is not None:
                meshes.append(floor)
                kinds.append("floor")
        if rng.random() < cfg.p_wall[int(ego)]:
            wall = _wall(rng, hand, grav, behind, cfg)
            if wall is not None:
                meshes.append(wall)
                kinds.append("wall")
        second = rng.random() < cfg.p_second_hand
        clutter = rng.random() < cfg.p_clutter
        for obj, kind in _objects(rng, hand, cfg, second, clutter):
            meshes.append(obj)
            kinds.append(kind)
    return Scene(meshes, tuple(kinds))


def sample_scene(rng: np.random.Generator, hand_vertices: np.ndarray, joints: np.ndarray, intr: Intrinsics,
                 view: str = "third_person", cfg: SceneConfig = SceneConfig(),
                 right_hand: bool = True) -> list[SceneMesh]:
    """Meshes (vertices (V, 3) float32 mm camera frame, faces (F, 3) int32) to ray-cast with the hand.

    ``render.raycast([(hand_vertices, faces)] + sample_scene(...), intr)``; see :func:`build_scene`.
    """
    return build_scene(rng, hand_vertices, joints, intr, view, cfg, right_hand).meshes
