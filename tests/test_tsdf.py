"""Tests of models/tsdf.py: the projective TSDF of the hand cube (Hand3D's input).

Units: millimetres (mm) for points, depths, the cube and the truncation; pixels (px) in the
image and the patch; patch values, normalised coordinates and TSDF values are dimensionless
(the TSDF is a signed distance in units of the truncation, clamped to [-1, 1]).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from calib import Intrinsics
from models.crop import CropConfig, crop_depth, uvd_in_crop
from models.tsdf import (
    GRID, TRUNCATION_MM, TsdfLayer, patch_indices, ray_offset_mm, tsdf_from_depth, tsdf_from_patch,
    voxel_centres,
)

PINHOLE = Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480, 0.001)
CUBE = 250.0  # mm
HALF = 125.0  # mm
T = 50.0  # mm


def z_centres_mm(grid: int) -> np.ndarray:
    """Voxel centres along z, mm from the COM, by hand: ((2k + 1)/G - 1) * 125."""
    return ((2.0 * np.arange(grid) + 1.0) / grid - 1.0) * HALF


def pixel_rays(intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(x/z, y/z) of every pixel centre of a pinhole camera, (H, W) each."""
    u, v = np.meshgrid(np.arange(intr.width, dtype=np.float64), np.arange(intr.height, dtype=np.float64))
    return (u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy


def render_plane(intr: Intrinsics, z0: float, a: float, b: float) -> np.ndarray:
    """Depth (H, W) float32 mm of the plane Z = z0 + a X + b Y (mm, camera frame)."""
    rx, ry = pixel_rays(intr)
    return (z0 / (1.0 - a * rx - b * ry)).astype(np.float32)


def render_sphere(intr: Intrinsics, centre: np.ndarray, radius: float) -> np.ndarray:
    """Depth (H, W) float32 mm of a sphere (front surface); 0 (no depth) off the sphere."""
    rx, ry = pixel_rays(intr)
    ray = np.stack([rx, ry, np.ones_like(rx)], -1)  # point = Z * ray
    qa = (ray * ray).sum(-1)
    qb = -2.0 * ray @ centre
    qc = centre @ centre - radius ** 2
    disc = qb * qb - 4.0 * qa * qc
    z = (-qb - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * qa)
    return np.where(disc > 0.0, z, 0.0).astype(np.float32)


# --------------------------------------------------------------------------- the grid


def test_grid_hand_computed():
    np.testing.assert_allclose(voxel_centres(4), [-0.75, -0.25, 0.25, 0.75], atol=1e-15)
    assert (GRID, TRUNCATION_MM) == (32, 50.0)
    # 96 px / 32 voxels: voxel k reads the pixel containing its centre, 3k + 1 (whose centre
    # is the voxel's centre); 96 / 48: 2k + 1 (the voxel centre lies on the pixel edge 2k + 1).
    np.testing.assert_array_equal(patch_indices(96, 32), 3 * np.arange(32) + 1)
    np.testing.assert_array_equal(patch_indices(96, 48), 2 * np.arange(48) + 1)
    np.testing.assert_array_equal(patch_indices(96, 96), np.arange(96))
    np.testing.assert_array_equal(patch_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])


# --------------------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("grid", [32, 48])
def test_flat_patch_hand_computed(grid):
    # A surface at com_z + 10 mm everywhere: patch value 10 / 125 = 0.08.
    patch = np.full((96, 96), 10.0 / HALF, np.float32)
    tsdf = tsdf_from_patch(patch, grid, T, CUBE)
    assert isinstance(tsdf, np.ndarray) and tsdf.shape == (grid,) * 3 and tsdf.dtype == np.float32
    expected = np.clip((10.0 - z_centres_mm(grid)) / T, -1.0, 1.0)
    np.testing.assert_allclose(tsdf, np.broadcast_to(expected[:, None, None], tsdf.shape), atol=1e-5)
    if grid == 32:  # by hand: voxel centres 3.90625 mm and 11.71875 mm straddle the surface
        np.testing.assert_allclose(tsdf[16:18, 0, 0], [6.09375 / 50.0, -1.71875 / 50.0], atol=1e-6)
        assert np.all(tsdf[:10] == 1.0) and np.all(tsdf[24:] == -1.0)  # beyond 50 mm: clamped


