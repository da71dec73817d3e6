"""Tests of models/crop.py: the hand crop contract shared by the data generator and the app.

Units: millimetres (mm) for points, depth and the cube; pixels (px) in the image and the
patch; normalised depth and joints are dimensionless (the cube spans [-1, 1]).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib import Intrinsics, get_preset, project
from models.crop import (
    BACKGROUND, FRONT, Crop, CropConfig, crop_depth, crop_window, denormalize_joints,
    normalize_joints, points_from_crop_uvd, uvd_in_crop,
)

PINHOLE = Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480, 0.001)
SR305 = get_preset("sr305_640x480").intrinsics


def plane(intr: Intrinsics, z_mm: float) -> np.ndarray:
    return np.full((intr.height, intr.width), z_mm, np.float32)


# --------------------------------------------------------------------------- config and inputs


def test_config_defaults_and_validation():
    cfg = CropConfig()
    assert (cfg.cube_mm, cfg.size) == (250.0, 96)
    for bad in (dict(cube_mm=0.0), dict(cube_mm=-1.0), dict(cube_mm=math.inf), dict(size=1)):
        with pytest.raises(ValueError):
            CropConfig(**bad)
    for bad in (dict(cube_mm="250"), dict(size=96.0), dict(size=True)):
        with pytest.raises(TypeError):
            CropConfig(**bad)


def test_crop_depth_rejects_bad_inputs():
    com = np.array([0.0, 0.0, 500.0])
    with pytest.raises(TypeError, match="float32"):
        crop_depth(np.zeros((480, 640), np.uint16), PINHOLE, com)
    with pytest.raises(TypeError):
        crop_depth(np.zeros((480, 640), np.float32).tolist(), PINHOLE, com)
    with pytest.raises(ValueError, match=r"\(480, 640\)"):
        crop_depth(np.zeros((240, 320), np.float32), PINHOLE, com)
    with pytest.raises(ValueError, match="z > 0"):
        crop_depth(plane(PINHOLE, 500.0), PINHOLE, np.array([0.0, 0.0, -10.0]))
    with pytest.raises(ValueError, match="finite"):
        crop_depth(plane(PINHOLE, 500.0), PINHOLE, np.array([np.nan, 0.0, 500.0]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        crop_depth(plane(PINHOLE, 500.0), PINHOLE, np.zeros(2))
    with pytest.raises(TypeError):
        crop_depth(plane(PINHOLE, 500.0), PINHOLE, com, cfg=dict(size=96))


# --------------------------------------------------------------------------- hand-computed cases


def test_window_hand_computed():
    # COM on the optical axis at 500 mm: half-window = 125 mm * 500 px / 500 mm = 125 px,
    # so 250 image px -> 100 patch px (scale 0.4) and the COM pixel (320, 240) -> (49.5, 49.5).
    m = crop_window(np.array([0.0, 0.0, 500.0]), PINHOLE, CropConfig(250.0, 100))
    expected = np.array([[0.4, 0.0, 49.5 - 0.4 * 320.0], [0.0, 0.4, 49.5 - 0.4 * 240.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(m, expected, atol=1e-12)
    # The window's outer edges (pixel centres +- half a pixel) land on the patch's edges.
    edges = m @ np.array([[320.0 - 125.0, 240.0 - 125.0, 1.0], [320.0 + 125.0, 240.0 + 125.0, 1.0]]).T
    np.testing.assert_allclose(edges[:2].T, [[-0.5, -0.5], [99.5, 99.5]], atol=1e-12)  # px


def test_flat_plane_fills_patch_with_its_normalised_depth():
    com = np.array([10.0, -20.0, 520.0])
    crop = crop_depth(plane(PINHOLE, 500.0), PINHOLE, com, CropConfig(250.0, 96))
    assert isinstance(crop, Crop)
    assert crop.patch.shape == (96, 96) and crop.patch.dtype == np.float32
    np.testing.assert_allclose(crop.patch, (500.0 - 520.0) / 125.0, atol=1e-6)  # dimensionless
    # Any memory layout (a mirrored view has negative strides).
    flipped = crop_depth(plane(PINHOLE, 500.0)[:, ::-1], PINHOLE, com, CropConfig(250.0, 96))
    np.testing.assert_array_equal(flipped.patch, crop.patch)
    np.testing.assert_array_equal(crop.com_mm, com)
    assert crop.cube_mm == 250.0 and crop.crop_from_image.shape == (3, 3)


def test_single_point_lands_at_predicted_patch_pixel():
    cfg = CropConfig(250.0, 96)
    com = np.array([30.0, 15.0, 600.0])
    point = np.array([61.0, -22.0, 640.0])  # mm, inside the cube
    u, v, _ = project(point, PINHOLE)
    # A 3 x 3 pixel dot around the point: the patch (0.46 patch px per image px) samples
    # every second or third image pixel, so a single pixel could fall between its samples.
    depth = np.zeros((480, 640), np.float32)
    ui, vi = int(round(u)), int(round(v))
    depth[vi - 1:vi + 2, ui - 1:ui + 2] = 640.0
    crop = crop_depth(depth, PINHOLE, com, cfg)
    # By hand: scale = 96 / (250 * 500 / 600) patch px per image px, the COM pixel at
    # (500 * 30 / 600 + 320, 500 * 15 / 600 + 240) maps to the patch centre (47.5, 47.5).
    scale = 96.0 / (250.0 * 500.0 / 600.0)
    u_com, v_com = 500.0 * 30.0 / 600.0 + 320.0, 500.0 * 15.0 / 600.0 + 240.0
    pu = 47.5 + scale * (ui - u_com)
    pv = 47.5 + scale * (vi - v_com)
    hits = np.argwhere(crop.patch < BACKGROUND)
    assert 1 <= len(hits) <= 4
    # Every patch pixel showing the dot is within 1.5 image px (the dot's half-size plus the
    # nearest-neighbour rounding) of the predicted position.
    assert np.all(np.abs(hits[:, 1] - pu) <= 1.5 * scale + 0.5)  # px
    assert np.all(np.abs(hits[:, 0] - pv) <= 1.5 * scale + 0.5)  # px
    np.testing.assert_allclose(crop.patch[tuple(hits.T)], (640.0 - 600.0) / 125.0, atol=1e-6)
    # uvd_in_crop agrees with the hand computation for the point at the dot's centre pixel.
    centre = np.array([(ui - 320.0) * 640.0 / 500.0, (vi - 240.0) * 640.0 / 500.0, 640.0])  # mm
    np.testing.assert_allclose(uvd_in_crop(centre, crop, PINHOLE), [pu, pv, 0.32], atol=1e-9)


def test_background_front_and_invalid_values():
    com = np.array([0.0, 0.0, 500.0])
    depth = plane(PINHOLE, 500.0)
    depth[230:240, 300:310] = 300.0    # in front of the cube (front face at 375 mm)
    depth[240:250, 300:310] = 700.0    # behind it (back face at 625 mm)
    depth[230:240, 330:340] = np.nan
    depth[240:250, 330:340] = np.inf
    depth[250:260, 330:340] = -np.inf
    depth[260:270, 330:340] = 0.0
    m = crop_window(com, PINHOLE)
    patch = crop_depth(depth, PINHOLE, com).patch
    assert np.all(np.isfinite(patch)) and patch.min() >= -1.0 and patch.max() <= 1.0

    def at(u: float, v: float) -> float:
        pu, pv, _ = m @ np.array([u, v, 1.0])
        return float(patch[int(round(pv)), int(round(pu))])

    assert at(305, 235) == FRONT
    assert at(305, 245) == BACKGROUND
    for v in (235, 245, 255, 265):
        assert at(335, v) == BACKGROUND
    assert at(200 + 120, 240 + 40) == pytest.approx(0.0, abs=1e-6)


def test_window_partly_outside_the_image_is_padded_as_background():
    cfg = CropConfig(250.0, 96)
    # COM projecting onto the top-left corner pixel: three quarters of the window lie outside.
    com = np.array([(0.0 - PINHOLE.cx) * 500.0 / PINHOLE.fx, (0.0 - PINHOLE.cy) * 500.0 / PINHOLE.fy, 500.0])
    patch = crop_depth(plane(PINHOLE, 480.0), PINHOLE, com, cfg).patch
    inside = patch < BACKGROUND
    # The image (u, v >= -0.5) covers patch columns/rows from 47.5 + 0.5 * scale onwards.
    assert not inside[:47, :].any() and not inside[:, :47].any()
    assert inside[49:, 49:].all()
    np.testing.assert_allclose(patch[inside], (480.0 - 500.0) / 125.0, atol=1e-6)
    assert inside.mean() == pytest.approx(0.25, abs=0.02)


# --------------------------------------------------------------------------- joints


@pytest.mark.parametrize("batch", [(), (1,), (4,), (2, 3)])
@pytest.mark.parametrize("k", [21, 14])
def test_normalize_round_trip_numpy_and_torch(batch: tuple[int, ...], k: int):
    rng = np.random.default_rng(7)
    joints = rng.normal(0.0, 80.0, batch + (k, 3)) + np.array([0.0, 0.0, 600.0])
    com = rng.normal(0.0, 20.0, batch + (3,)) + np.array([0.0, 0.0, 600.0])
    n = normalize_joints(joints, com, 250.0)
    assert n.shape == joints.shape and n.dtype == np.float64
    np.testing.assert_allclose(n, (joints - com[..., None, :]) / 125.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(denormalize_joints(n, com, 250.0), joints, rtol=0, atol=1e-12)  # mm
    jt, ct = torch.from_numpy(joints), torch.from_numpy(com)
    nt = normalize_joints(jt, ct, 250.0)
    assert isinstance(nt, torch.Tensor) and nt.dtype == torch.float64
    np.testing.assert_allclose(nt.numpy(), n, rtol=0, atol=1e-15)
    np.testing.assert_allclose(denormalize_joints(nt, ct, 250.0).numpy(), joints, rtol=0, atol=1e-12)  # mm


def test_normalize_gradcheck_and_errors():
    joints = torch.randn(2, 21, 3, dtype=torch.float64, requires_grad=True)
    com = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda j, c: normalize_joints(j, c, 250.0), (joints, com))
    with pytest.raises(TypeError):
        normalize_joints(np.zeros((21, 3)), torch.zeros(3), 250.0)
    with pytest.raises(ValueError):
        normalize_joints(np.zeros((21, 2)), np.zeros(2), 250.0)
    with pytest.raises(ValueError):
        normalize_joints(np.zeros((2, 21, 3)), np.zeros(3), 250.0)
    with pytest.raises(ValueError):
        normalize_joints(np.zeros((21, 3)), np.zeros(3), 0.0)


def test_uvd_in_crop_round_trip_numpy_and_torch():
    com = np.array([-40.0, 25.0, 450.0])
    crop = crop_depth(plane(SR305, 450.0), SR305, com)
    rng = np.random.default_rng(3)
    points = com + rng.uniform(-120.0, 120.0, (5, 21, 3))
    uvd = uvd_in_crop(points, crop, SR305)
    assert uvd.shape == (5, 21, 3)
    np.testing.assert_allclose(uvd[..., 2], (points[..., 2] - 450.0) / 125.0, atol=1e-12)
    np.testing.assert_allclose(points_from_crop_uvd(uvd, crop, SR305), points, atol=1e-9)  # mm
    uvd_t = uvd_in_crop(torch.from_numpy(points), crop, SR305)
    np.testing.assert_allclose(uvd_t.numpy(), uvd, atol=1e-9)
    np.testing.assert_allclose(points_from_crop_uvd(uvd_t, crop, SR305).numpy(), points, atol=1e-9)  # mm
    # The COM itself sits at the patch centre with d = 0.
    np.testing.assert_allclose(uvd_in_crop(com, crop, SR305), [47.5, 47.5, 0.0], atol=1e-9)


# --------------------------------------------------------------------------- a rendered hand


@pytest.fixture(scope="module")
def rendered_hand():
    from models.hand_layer import HandLayer
    from models.poses import named_theta
    from models.render import raycast

    layer = HandLayer(dtype=torch.float64)
    theta = torch.from_numpy(named_theta("spread", translation=(20.0, 40.0, 480.0)))[None]
    out = layer(theta)
    joints = out.joints[0].numpy()
    depth = raycast([(out.vertices[0].numpy(), layer.faces.numpy())], SR305).depth
    return joints, depth


def test_rendered_hand_joints_fall_on_hand_pixels(rendered_hand):
    joints, depth = rendered_hand
    palm = joints[[0, 5, 9, 13, 17]].mean(0)
    crop = crop_depth(depth, SR305, palm)
    hand = crop.patch < BACKGROUND
    assert 0.05 < hand.mean() < 0.6
    uvd = uvd_in_crop(joints, crop, SR305)
    assert np.all((uvd[:, :2] > -0.5) & (uvd[:, :2] < 95.5))  # px: the whole hand is in the patch
    rows, cols = np.nonzero(hand)
    for j in range(21):
        dist = np.hypot(cols - uvd[j, 0], rows - uvd[j, 1]).min()
        # Joints lie inside the finger, tips 3 mm inside the skin: at 480 mm a patch pixel is
        # 250 / 96 = 2.6 mm, so every joint is within 2 patch px of a hand pixel.
        assert dist <= 2.0, f"joint {j} is {dist:.1f} px from the hand"
    # Joints lie behind the visible surface (palm towards the camera) and inside the cube.
    pu, pv = np.clip(np.round(uvd[:, :2]).astype(int), 0, 95).T
    assert np.all(np.abs(uvd[:, 2]) < 1.0)
    on_hand = hand[pv, pu]
    assert np.all(crop.patch[pv, pu][on_hand] <= uvd[on_hand, 2] + 0.02)  # surface in front (5 mm slack)
