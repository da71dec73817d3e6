"""Tests of models/handfind.py: hand detection and tracking on rendered and real depth frames.

Units: millimetres (mm) for points, depth and distances; pixels (px) in the image.
The target of the hand finder is the palm centre (mean of joints 0, 5, 9, 13, 17).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from calib import Intrinsics, get_preset, project
from models.handfind import HandDetection, HandFinderConfig, detection_agrees, find_hand, track_hand
from models.joints import palm_centre

DATA = Path(__file__).resolve().parent / "data" / "sr305"
SR305 = get_preset("sr305_640x480").intrinsics
POSES = ("rest", "relaxed", "fist", "point", "pinch", "spread", "victory")

# Bounds set from what the finder does on the 28 scenes of _scenes (COM to palm centre:
# median 13 mm, 90th percentile 27 mm, largest 43 mm, a child's fist 320 mm away whose centre
# slides down the forearm) and 280 more like them (median 14, p90 30, p95 34 mm). The largest
# errors: towards the fingers of large open hands, down the forearm of children's fists.
MAX_COM_ERROR_MM = 45.0
MEDIAN_COM_ERROR_MM = 20.0


def _rot(axis: int, angle: float) -> np.ndarray:
    """Rotation by ``angle`` rad about the camera's x (0), y (1) or z (2) axis."""
    c, s = math.cos(angle), math.sin(angle)
    return [np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])][axis]