def test_all_background_is_free_space():
    # A blank frame (nothing in the cube): +1 everywhere, no surface anywhere.
    tsdf = tsdf_from_patch(torch.ones(2, 1, 96, 96))
    assert tsdf.shape == (2, 1, 32, 32, 32)
    assert torch.all(tsdf == 1.0)


def test_front_clamped_occluder_is_behind_a_surface_at_the_front_face():
    # Patch -1 (depth in front of the cube): surface at -125 mm; the first voxel centre
    # (-121.09375 mm) is 3.90625 mm behind it, the next 11.71875 mm, ...
    tsdf = tsdf_from_patch(np.full((96, 96), -1.0, np.float32))
    np.testing.assert_allclose(tsdf[:3, 5, 5], [-3.90625 / 50.0, -11.71875 / 50.0, -19.53125 / 50.0], atol=1e-6)
    assert np.all(tsdf[7:] == -1.0)  # > 50 mm behind the surface


def test_single_pixel_lands_in_its_voxel_column():
    # Volume layout (z, y, x): patch row -> voxel index i (y), patch column -> j (x).
    patch = np.ones((96, 96), np.float32)
    patch[3 * 5 + 1, 3 * 7 + 1] = 0.0  # surface at the COM depth, read by voxel column (5, 7)
    tsdf = tsdf_from_patch(patch, 32)
    expected = np.clip(-z_centres_mm(32) / T, -1.0, 1.0)
    np.testing.assert_allclose(tsdf[:, 5, 7], expected, atol=1e-6)
    others = np.ones((32, 32), bool)
    others[5, 7] = False
    assert np.all(tsdf[:, others] == 1.0)
    # 48 voxels read pixels 2k + 1: pixel (11, 21) is voxel column (5, 10).
    patch48 = np.ones((96, 96), np.float32)
    patch48[11, 21] = 0.0
    assert np.argwhere(tsdf_from_patch(patch48, 48)[24] < 1.0).tolist() == [[5, 10]]
    # Nearest sampling: a pixel between the voxel columns' samples is not seen at all.
    patch[3 * 5 + 1, 3 * 7 + 1] = 1.0
    patch[3 * 5, 3 * 7] = 0.0
    assert np.all(tsdf_from_patch(patch, 32) == 1.0)


# --------------------------------------------------------------------------- shapes, types, errors


@pytest.mark.parametrize("lead", [(), (1,), (3,), (2, 1), (2, 3)])
@pytest.mark.parametrize("grid", [8, 32])
def test_shapes_over_a_batch(lead, grid):
    gen = torch.Generator().manual_seed(3)
    patch = torch.rand(*lead, 96, 96, generator=gen) * 2.0 - 1.0
    tsdf = tsdf_from_patch(patch, grid)
    assert tsdf.shape == (*lead, grid, grid, grid) and tsdf.dtype == torch.float32
    assert tsdf.min() >= -1.0 and tsdf.max() <= 1.0
    flat_in, flat_out = patch.reshape(-1, 96, 96), tsdf.reshape(-1, grid, grid, grid)
    for b in range(flat_in.shape[0]):  # each batch element is its own single-patch result
        torch.testing.assert_close(flat_out[b], tsdf_from_patch(flat_in[b], grid), atol=0.0, rtol=0.0)
    assert tsdf_from_patch(patch.double(), grid).dtype == torch.float64
    np_out = tsdf_from_patch(patch.double().numpy(), grid)
    assert isinstance(np_out, np.ndarray) and np_out.dtype == np.float32
    np.testing.assert_allclose(np_out, tsdf.numpy(), atol=1e-6)


