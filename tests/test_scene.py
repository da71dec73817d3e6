"""Scene meshes around the hand: visibility of the palm, walls behind, arm to the border, determinism, speed."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from calib import get_preset
from models.geometry import matrix_to_axis_angle
from models.hand_layer import HandLayer
from models.posebank import load_posebank
from models.poses import named_theta
from models.render import raycast
from models.scene import (
    SceneConfig, build_scene, forearm_end, forearm_vertex_mask, sample_scene, summarize_hand, upper_arm,
)

INTR = get_preset("sr305_640x480").intrinsics
N = 200


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@pytest.fixture(scope="module")
def layer() -> HandLayer:
    return HandLayer()


def _random_hands(layer: HandLayer, n: int, view: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bank poses, palm towards the camera (third person) or back of the hand seen from above
    with the forearm towards the image bottom (egocentric); 0.3-0.8 m away. vertices, joints in mm."""
    rng = np.random.default_rng(seed)
    bank = load_posebank().theta
    theta = bank[rng.integers(0, len(bank), n)].copy()
    rotations = []
    for i in range(n):
        if view == "third_person":
            r = _rz(rng.uniform(-1.0, 1.0)) @ _ry(rng.uniform(-1.0, 1.0)) @ _rx(rng.uniform(-0.5, 0.5)) @ _rx(math.pi)
            theta[i, 3:6] = (rng.uniform(-120, 120), rng.uniform(-80, 80), rng.uniform(350, 800))
        else:
            r = _rz(rng.uniform(-0.6, 0.6)) @ _rx(-rng.uniform(0.3, 1.2)) @ _ry(math.pi) @ _rx(math.pi)
            theta[i, 3:6] = (rng.uniform(-120, 120), rng.uniform(-60, 60), rng.uniform(300, 550))
        rotations.append(r)
    theta[:, 0:3] = matrix_to_axis_angle(torch.tensor(np.stack(rotations))).numpy()
    with torch.no_grad():
        out = layer(torch.tensor(theta, dtype=torch.float32))
    return out.vertices.numpy(), out.joints.numpy()


@pytest.fixture(scope="module")
def hands(layer):
    return {view: _random_hands(layer, N, view, seed=i) for i, view in enumerate(("third_person", "egocentric"))}


def _palm_pixel(joints: np.ndarray) -> tuple[int, int]:
    palm = joints[[0, 5, 9, 13, 17]].mean(0)
    return (int(round(INTR.fx * palm[0] / palm[2] + INTR.cx)), int(round(INTR.fy * palm[1] / palm[2] + INTR.cy)))


def _plane_of(quad: np.ndarray) -> tuple[np.ndarray, float]:
    n = np.cross(quad[1] - quad[0], quad[3] - quad[0])
    n /= np.linalg.norm(n)
    return n, float(n @ quad[0])


# ----------------------------------------------------------------------------- visibility


@pytest.mark.parametrize("view", ["third_person", "egocentric"])
def test_hand_is_nearest_at_the_palm_centre(layer, hands, view):
    vertices, joints = hands[view]
    faces = layer.faces.numpy()
    rng = np.random.default_rng(11)
    nearest, kinds = 0, set()
    for i in range(N):
        scene = build_scene(rng, vertices[i], joints[i], INTR, view)
        kinds.update(scene.kinds)
        u, v = _palm_pixel(joints[i])
        hit = raycast([(vertices[i], faces)] + list(scene.meshes), INTR.window(u, v, 1, 1))
        nearest += int(hit.geometry_id[0, 0] == 0)
    assert nearest / N >= 0.95
    expected = {"upper_arm", "wall", "table", "object"} | ({"body"} if view == "third_person" else {"floor"})
    assert expected <= kinds


def test_walls_and_bodies_are_behind_the_hand(hands):
    vertices, joints = hands["third_person"]
    rng = np.random.default_rng(3)
    cfg = SceneConfig(p_empty=0.0, p_wall=(1.0, 1.0), p_body=0.5)
    walls = bodies = 0
    for i in range(N):
        scene = build_scene(rng, vertices[i], joints[i], INTR, "third_person", cfg)
        hand = summarize_hand(vertices[i], joints[i])
        for mesh, kind in zip(scene.meshes, scene.kinds):
            if kind == "wall":
                walls += 1
                n, offset = _plane_of(mesh.vertices.astype(np.float64))
                if offset < 0:
                    n, offset = -n, -offset
                gap = offset - float((vertices[i].astype(np.float64) @ n).max())   # mm behind hand and forearm
                assert 200.0 - 1e-3 <= gap                                  # mm (more when a body is behind)
                for other, other_kind in zip(scene.meshes, scene.kinds):
                    if other_kind in ("body", "upper_arm"):
                        assert (other.vertices.astype(np.float64) @ n).max() <= offset - 50.0 + 1e-3  # mm
                assert offset > 0                                           # camera in front of the wall
            if kind == "body":
                bodies += 1
                assert mesh.vertices[:, 2].min() >= hand.far_z + cfg.margin_mm - 1e-3   # mm
    assert walls > 0.8 * N and bodies > 0.2 * N