def _wall(z_mm: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[-5e3, -5e3, z_mm], [5e3, -5e3, z_mm], [5e3, 5e3, z_mm], [-5e3, 5e3, z_mm]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


class Renderer:
    """Hand layer + ray caster; hands placed by their palm centre."""

    def __init__(self) -> None:
        from models.geometry import matrix_to_axis_angle
        from models.hand_layer import HandLayer

        self.layer = HandLayer(dtype=torch.float64)
        self.faces = self.layer.faces.numpy()
        part = np.load(Path(__file__).resolve().parents[1] / "models" / "assets" / "hand_model.npz")["part"]
        self.forearm = part == 6
        self.hand_faces = self.faces[~self.forearm[self.faces].all(1)]
        self.to_axis_angle = matrix_to_axis_angle

    def hand(self, pose: str, rotation: np.ndarray, palm_mm: np.ndarray, size: float = 0.0):
        from models.poses import named_theta

        aa = self.to_axis_angle(torch.from_numpy(rotation)[None])[0].numpy()
        theta = torch.from_numpy(named_theta(pose, rotation=tuple(aa), translation=(0.0, 0.0, 0.0)))[None]
        beta = torch.zeros(1, 7, dtype=torch.float64)
        beta[0, 2] = size  # beta "size": -1.4 a child's 120 mm hand, +1 a 230 mm adult hand
        out = self.layer(theta, None, beta)
        joints, verts = out.joints[0].numpy(), out.vertices[0].numpy()
        shift = np.asarray(palm_mm, dtype=np.float64) - palm_centre(joints)
        return joints + shift, verts + shift

    def arm(self, joints: np.ndarray, rotation: np.ndarray, size: float = 0.0, length: float = 900.0):
        """The rest of the arm: a cylinder continuing the mesh's forearm stub (which ends 220 mm
        from the wrist) ``length`` mm further, out of the image or back towards the body, as a
        real arm does; a stub ending in the air has no counterpart in real frames."""
        scale = 1.0 + 0.25 * size  # the hand model's beta "size" scales the forearm too
        axis = rotation @ np.array([0.0, -1.0, 0.0])  # the forearm runs along the hand's -y
        ring = np.linspace(0.0, 2.0 * math.pi, 17)[:-1]
        side = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
        side /= np.linalg.norm(side)
        up = np.cross(axis, side)
        circle = np.cos(ring)[:, None] * side + 0.68 * np.sin(ring)[:, None] * up  # flat like the stub
        start = joints[0] + 150.0 * scale * axis
        verts = np.concatenate([start + 33.0 * scale * circle, start + length * axis + 40.0 * scale * circle])
        faces = [f for k in range(16) for f in ((k, (k + 1) % 16, 16 + k), ((k + 1) % 16, 16 + (k + 1) % 16, 16 + k))]
        return verts, np.array(faces)

    def depth(self, meshes, intr: Intrinsics = SR305) -> np.ndarray:
        from models.render import raycast

        return raycast(meshes, intr).depth


def _scenes(renderer: Renderer):
    """Deterministic third-person scenes: 7 poses x {arm, hand alone, arm and a wall 400 mm
    behind, arm and a wall 120 mm behind} at 300-900 mm, hand sizes from a child's to a large
    adult's, the forearm level with the hand or going away from the camera, the hand (not
    necessarily the arm) inside the image."""
    rng = np.random.default_rng(2024)
    kinds = ("arm", "alone", "wall", "near_wall")
    distances = 300.0 + 600.0 * (rng.permutation(28) + rng.uniform(0.0, 1.0, 28)) / 28.0  # mm
    sizes = -1.4 + 2.4 * (rng.permutation(28) + rng.uniform(0.0, 1.0, 28)) / 28.0
    scenes = []
    for i in range(28):  # every pose with every kind once (28 = 7 x 4)
        pose, kind, z, size = POSES[i % 7], kinds[i % 4], distances[i], sizes[i]
        while True:
            r = _rot(2, rng.uniform(-1.6, 1.6)) @ _rot(0, rng.uniform(-0.7, 0.7)) \
                @ _rot(1, rng.uniform(-1.0, 1.0)) @ _rot(0, math.pi)
            if i % 5 == 4:
                r = r @ _rot(1, math.pi)  # the back of the hand towards the camera
            if (r @ np.array([0.0, -1.0, 0.0]))[2] < 0.0:
                continue  # forearm pointing at the camera: not the third-person set-up
            u, v = rng.uniform(0.25, 0.75) * 640, rng.uniform(0.25, 0.75) * 480
            palm = np.array([(u - SR305.cx) / SR305.fx * z, (v - SR305.cy) / SR305.fy * z, z])
            joints, verts = renderer.hand(pose, r, palm, size)
            uv = project(verts[~renderer.forearm], SR305)
            if uv[:, 0].min() > 2 and uv[:, 0].max() < 637 and uv[:, 1].min() > 2 and uv[:, 1].max() < 477:
                break
        meshes = [(verts, renderer.hand_faces)] if kind == "alone" else \
            [(verts, renderer.faces), renderer.arm(joints, r, size)]
        if kind == "wall":
            meshes.append(_wall(float(verts[:, 2].max()) + 400.0))
        if kind == "near_wall":
            meshes.append(_wall(float(verts[:, 2].max()) + 120.0))
        scenes.append((f"{pose}/{kind}/{z:.0f}mm/size{size:+.1f}", joints, renderer.depth(meshes)))
    return scenes


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture(scope="module")
def scenes(renderer):
    return _scenes(renderer)


def _error_mm(det: HandDetection | None, joints: np.ndarray) -> float:
    return math.inf if det is None else float(np.linalg.norm(det.com_mm - palm_centre(joints)))


# --------------------------------------------------------------------------- config and inputs


def test_config_validation():
    cfg = HandFinderConfig()
    assert cfg.cube_mm == 250.0 and cfg.slice_mm == 200.0
    assert HandFinderConfig(surface_offset_mm=0.0).surface_offset_mm == 0.0
    for bad in (dict(slice_mm=0.0), dict(max_depth_mm=50.0), dict(min_slice_mm=300.0), dict(grid_px=0),
                dict(min_area_mm2=1e6), dict(thin_core_mm2=2000.0),
                dict(hand_radius_mm=math.nan), dict(near_percentile=150.0),
                dict(surface_offset_mm=-1.0)):
        with pytest.raises(ValueError):
            HandFinderConfig(**bad)
    for bad in (dict(grid_px=4.0), dict(slice_mm="150"), dict(max_rounds=True)):
        with pytest.raises(TypeError):
            HandFinderConfig(**bad)


def test_input_validation():
    depth = np.zeros((480, 640), np.float32)
    with pytest.raises(TypeError, match="float32"):
        find_hand(np.zeros((480, 640), np.uint16), SR305)
    with pytest.raises(ValueError, match=r"\(480, 640\)"):
        find_hand(np.zeros((240, 320), np.float32), SR305)
    with pytest.raises(TypeError):
        find_hand(depth, SR305, cfg={"slice_mm": 100})
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        track_hand(depth, SR305, np.zeros((20, 3)))
    with pytest.raises(ValueError, match="finite"):
        track_hand(depth, SR305, np.full((21, 3), np.nan))


def test_palm_centre():
    joints = np.zeros((2, 21, 3))
    joints[:, [0, 5, 9, 13, 17]] = [[0, 0, 500], [10, -80, 500], [0, -85, 500], [-10, -80, 500], [-20, -70, 500]]
    np.testing.assert_allclose(palm_centre(joints), [[-4.0, -63.0, 500.0]] * 2, atol=1e-12)  # mm
    with pytest.raises(ValueError):
        palm_centre(np.zeros((14, 3)))


# --------------------------------------------------------------------------- no hand, bad values


@pytest.mark.parametrize("name", ["zeros", "far_wall", "near_wall", "nan", "inf", "negative", "speckle", "tiny_blob"])
def test_no_hand_gives_none(name: str):
    rng = np.random.default_rng(0)
    depth = np.zeros((480, 640), np.float32)
    if name == "far_wall":
        depth[:] = 2000.0  # beyond max_depth_mm
    elif name == "near_wall":
        depth[:] = 800.0  # one surface filling the frame: far too large for a hand
    elif name == "nan":
        depth[:] = np.nan
    elif name == "inf":
        depth[:] = np.inf
    elif name == "negative":
        depth[:] = -500.0
    elif name == "speckle":
        # Isolated flying pixels in front of a far background.
        depth[:] = 2500.0
        depth.flat[rng.choice(depth.size, 3000, replace=False)] = rng.uniform(300.0, 900.0, 3000)
    elif name == "tiny_blob":
        depth[230:250, 310:330] = 500.0  # 21 mm x 21 mm at 500 mm: smaller than any hand
    assert find_hand(depth, SR305) is None
    assert track_hand(depth, SR305, np.tile([0.0, 0.0, 600.0], (21, 1))) is None


def test_nan_inf_and_noise_on_a_hand_frame(scenes):
    name, joints, depth = scenes[1]
    rng = np.random.default_rng(1)
    noisy = depth.copy()
    idx = rng.choice(noisy.size, 20000, replace=False)
    noisy.flat[idx[:8000]] = np.nan
    noisy.flat[idx[8000:14000]] = np.inf
    noisy.flat[idx[14000:17000]] = -np.inf
    noisy.flat[idx[17000:]] = rng.uniform(50.0, 3000.0, 3000)  # flying pixels, some nearer than the hand
    det = find_hand(noisy, SR305)
    assert det is not None, name
    assert _error_mm(det, joints) < MAX_COM_ERROR_MM, name


# --------------------------------------------------------------------------- rendered hands


def test_synthetic_com_near_palm_centre(scenes):
    errors = []
    for name, joints, depth in scenes:
        det = find_hand(depth, SR305)
        assert det is not None, f"no hand found in {name}"
        assert det.method == "detect" and det.num_pixels > 500
        assert det.com_mm.shape == (3,) and det.com_mm.dtype == np.float64
        np.testing.assert_allclose(det.com_uvd, project(det.com_mm, SR305), atol=1e-9)
        errors.append(_error_mm(det, joints))
        assert errors[-1] < MAX_COM_ERROR_MM, f"{name}: COM {errors[-1]:.1f} mm from the palm centre"
    assert np.median(errors) < MEDIAN_COM_ERROR_MM  # mm


def test_forearm_stub_of_the_mesh(renderer):
    """The mesh as it is: its 220 mm forearm stub ends in the air (no entry), and the end
    nearer to the camera is the hand when the forearm goes away from the camera (by 20-60°)."""
    rng = np.random.default_rng(7)
    for i, pose in enumerate(POSES):
        while True:
            r = _rot(2, rng.uniform(-1.6, 1.6)) @ _rot(0, rng.uniform(-0.9, 0.9)) \
                @ _rot(1, rng.uniform(-1.0, 1.0)) @ _rot(0, math.pi)
            if 0.35 < (r @ np.array([0.0, -1.0, 0.0]))[2] < 0.85:
                break
        palm = np.array([rng.uniform(-80.0, 80.0), rng.uniform(-60.0, 60.0), 400.0 + 60.0 * i])
        joints, verts = renderer.hand(pose, r, palm, rng.uniform(-1.0, 1.0))
        det = find_hand(renderer.depth([(verts, renderer.faces)]), SR305)
        assert _error_mm(det, joints) < MAX_COM_ERROR_MM, pose


def test_mirrored_frames(scenes):
    """A left hand is a mirrored right hand: flip the image and the principal point."""
    mirror = Intrinsics(SR305.fx, SR305.fy, SR305.width - 1 - SR305.cx, SR305.cy, SR305.width,
                        SR305.height, SR305.depth_scale)
    flip = np.array([-1.0, 1.0, 1.0])
    for name, joints, depth in scenes[::3]:
        det = find_hand(depth, SR305)
        det_m = find_hand(np.ascontiguousarray(depth[:, ::-1]), mirror)
        assert det_m is not None, name
        assert _error_mm(det_m, joints * flip) < MAX_COM_ERROR_MM, name
        # The same hand, sampled on a grid shifted by a pixel or two: the same centre.
        assert np.linalg.norm(det_m.com_mm - det.com_mm * flip) < 10.0, name  # mm


def test_lens_distortion(scenes):
    """With a lens model the pixel rays come from calib.backproject: a mild radial distortion
    (about 1 px at the hand) moves the centre by about a millimetre."""
    distorted = Intrinsics(SR305.fx, SR305.fy, SR305.cx, SR305.cy, SR305.width, SR305.height,
                           SR305.depth_scale, "brown_conrady", (0.02, 0.0, 0.0, 0.0, 0.0))
    for name, joints, depth in scenes[:4]:
        det, det_d = find_hand(depth, SR305), find_hand(depth, distorted)
        assert det_d is not None, name
        assert np.linalg.norm(det_d.com_mm - det.com_mm) < 5.0, name  # mm
        np.testing.assert_allclose(det_d.com_uvd, project(det_d.com_mm, distorted), atol=1e-6)
        tracked = track_hand(depth, distorted, joints)
        assert tracked is not None and np.linalg.norm(tracked.com_mm - det.com_mm) < 10.0, name  # mm


def test_track_follows_a_hand_moved_by_20_mm(renderer):
    r = _rot(2, 0.3) @ _rot(0, math.pi)
    palm = np.array([-30.0, 10.0, 520.0])
    joints, verts = renderer.hand("relaxed", r, palm)
    move = np.array([20.0 / math.sqrt(2.0), -20.0 / math.sqrt(2.0), 0.0])  # 20 mm
    moved = renderer.depth([(verts + move, renderer.faces), _wall(900.0)])
    det = track_hand(moved, SR305, joints)
    assert det is not None and det.method == "track"
    assert _error_mm(det, joints + move) < MAX_COM_ERROR_MM
    # Tracking and detecting the moved hand agree, and the centre moved with the hand.
    found = find_hand(moved, SR305)
    assert np.linalg.norm(det.com_mm - found.com_mm) < 5.0  # mm
    before = track_hand(renderer.depth([(verts, renderer.faces), _wall(900.0)]), SR305, joints)
    np.testing.assert_allclose(det.com_mm - before.com_mm, move, atol=4.0)  # mm
    # Lost: the hand gone 300 mm to the side, or an empty frame.
    gone = renderer.depth([(verts + np.array([300.0, 0.0, 0.0]), renderer.faces)])
    assert track_hand(gone, SR305, joints) is None
    assert track_hand(np.zeros((480, 640), np.float32), SR305, joints) is None


# --------------------------------------------------------------------------- head-mounted views and dropouts


def _head_mounted_scenes(renderer: Renderer):
    """A head-mounted camera: the forearm comes towards the camera from the hand and the arm
    leaves through the bottom of the image (the shoulder is just below the camera), a table
    300 mm behind the palm; 7 poses at 300-550 mm."""
    rng = np.random.default_rng(11)
    scenes = []
    for i, pose in enumerate(POSES):
        while True:
            r = _rot(2, rng.uniform(-0.6, 0.6)) @ _rot(0, rng.uniform(-0.5, 0.5)) \
                @ _rot(1, rng.uniform(-0.8, 0.8)) @ _rot(0, math.pi)
            axis = r @ np.array([0.0, -1.0, 0.0])  # where the forearm goes
            if axis[2] < -0.4 and axis[1] > 0.3:  # towards the camera, down the image
                break
        z = 300.0 + 250.0 * i / 6.0
        palm = np.array([rng.uniform(-60.0, 60.0), rng.uniform(-80.0, 0.0), z])
        joints, verts = renderer.hand(pose, r, palm, rng.uniform(-0.5, 0.8))
        meshes = [(verts, renderer.faces), renderer.arm(joints, r, length=600.0), _wall(z + 300.0)]
        scenes.append((f"{pose}/head-mounted/{z:.0f}mm", joints, renderer.depth(meshes)))
    return scenes


def test_head_mounted_arm_reaching_away(renderer):
    """The forearm is nearer to the camera than the hand: the nearest slice holds only arm,
    and the hand is the far end of the arm's surface (stage 2b), not the slice's free end."""
    for name, joints, depth in _head_mounted_scenes(renderer):
        det = find_hand(depth, SR305)
        assert det is not None, name
        assert _error_mm(det, joints) < MAX_COM_ERROR_MM, f"{name}: COM {_error_mm(det, joints):.0f} mm from the palm"


def test_dropouts_on_the_hand(scenes):
    """A third of the pixels without depth (sensor dropouts all over, as on a dark or
    glancing surface): the pinholes are closed before segmenting and the hand is still found."""
    rng = np.random.default_rng(5)
    errors = []
    for name, joints, depth in scenes:
        speckled = depth.copy()
        speckled[rng.random(depth.shape) < 0.33] = 0.0
        errors.append(_error_mm(find_hand(speckled, SR305), joints))
        assert errors[-1] < MAX_COM_ERROR_MM, f"{name}: COM {errors[-1]:.0f} mm from the palm"
    assert np.median(errors) < MEDIAN_COM_ERROR_MM  # mm


# --------------------------------------------------------------------------- real frames


def _sr305_frames():
    centres = json.loads((DATA / "hand_centres.json").read_text())
    for name, uv in centres["palm_centre_uv"].items():
        raw = cv2.imread(str(DATA / name), cv2.IMREAD_UNCHANGED)
        assert raw is not None and raw.dtype == np.uint16 and raw.shape == (480, 640), name
        yield name, raw.astype(np.float32) * np.float32(centres["depth_unit_mm"]), np.array(uv)


def test_sr305_real_frames():
    """Intel RealSense SR305 frames (MIT, tests/data/sr305/LICENSE): the hand is the nearest
    object, a person stands behind it, the forearm enters from the border or the body."""
    intr = Intrinsics(476.007, 476.007, 313.683, 242.755, 640, 480, 0.000125, name="sr305")
    errors = []
    for name, depth, uv in _sr305_frames():
        det = find_hand(depth, intr)
        assert det is not None, name
        errors.append(float(np.hypot(*(det.com_uvd[:2] - uv))))
        # Hand-annotated palm centres are good to about 10 px; at 500-660 mm 25 px is 26-35 mm.
        assert errors[-1] < 25.0, f"{name}: COM {errors[-1]:.1f} px from the annotated palm centre"
        # The crop centre is on the hand: a hand pixel within 10 px, at the hand's depth.
        u, v = np.round(det.com_uvd[:2]).astype(int)
        window = depth[v - 10:v + 11, u - 10:u + 11]
        near = window[(window > 0) & (np.abs(window - det.com_uvd[2]) < 60.0)]
        assert near.size > 50, name
    assert len(errors) == 19
    assert np.median(errors) < 18.0  # px


def test_detection_agrees_within_half_a_cube():
    """The app's rule (shared by models.estimator and models.synth): a detection within half
    a crop cube (125 mm of 250) of the previous hand is the same hand."""
    previous = np.array([10.0, -20.0, 500.0])
    near = HandDetection(previous + np.array([0.0, 124.0, 0.0]), np.zeros(3), 100, "detect")
    far = HandDetection(previous + np.array([75.0, 0.0, 101.0]), np.zeros(3), 100, "detect")  # 125.8 mm
    assert detection_agrees(near, previous, 250.0)
    assert not detection_agrees(far, previous, 250.0)
    assert not detection_agrees(None, previous, 250.0)


def _box(centre: np.ndarray, edge_mm: float) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
    return corners * edge_mm / 2.0 + centre, np.array(faces)


def test_the_network_tells_an_open_hand_from_a_box(renderer):
    """A 70 mm box floating 40 mm nearer than an open hand, beside it: the finder alone takes
    the box (it sticks out of nothing, the hand out of its arm); the app's estimator, with no
    hand tracked, checks both candidates with the shipped network and keeps the hand where
    the learnt score (models.handcheck) rates it higher: in at least two of four open poses
    (which ones change with the weights; without the check, none). A fist and a box are alike
    to it."""
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.handfind import find_hands

    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.pt", "cpu")
    kept = []
    for k, pose in enumerate(("relaxed", "spread", "victory", "rest")):
        r = _rot(2, 0.3 * (k - 2)) @ _rot(0, math.pi)
        palm = np.array([-60.0, 20.0, 500.0 + 40.0 * k])
        joints, verts = renderer.hand(pose, r, palm)
        depth = renderer.depth([(verts, renderer.faces), renderer.arm(joints, r),
                                _box(palm + np.array([150.0, -30.0, -40.0]), 70.0), _wall(900.0)])
        assert _error_mm(find_hand(depth, SR305), joints) > 100.0, pose        # the box
        found = find_hands(depth, SR305)       # the box, the hand's blob, other starting points
        assert len(found) >= 2 and np.linalg.norm(found[1].com_mm - palm_centre(joints)) < MAX_COM_ERROR_MM, pose
        alone = Estimator(predictor, EstimatorConfig(track=False, candidates=1))(depth, SR305)
        checked = Estimator(predictor, EstimatorConfig(track=False))(depth, SR305)
        assert np.linalg.norm(alone.com_mm - palm_centre(joints)) > 100.0, pose
        if np.linalg.norm(checked.com_mm - palm_centre(joints)) < MAX_COM_ERROR_MM:
            kept.append(pose)
            assert np.linalg.norm(checked.joints_mm - joints, axis=1).mean() < 40.0, pose   # mm
    assert len(kept) >= 2, kept


def test_find_hands_starts_with_find_hands_answer(scenes):
    from models.handfind import find_hands

    for name, joints, depth in scenes[::4]:
        found = find_hands(depth, SR305, limit=3)
        assert 1 <= len(found) <= 3, name
        np.testing.assert_array_equal(found[0].com_mm, find_hand(depth, SR305).com_mm)
        for a in range(len(found)):   # distinct objects: centres more than hand_radius_mm apart
            for b in range(a):
                assert np.linalg.norm(found[a].com_mm - found[b].com_mm) > HandFinderConfig().hand_radius_mm
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            find_hands(scenes[0][2], SR305, limit=bad)


def _ball(centre: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    theta, phi = np.meshgrid(np.linspace(0.0, math.pi, 13), np.linspace(0.0, 2.0 * math.pi, 25)[:-1], indexing="ij")
    unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1).reshape(-1, 3)
    faces = []
    for i in range(12):
        for j in range(24):
            p, q, r, s = i * 24 + j, i * 24 + (j + 1) % 24, (i + 1) * 24 + j, (i + 1) * 24 + (j + 1) % 24
            faces += [(p, r, q), (q, r, s)]
    return unit * radius_mm + centre, np.array(faces)


def test_a_hand_that_jumped_is_not_lost_to_what_it_left(renderer):
    """Frame 1: an open hand at A. Frame 2: the hand 300 mm away at B, a ball behind where it
    was. The detection (B) disagrees with the tracked hand, and tracking from A lands on the
    ball; the network check takes the hand. Without it (candidates=1) the tracker keeps the
    ball. (A box's flat face passes for a flat hand about as well as the hand: the tracked
    object then stays, as it is meant to when in doubt; not asserted.)"""
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.pt", "cpu")
    a, b = np.array([-150.0, 0.0, 560.0]), np.array([150.0, 0.0, 520.0])
    for pose in ("spread", "rest"):
        r = _rot(2, 0.2) @ _rot(0, math.pi)
        joints_a, verts_a = renderer.hand(pose, r, a)
        joints_b, verts_b = renderer.hand(pose, r, b)
        first = renderer.depth([(verts_a, renderer.faces), renderer.arm(joints_a, r), _wall(900.0)])
        second = renderer.depth([(verts_b, renderer.faces), renderer.arm(joints_b, r),
                                 _ball(a + np.array([0.0, 0.0, 100.0]), 50.0), _wall(900.0)])
        for candidates, expected in ((3, b), (1, a + np.array([0.0, 0.0, 100.0]))):
            est = Estimator(predictor, EstimatorConfig(candidates=candidates))
            assert np.linalg.norm(est(first, SR305).com_mm - a) < MAX_COM_ERROR_MM
            e = est(second, SR305)
            assert np.linalg.norm(e.com_mm - expected) < 70.0, (pose, candidates, e.com_mm)  # mm


def test_sr305_real_frames_through_the_estimators_candidate_check():
    """The real SR305 frames, each on its own through the app's estimator with the shipped
    network checking the finder's candidates (a corner of the torso at the image border is one
    in 13 of the 19): the final crop is still on the hand, as close to the annotated palm as
    test_sr305_real_frames asks of the finder (a 3 mm margin took the torso in one frame)."""
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    intr = Intrinsics(476.007, 476.007, 313.683, 242.755, 640, 480, 0.000125, name="sr305")
    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    for name, depth, uv in _sr305_frames():
        e = Estimator(predictor, EstimatorConfig(track=False, recrop=False))(depth, intr)
        assert e.hand_found, name
        error_px = float(np.hypot(*(project(e.com_mm, intr)[:2] - uv)))
        assert error_px < 25.0, f"{name}: crop centre {error_px:.0f} px from the annotated palm centre"


def test_spare_starting_points_find_the_hand_where_the_arms_entry_was_misread():
    """Four whole validation frames (``data/synth_frames/val`` numbers 746, 823, 957 and 995,
    depth rounded to mm, in tests/data/handfind_spare_seeds.npz) where the finder's free end
    is not the hand: its answer lies 150-470 mm from the palm, and before the spare starting
    points no candidate lay within 60 mm of it. The spares (the blob's nearest part, the ends
    of its long axis) give one within MAX_COM_ERROR_MM in every frame, and the app's
    estimator, checking the candidates with the shipped network, keeps it in at least two
    (three with the step-70,000 model; over all 1000 validation frames the mean went
    42.4 -> 38.4 mm)."""
    from models.data import intrinsics_from_arrays
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.handfind import find_hands

    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    kept = 0
    with np.load(Path(__file__).parent / "data" / "handfind_spare_seeds.npz") as z:
        for k in range(len(z["index"])):
            intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
            depth, joints = z[f"depth_mm_{k}"].astype(np.float32), z["joints_mm"][k].astype(np.float64)
            palm = palm_centre(joints)
            assert np.linalg.norm(find_hand(depth, intr).com_mm - palm) > 100.0          # mm
            found = find_hands(depth, intr, limit=4)
            assert min(np.linalg.norm(f.com_mm - palm) for f in found) < MAX_COM_ERROR_MM, int(z["index"][k])
            e = Estimator(predictor, EstimatorConfig(track=False))(depth, intr)
            kept += bool(np.linalg.norm(e.joints_mm - joints, axis=1).mean() < 40.0)      # mm
    assert kept >= 2, kept


def test_a_hand_seen_edge_on_is_a_hand_sized_object():
    """Five whole validation frames (``data/synth_frames/val`` numbers 23, 26, 38, 462 and 834,
    depth rounded to mm, in tests/data/handfind_thin_hands.npz) where the hand is the nearest
    object but seen edge-on: 3-5k mm² of surface whose core (samples with all eight
    neighbours in the slice) is 900-1100 mm². Without thin components (core threshold 1200
    mm² only, the finder before) it did not count as an object, and every candidate lay
    270-410 mm from the palm, on what was behind it; now the finder's first is the hand
    (within 60 mm of the palm), and so is the app's estimate. The scene shrunk into the
    sensor's minimum range (``test_robustness``) and the SR305 frame with noise at its corner
    (``test_sr305_real_frames``) check the other side: a thin object too small for a hand,
    and one that must not take the first place from a hand."""
    from models.data import intrinsics_from_arrays
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.handfind import find_hands

    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    before = HandFinderConfig(thin_core_mm2=1200.0)  # no thin components
    with np.load(Path(__file__).parent / "data" / "handfind_thin_hands.npz") as z:
        for k in range(len(z["index"])):
            intr = intrinsics_from_arrays(z["intrinsics"][k], z["distortion"][k], z["coeffs"][k])
            depth, joints = z[f"depth_mm_{k}"].astype(np.float32), z["joints_mm"][k].astype(np.float64)
            palm = palm_centre(joints)
            frame = int(z["index"][k])
            assert all(np.linalg.norm(f.com_mm - palm) > 250.0 for f in find_hands(depth, intr, before, 4)), frame
            assert np.linalg.norm(find_hand(depth, intr).com_mm - palm) < 60.0, frame          # mm
            e = Estimator(predictor, EstimatorConfig(track=False))(depth, intr)
            assert np.linalg.norm(e.joints_mm - joints, axis=1).mean() < 40.0, frame           # mm