def test_rejects_bad_inputs():
    patch = np.zeros((96, 96), np.float32)
    with pytest.raises(ValueError, match=r"\(\.\.\., S, S\).*\(96, 80\)"):
        tsdf_from_patch(np.zeros((96, 80), np.float32))
    with pytest.raises(ValueError, match=r"\(96,\)"):
        tsdf_from_patch(np.zeros(96, np.float32))
    with pytest.raises(TypeError, match="floating"):
        tsdf_from_patch(np.zeros((96, 96), np.int32))
    with pytest.raises(TypeError, match="floating"):
        tsdf_from_patch(torch.zeros(96, 96, dtype=torch.int64))
    with pytest.raises(TypeError):
        tsdf_from_patch(patch.tolist())
    with pytest.raises(ValueError, match="got 0"):
        tsdf_from_patch(patch, grid=0)
    with pytest.raises(TypeError):
        tsdf_from_patch(patch, grid=32.0)
    with pytest.raises(ValueError, match="truncation_mm.*got -1"):
        tsdf_from_patch(patch, truncation_mm=-1.0)
    with pytest.raises(ValueError, match="cube_mm.*got inf"):
        tsdf_from_patch(patch, cube_mm=float("inf"))
    with pytest.raises(TypeError):
        TsdfLayer(grid=True)
    depth = np.full((480, 640), 500.0, np.float32)
    with pytest.raises(ValueError, match="z > 0"):
        tsdf_from_depth(depth, PINHOLE, np.array([0.0, 0.0, -5.0]))
    with pytest.raises(ValueError, match=r"\(480, 640\)"):
        tsdf_from_depth(depth[:100], PINHOLE, np.array([0.0, 0.0, 500.0]))