def test_wall_gap_follows_config(hands):
    vertices, joints = hands["third_person"]
    rng = np.random.default_rng(4)
    cfg = SceneConfig(p_empty=0.0, p_wall=(1.0, 1.0), p_body=0.0, p_arm=0.0, p_table=(0.0, 0.0))
    gaps = []
    for i in range(50):
        scene = build_scene(rng, vertices[i], joints[i], INTR, "third_person", cfg)
        quad = scene.meshes[scene.kinds.index("wall")].vertices.astype(np.float64)
        n, offset = _plane_of(quad)
        if offset < 0:
            n, offset = -n, -offset
        gaps.append(offset - float((vertices[i].astype(np.float64) @ n).max()))   # forearm included
    assert 200.0 - 1e-3 <= min(gaps) and max(gaps) <= 1500.0 + 1e-3       # mm
    assert max(gaps) - min(gaps) > 600.0                                    # mm: spread over the range


def test_tables_are_below_the_hand_with_the_camera_above(hands):
    vertices, joints = hands["egocentric"]
    rng = np.random.default_rng(5)
    cfg = SceneConfig(p_empty=0.0, p_table=(1.0, 1.0))
    tables = 0
    for i in range(N // 2):
        scene = build_scene(rng, vertices[i], joints[i], INTR, "egocentric", cfg)
        for mesh, kind in zip(scene.meshes, scene.kinds):
            if kind == "table":
                tables += 1
                n, offset = _plane_of(mesh.vertices.astype(np.float64))
                side_hand = vertices[i].astype(np.float64) @ n - offset
                assert np.all(side_hand * -offset > 0)      # every hand vertex on the camera's side
    assert tables > 0.8 * (N // 2)


def test_objects_keep_clear_of_the_hand(hands):
    vertices, joints = hands["third_person"]
    rng = np.random.default_rng(6)
    cfg = SceneConfig(p_empty=0.0, p_clutter=1.0, max_objects=3, p_second_hand=0.3)
    count = 0
    for i in range(60):
        scene = build_scene(rng, vertices[i], joints[i], INTR, "third_person", cfg)
        for mesh, kind in zip(scene.meshes, scene.kinds):
            if kind in ("object", "second_hand"):
                count += 1
                centre = mesh.vertices.mean(0)
                radius = np.linalg.norm(mesh.vertices - centre, axis=1).max()
                clearance = np.linalg.norm(vertices[i] - centre, axis=1).min()
                assert clearance > 0.3 * radius                      # not buried in the hand
                size = 2 * np.abs(mesh.vertices - centre).max(0).max()
                assert kind == "second_hand" or size <= 150.0 * math.sqrt(3) + 1e-3   # mm
    assert count > 60


# ----------------------------------------------------------------------------- the arm


def test_forearm_end_and_upper_arm(layer):
    with torch.no_grad():
        out = layer(torch.tensor(named_theta("relaxed"))[None].float())
    vertices, joints = out.vertices[0].numpy(), out.joints[0].numpy()
    end = forearm_end(vertices, joints)
    length = np.linalg.norm(end.centre - joints[0])
    assert 190.0 < length < 230.0                           # mm: the 220 mm stub
    assert np.linalg.norm(end.direction) == pytest.approx(1.0, abs=1e-9)
    arm_part = vertices[forearm_vertex_mask()]
    assert np.all(np.linalg.norm(arm_part - joints[0], axis=1) <= length + 25.0)   # mm: the far end
    radius = np.linalg.norm(end.axes, axis=1).mean()
    assert 15.0 < radius < 45.0                             # mm: a forearm, not a leg
    shoulder = end.centre + np.array([50.0, -250.0, 150.0])
    mesh = upper_arm(end, shoulder, 50.0)
    # the mesh spans from the elbow (sphere around the end ring) to the shoulder
    assert np.linalg.norm(mesh.vertices - end.centre, axis=1).min() < radius + 1.0
    assert np.linalg.norm(mesh.vertices - shoulder, axis=1).min() < 1.0
    assert mesh.faces.max() < len(mesh.vertices)


def test_egocentric_arm_reaches_the_image_border(hands):
    vertices, joints = hands["egocentric"]
    rng = np.random.default_rng(8)
    cfg = SceneConfig(p_arm=1.0)
    arms = reach = 0
    for i in range(N):
        scene = build_scene(rng, vertices[i], joints[i], INTR, "egocentric", cfg)
        if "upper_arm" not in scene.kinds:
            continue
        arms += 1
        v = scene.meshes[scene.kinds.index("upper_arm")].vertices.astype(np.float64)
        z = np.maximum(v[:, 2], 1e-6)
        u = INTR.fx * v[:, 0] / z + INTR.cx
        w = INTR.fy * v[:, 1] / z + INTR.cy
        outside = (v[:, 2] <= 0) | (u < -0.5) | (u > INTR.width - 0.5) | (w < -0.5) | (w > INTR.height - 0.5)
        reach += int(outside.any())
    assert arms >= 0.9 * N
    assert reach >= 0.95 * arms


# ----------------------------------------------------------------------------- determinism, checks, speed


@pytest.mark.parametrize("view", ["third_person", "egocentric"])
def test_same_seed_same_meshes(hands, view):
    vertices, joints = hands[view]
    for i in range(20):
        a = build_scene(np.random.default_rng(i), vertices[i], joints[i], INTR, view)
        b = build_scene(np.random.default_rng(i), vertices[i], joints[i], INTR, view)
        assert a.kinds == b.kinds
        for ma, mb in zip(a.meshes, b.meshes):
            assert ma.vertices.dtype == np.float32 and ma.faces.dtype == np.int32
            assert ma.vertices.tobytes() == mb.vertices.tobytes() and ma.faces.tobytes() == mb.faces.tobytes()
    plain = sample_scene(np.random.default_rng(0), vertices[0], joints[0], INTR, view)
    assert [m.vertices.tobytes() for m in plain] == \
        [m.vertices.tobytes() for m in build_scene(np.random.default_rng(0), vertices[0], joints[0], INTR, view).meshes]


def test_bad_inputs_are_reported(hands):
    vertices, joints = hands["third_person"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="view"):
        sample_scene(rng, vertices[0], joints[0], INTR, "overhead")
    with pytest.raises(ValueError, match="hand vertices"):
        sample_scene(rng, vertices[0][:100], joints[0], INTR)
    with pytest.raises(ValueError, match="joints"):
        sample_scene(rng, vertices[0], joints[0][:14], INTR)
    with pytest.raises(TypeError, match="Generator"):
        sample_scene(0, vertices[0], joints[0], INTR)
    with pytest.raises(ValueError, match="probabilities"):
        SceneConfig(p_body=1.5)


@pytest.mark.parametrize("view", ["third_person", "egocentric"])
def test_construction_time_per_frame(hands, view):
    vertices, joints = hands[view]
    rng = np.random.default_rng(9)
    for i in range(20):                      # warm the caches
        build_scene(rng, vertices[i], joints[i], INTR, view)
    times = []
    for i in range(N):
        t0 = time.perf_counter()
        build_scene(rng, vertices[i], joints[i], INTR, view)
        times.append(time.perf_counter() - t0)
    median_ms = float(np.median(times)) * 1e3
    print(f"\nscene construction ({view}): median {median_ms:.2f} ms, p90 {np.percentile(times, 90) * 1e3:.2f} ms")
    assert median_ms < 5.0      # ms; about 0.5-1 ms on an idle development core


def test_merged_meshes_render_like_the_separate_ones():
    """The background is cast as one merged geometry: same depth as the meshes one by one."""
    from models.scene import SceneMesh, merge_meshes

    quad = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    near = SceneMesh(quad * [60, 60, 1] + [-40, 0, 500], faces)     # mm
    far = SceneMesh(quad * [400, 400, 1] + [0, 0, 900], faces)
    merged = merge_meshes([near, far])
    assert merged.vertices.shape == (8, 3) and merged.faces.tolist()[2:] == (faces + 4).tolist()
    intr = get_preset("sr305_640x480").intrinsics.window(250, 170, 140, 140)
    apart, together = raycast([near, far], intr, 1), raycast([merged], intr, 1)
    assert np.array_equal(apart.depth, together.depth)
    assert set(np.round(np.unique(apart.depth), 2)) == {500.0, 900.0}    # mm: both planes are in view