def test_gradcheck():
    gen = torch.Generator().manual_seed(4)
    patch = (torch.rand(2, 8, 8, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: tsdf_from_patch(p, 4, 50.0, 250.0), (patch,))


# --------------------------------------------------------------------------- the approximation


def test_tilted_plane_hand_computed_patch_and_exact():
    # The plane Z = 500 + 0.5 X - 0.3 Y (mm) seen with the COM (0, 0, 500) on the optical axis.
    # A ray through (x, y) at depth z_ray meets it at Z = 500 / (1 - (0.5 x - 0.3 y) / z_ray).
    # The patch version reads the ray through (x, y) at the COM's depth (z_ray = 500 mm);
    # the exact version the ray through the voxel centre itself (z_ray = 500 + z).
    com = np.array([0.0, 0.0, 500.0])
    depth = render_plane(PINHOLE, 500.0, 0.5, -0.3)
    n = voxel_centres(32) * HALF  # mm
    z = n[:, None, None]
    y = n[None, :, None]
    x = n[None, None, :]

    def expected(z_ray: np.ndarray) -> np.ndarray:
        surface = 500.0 / (1.0 - (0.5 * x - 0.3 * y) / z_ray) - 500.0  # mm from the COM
        return np.clip((surface - z) / T, -1.0, 1.0)

    approx = tsdf_from_patch(crop_depth(depth, PINHOLE, com, CropConfig(CUBE, 96)).patch)
    exact = tsdf_from_depth(depth, PINHOLE, com)
    # Both read the nearest image pixel, up to 0.5 px = 0.001 of ray slope off in u and in v;
    # dZ/d(slope) = 500 (0.5, 0.3) / (1 - 0.5 x/z - 0.3 y/z)² <= (363, 218) mm at the cube's
    # corner (denominator >= 0.83), so up to 0.58 mm of surface depth; 0.6 mm over T:
    np.testing.assert_allclose(approx, expected(np.full_like(z, 500.0)), atol=0.6 / T)
    np.testing.assert_allclose(exact, expected(500.0 + z), atol=0.6 / T)
    # ... and they differ: by up to 25 mm of surface depth (0.5 voxel TSDF units) here.
    assert 0.4 < np.abs(approx - exact).max() < 0.6


def test_ray_offset_table_and_crop_geometry():
    # The table of the module docstring: lateral offset at the cube's edge x = 125 mm,
    # near/far face z = -/+125 mm, COM on the axis: 125 * 125 / z_com.
    faces = np.array([[1.0, 0.0, -1.0], [1.0, 0.0, 1.0]])
    np.testing.assert_allclose(ray_offset_mm(faces, [0.0, 0.0, 300.0])[:, 0], [-52.0833, 52.0833], atol=1e-4)  # mm
    np.testing.assert_allclose(ray_offset_mm(faces, [0.0, 0.0, 800.0])[:, 0], [-19.53125, 19.53125], atol=1e-9)  # mm
    # 30 degrees off axis, far face, centre column: com_x / com_z * 125 = tan(30 deg) * 125 = 72.2 mm.
    com30 = np.array([np.tan(np.radians(30.0)) * 400.0, 0.0, 400.0])
    np.testing.assert_allclose(ray_offset_mm([0.0, 0.0, 1.0], com30), [72.1688, 0.0], atol=1e-4)  # mm
    # Cross-check against the crop's own projection (models.crop.uvd_in_crop): the voxel's
    # true patch column minus the one the approximation reads, in mm at the voxel's depth.
    com = np.array([60.0, -40.0, 450.0])
    crop = crop_depth(np.zeros((480, 640), np.float32), PINHOLE, com)
    voxels = np.array([[0.7, -0.4, -0.9], [-1.0, 1.0, 1.0], [0.2, 0.5, 0.3]])
    true_px = uvd_in_crop(com + voxels * HALF, crop, PINHOLE)[:, :2]
    approx_px = 47.5 + voxels[:, :2] * 48.0  # patch centre + n * S / 2
    mm_per_px = CUBE / 96.0 * (com[2] + voxels[:, 2:] * HALF) / com[2]  # at the voxel's depth
    np.testing.assert_allclose((approx_px - true_px) * mm_per_px, ray_offset_mm(voxels, com, CUBE), atol=1e-9)  # mm


@pytest.mark.parametrize("z_com", [300.0, 500.0, 800.0])
def test_fronto_parallel_plane_is_exact(z_com):
    # A plane z = com_z + 10 mm: the orthographic approximation costs nothing.
    com = np.array([0.0, 0.0, z_com])
    depth = np.full((480, 640), z_com + 10.0, np.float32)
    approx = tsdf_from_patch(crop_depth(depth, PINHOLE, com).patch)
    np.testing.assert_allclose(approx, tsdf_from_depth(depth, PINHOLE, com), atol=1e-5)
    np.testing.assert_allclose(approx[:, 0, 0], np.clip((10.0 - z_centres_mm(32)) / T, -1.0, 1.0), atol=1e-5)


# Measured mean |approx - exact| over the 32³ voxels and fraction of voxels where they differ by
# more than 0.5 (a silhouette or surface moved by more than 25 mm), sphere of radius 60 mm
# centred on the COM on the optical axis (PINHOLE, f = 500 px):
#   300 mm: 0.105, 5.4 %;  500 mm: 0.056, 2.8 %;  800 mm: 0.041, 1.9 %.
# Bounds: the measured values plus about 10 %.
@pytest.mark.parametrize("z_com, mean_max, flipped_max", [(300.0, 0.115, 0.060), (500.0, 0.062, 0.031),
                                                         (800.0, 0.045, 0.021)])
def test_sphere_approximation_vs_exact(z_com, mean_max, flipped_max):
    com = np.array([0.0, 0.0, z_com])
    depth = render_sphere(PINHOLE, com, 60.0)
    approx = tsdf_from_patch(crop_depth(depth, PINHOLE, com).patch)
    exact = tsdf_from_depth(depth, PINHOLE, com)
    diff = np.abs(approx - exact)
    assert diff.mean() <= mean_max
    assert (diff > 0.5).mean() <= flipped_max
    # Near the axis through the COM the offset vanishes: the 4 centre columns (x, y = +-3.9 mm)
    # read rays at most 3.9 * sqrt(2) * 125 / 300 = 2.3 mm away, where the sphere's slope is
    # <= 0.1: <= 0.25 mm of surface depth (nearest-pixel rounding adds <= 0.03 mm); 0.3 mm over T:
    np.testing.assert_allclose(approx[:, 15:17, 15:17], exact[:, 15:17, 15:17], atol=0.3 / T)


# --------------------------------------------------------------------------- ONNX


def test_onnx_matches_torch(tmp_path):
    import onnxruntime as ort

    from export.onnx_export import export_module

    layer = TsdfLayer(32, TRUNCATION_MM, CUBE)
    example = torch.zeros(2, 1, 96, 96)
    path = export_module(layer, (example,), tmp_path / "tsdf.onnx", ("patch",), ("tsdf",))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(5)
    for batch in (1, 3):
        patch = torch.rand(batch, 1, 96, 96, generator=gen) * 2.0 - 1.0
        patch[:, :, :30] = 1.0  # background rows
        patch[:, :, 30:35] = -1.0  # front-clamped rows
        (out,) = session.run(None, {"patch": patch.numpy()})
        with torch.no_grad():
            ref = layer(patch)
        assert out.shape == (batch, 1, 32, 32, 32)
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=0)  # TSDF units
