"""Depth sensor model: noise statistics, quantisation, edges, shadows, range, determinism, raw units."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from calib import get_preset, list_presets
from models.sensor import (
    FAMILIES, SensorModel, add_depth_noise, add_flying_pixels, apply_range, apply_sensor, cast_shadows,
    discontinuity_mask, drop_edges, drop_grazing, drop_holes, family_for_preset, noise_sigma_mm,
    quantize_depth, sample_sensor, sensor_for_preset, to_raw,
)

SR305 = get_preset("sr305_640x480").intrinsics
KINECT1 = get_preset("kinect_v1_640x480").intrinsics
REFERENCE = {  # one preset per family, and the intrinsics used with it
    "structured_light": ("sr305_640x480", SR305),
    "kinect_v1": ("kinect_v1_640x480", KINECT1),
    "d4xx": ("d435_848x480", get_preset("d435_848x480").intrinsics),
    "tof": ("kinect_v2_512x424", get_preset("kinect_v2_512x424").intrinsics),
}


def _plane(intr, z_mm: float) -> np.ndarray:
    return np.full((intr.height, intr.width), z_mm, dtype=np.float32)


def _square_scene(intr, z_fg: float = 500.0, z_bg: float = 1000.0, box=(180, 300, 260, 380)) -> np.ndarray:
    """A fronto-parallel square (rows r0:r1, columns c0:c1) at z_fg in front of a wall at z_bg, mm."""
    depth = _plane(intr, z_bg)
    r0, r1, c0, c1 = box
    depth[r0:r1, c0:c1] = z_fg
    return depth


def _scene_with_holes(intr) -> np.ndarray:
    depth = _square_scene(intr)
    depth[:, :40] = 0.0            # nothing within range on the left
    depth[300:340, 200:420] = 0.0  # a hole through the wall
    yy, xx = np.mgrid[0:intr.height, 0:intr.width]
    depth[(yy - 100) ** 2 + (xx - 500) ** 2 < 30 ** 2] = 650.0   # a disc
    return depth


# ----------------------------------------------------------------------------- presets


def test_every_preset_has_a_family():
    for preset in list_presets():
        model = sensor_for_preset(preset.name)
        assert model.family in FAMILIES
        assert family_for_preset(preset.name) == model.family
        assert model.min_range_mm < model.max_range_mm
        assert model.depth_unit_mm == pytest.approx(preset.intrinsics.depth_scale * 1000.0)  # mm
    assert family_for_preset("sr305_640x480") == "structured_light"
    assert family_for_preset("nyu") == "structured_light"
    assert family_for_preset("d415_848x480") == "d4xx"
    assert family_for_preset("azure_kinect_nfov_unbinned") == "tof"
    assert family_for_preset("icvl") == "tof"
    with pytest.raises(ValueError, match="unknown camera preset"):
        sensor_for_preset("no_such_camera")


def test_d4xx_min_range_from_disparity_search():
    intr = get_preset("d435_848x480").intrinsics
    assert sensor_for_preset("d435_848x480").min_range_mm == pytest.approx(intr.fx * 50.0 / 126.0, abs=0.1)  # mm


def test_sensor_model_rejects_bad_values():
    with pytest.raises(ValueError, match="family"):
        SensorModel(family="lidar", min_range_mm=100.0, max_range_mm=1000.0)
    with pytest.raises(ValueError, match="min_range_mm"):
        SensorModel(family="tof", min_range_mm=1000.0, max_range_mm=100.0)
    with pytest.raises(ValueError, match="probability"):
        SensorModel(family="tof", min_range_mm=100.0, max_range_mm=1000.0, speckle_prob=2.0)
    with pytest.raises(ValueError, match="baseline"):
        SensorModel(family="d4xx", min_range_mm=100.0, max_range_mm=1000.0, shadow_side=-1)
    with pytest.raises(TypeError):
        SensorModel(family="tof", min_range_mm=100.0, max_range_mm="far")


@pytest.mark.parametrize("kind", ["d4xx", "structured_light", "tof", "sr305_640x480", "kinect_v1_640x480"])
def test_sample_sensor_spreads_and_repeats(kind):
    models = [sample_sensor(np.random.default_rng(seed), kind) for seed in range(40)]
    assert sample_sensor(np.random.default_rng(7), kind) == models[7]
    for m in models:
        assert m.family == (kind if kind in FAMILIES else family_for_preset(kind))
        assert 0.5 <= m.edge_dropout_px <= 2.5 or m.edge_dropout_px == 0.0
        assert 10.0 <= m.edge_threshold_mm <= 25.0
    sigma = [m.noise_const_mm + m.noise_quad_mm_per_m2 + m.noise_disparity_px for m in models]
    assert max(sigma) / min(sigma) > 1.3    # the network sees a spread of noise levels


# ----------------------------------------------------------------------------- noise


@pytest.mark.parametrize("name", ["structured_light", "kinect_v1", "d4xx", "tof"])
@pytest.mark.parametrize("z_mm", [500.0, 1000.0])
def test_white_noise_std_matches_sigma(name, z_mm):
    preset, intr = REFERENCE[name]
    model = dataclasses.replace(sensor_for_preset(preset), lowfreq_ratio=0.0)
    plane = _plane(intr, z_mm)
    noisy = add_depth_noise(plane, np.random.default_rng(0), model, intr)
    sigma = float(noise_sigma_mm(np.float32(z_mm), model, intr.fx))
    residual = noisy - plane
    assert abs(residual.mean()) < 0.02 * sigma                    # mm: unbiased
    assert residual.std() == pytest.approx(sigma, rel=0.05)       # mm, within 5 %


def test_sigma_formulas_by_hand():
    # Kinect v1: white + correlated = z^2 / (16 fx b) = 1.42 mm at 1 m (Khoshelham & Elberink), x4 at 2 m
    k1 = sensor_for_preset("kinect_v1_640x480")
    total = math.sqrt(1.0 + k1.lowfreq_ratio ** 2)
    assert float(noise_sigma_mm(np.float32(1000.0), k1, 588.03)) * total == pytest.approx(1.417, abs=0.005)  # mm
    assert float(noise_sigma_mm(np.float32(2000.0), k1, 588.03)) * total == pytest.approx(4 * 1.417, abs=0.02)  # mm
    # D435: z^2 * 0.08 px / (fx b), fx = 446.8 px, b = 50 mm: 3.58 mm at 1 m
    d435 = sensor_for_preset("d435_848x480")
    assert float(noise_sigma_mm(np.float32(1000.0), d435, 446.803)) == pytest.approx(3.581, abs=0.005)  # mm
    # SR305: 0.19 mm at 0.7 m (measured on the real frames)
    sr = sensor_for_preset("sr305_640x480")
    assert float(noise_sigma_mm(np.float32(700.0), sr, SR305.fx)) == pytest.approx(0.19, abs=0.01)  # mm


def test_lowfreq_noise_is_correlated_with_its_std():
    model = dataclasses.replace(sensor_for_preset("sr305_640x480"), lowfreq_ratio=2.0, lowfreq_cell_px=8.0,
                                noise_disparity_px=0.02)
    plane = _plane(SR305, 800.0)
    sigma = float(noise_sigma_mm(np.float32(800.0), model, SR305.fx))
    residuals = np.stack([add_depth_noise(plane, np.random.default_rng(s), model, SR305) - plane
                          for s in range(6)])
    total = residuals.std()
    assert total == pytest.approx(sigma * math.sqrt(1.0 + 2.0 ** 2), rel=0.1)   # mm
    # neighbours share the correlated part: corr(r(u), r(u+1)) = 4 / 5 * (close to 1)
    corr = np.corrcoef(residuals[:, :, :-1].ravel(), residuals[:, :, 1:].ravel())[0, 1]
    assert 0.6 < corr < 0.85


# ----------------------------------------------------------------------------- quantisation


def test_quantisation_step_is_the_sensor_unit():
    model = sensor_for_preset("sr305_640x480")     # 0.125 mm raw unit
    ramp = np.linspace(400.0, 401.0, 640 * 480, dtype=np.float32).reshape(480, 640)
    out = quantize_depth(ramp, model, SR305)
    levels = np.unique(out)
    np.testing.assert_allclose(np.diff(levels), 0.125, atol=1e-4)             # mm
    assert np.abs(out - ramp).max() <= 0.0625 + 1e-4                           # mm: rounding
    np.testing.assert_allclose(out / 0.125, np.rint(out / 0.125), atol=1e-3)   # on the grid


@pytest.mark.parametrize("z_mm", [1000.0, 2000.0])
def test_kinect_v1_disparity_step_grows_with_z_squared(z_mm):
    model = sensor_for_preset("kinect_v1_640x480")
    expected = z_mm ** 2 * model.disparity_step_px / (KINECT1.fx * model.baseline_mm)   # 2.83 / 11.3 mm
    ramp = np.linspace(z_mm - 3 * expected, z_mm + 3 * expected, 640 * 480, dtype=np.float32).reshape(480, 640)
    exact = quantize_depth(ramp, dataclasses.replace(model, depth_unit_mm=0.0), KINECT1)
    steps = np.diff(np.unique(exact))
    assert np.median(steps) == pytest.approx(expected, rel=0.01)               # mm
    in_mm = quantize_depth(ramp, model, KINECT1)                               # then rounded to 1 mm
    levels = np.unique(in_mm)
    assert np.mean(np.diff(levels)) == pytest.approx(expected, rel=0.1)        # mm
    assert expected == pytest.approx(2.835 if z_mm == 1000.0 else 11.34, abs=0.01)


def test_quantisation_keeps_zero():
    model = sensor_for_preset("kinect_v1_640x480")
    depth = _plane(KINECT1, 1500.0)
    depth[:100] = 0.0
    out = quantize_depth(depth, model, KINECT1)
    assert np.all(out[:100] == 0.0) and np.all(out[100:] > 0.0)


# ----------------------------------------------------------------------------- determinism, validity


@pytest.mark.parametrize("name", list(REFERENCE))
def test_same_seed_same_bytes(name):
    preset, _ = REFERENCE[name]
    model = dataclasses.replace(sensor_for_preset(preset), holes_per_frame=5.0)
    depth = _scene_with_holes(SR305)
    normals = np.zeros(depth.shape + (3,), np.float32)
    normals[..., 2] = -1.0
    normals[:, 500:] = (0.0, -0.995, -0.0998)   # grazing region
    first = apply_sensor(depth, SR305, model, np.random.default_rng(42), normals)
    again = apply_sensor(depth, SR305, model, np.random.default_rng(42), normals)
    other = apply_sensor(depth, SR305, model, np.random.default_rng(43), normals)
    assert first.dtype == np.float32 and first.shape == depth.shape
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


@pytest.mark.parametrize("name", list(REFERENCE))
def test_invalid_input_stays_invalid_and_input_untouched(name):
    preset, _ = REFERENCE[name]
    model = sensor_for_preset(preset)
    depth = _scene_with_holes(SR305)
    before = depth.copy()
    for seed in range(3):
        out = apply_sensor(depth, SR305, model, np.random.default_rng(seed))
        assert np.all(out[depth == 0] == 0)
        valid = out > 0
        assert valid.mean() > 0.5
        assert out[valid].min() >= model.min_range_mm and out[valid].max() <= model.max_range_mm
    np.testing.assert_array_equal(depth, before)


def test_apply_sensor_checks_its_inputs():
    model = sensor_for_preset("sr305_640x480")
    with pytest.raises(ValueError, match="expected shape"):
        apply_sensor(np.zeros((10, 10), np.float32), SR305, model, np.random.default_rng(0))
    with pytest.raises(TypeError, match="float"):
        apply_sensor(np.zeros((480, 640), np.uint16), SR305, model, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        apply_sensor(_plane(SR305, 500.0), SR305, model, 0)
    with pytest.raises(ValueError, match="normals"):
        apply_sensor(_plane(SR305, 500.0), SR305, model, np.random.default_rng(0), np.zeros((480, 640)))


# ----------------------------------------------------------------------------- edges, shadows, flying pixels


def test_no_edge_dropout_on_a_smooth_plane():
    model = dataclasses.replace(sensor_for_preset("sr305_640x480"), edge_dropout_px=2.0)
    u = np.arange(640, dtype=np.float32)[None, :]
    v = np.arange(480, dtype=np.float32)[:, None]
    slanted = 600.0 + 2.0 * u + 1.0 * v          # mm: 2 mm / px, a 75 deg slope at 600 mm
    assert not discontinuity_mask(slanted, model.edge_threshold_mm).any()
    out = drop_edges(slanted, np.random.default_rng(0), model)
    assert np.all(out > 0)


def test_edge_dropout_only_next_to_discontinuities():
    model = dataclasses.replace(sensor_for_preset("sr305_640x480"), edge_dropout_px=2.0, edge_cell_px=3.0)
    depth = _square_scene(SR305)
    dropped = np.zeros(depth.shape, bool)
    for seed in range(5):
        dropped |= drop_edges(depth, np.random.default_rng(seed), model) == 0
    rows, cols = np.nonzero(dropped)
    r0, r1, c0, c1 = 180, 300, 260, 380
    # distance (px) to the square's outline, measured between pixel centres and the boundary
    dr = np.minimum(np.abs(rows - (r0 - 0.5)), np.abs(rows - (r1 - 0.5)))
    dc = np.minimum(np.abs(cols - (c0 - 0.5)), np.abs(cols - (c1 - 0.5)))
    inside_rows = (rows >= r0 - 2) & (rows < r1 + 2)
    inside_cols = (cols >= c0 - 2) & (cols < c1 + 2)
    near = (inside_rows & (dc <= 2.0)) | (inside_cols & (dr <= 2.0))
    assert dropped.sum() > 200            # px: the band exists ...
    assert near.all()                     # ... and only within 2 px of the discontinuity


@pytest.mark.parametrize("preset, side", [("sr305_640x480", +1), ("kinect_v1_640x480", -1),
                                          ("d435_848x480", -1), ("kinect_v2_512x424", 0)])
def test_shadow_side_and_width(preset, side):
    model = sensor_for_preset(preset)
    intr = SR305
    z_fg, z_bg = 500.0, 1000.0
    depth = _square_scene(intr, z_fg, z_bg)
    out = cast_shadows(depth, model, intr, window_u0=None)
    row = out[240]
    left, right = row[:260], row[380:]
    if side == 0:
        assert np.all(out == depth)
        return
    expected = intr.fx * model.baseline_mm * (1.0 / z_fg - 1.0 / z_bg)   # px: 23.8 (b 50), 35.7 (b 75)
    shadowed, clear = (right, left) if side > 0 else (left[::-1], right)
    width = int(np.argmax(shadowed > 0))      # zeros next to the square on the shadow side
    assert width == pytest.approx(expected, abs=1.0)    # px
    assert np.all(clear > 0)
    assert np.all(out[180:300, 260:380] == z_fg)        # the near object itself is seen
    assert np.all(out[:170] == z_bg)                    # rows without the square: no shadow


def test_d4xx_left_border_band():
    model = sensor_for_preset("d435_848x480")
    intr = SR305
    out = cast_shadows(_plane(intr, 1000.0), model, intr, window_u0=0)
    band = intr.fx * model.baseline_mm / 1000.0         # px the second imager cannot see: 23.8
    zero_cols = np.flatnonzero(out[240] == 0)
    assert zero_cols.max() == pytest.approx(band - 0.5, abs=1.0)   # px
    assert np.all(out[:, int(band) + 1:] > 0)
    # a window starting far right of the band has none
    assert np.all(cast_shadows(_plane(intr, 1000.0), model, intr, window_u0=200) > 0)


def test_flying_pixels_mix_foreground_and_background_at_edges_only():
    model = dataclasses.replace(sensor_for_preset("kinect_v2_512x424"), flying_pixel_prob=1.0)
    depth = _square_scene(SR305, 500.0, 1000.0)
    out = add_flying_pixels(depth, np.random.default_rng(0), model)
    changed = out != depth
    edge = discontinuity_mask(depth, model.edge_threshold_mm)
    assert changed.sum() > 100
    assert np.all(edge[changed])
    assert np.all((out[changed] >= 500.0) & (out[changed] <= 1000.0))   # mm, between the two sides
    assert 600.0 < out[changed].mean() < 900.0                          # mm, spread in between


def test_grazing_dropout_needs_steep_surfaces():
    model = sensor_for_preset("sr305_640x480")    # starts at 60 deg, 0.7 at 90 deg
    depth = _plane(SR305, 800.0)
    facing = np.zeros(depth.shape + (3,), np.float32)
    facing[..., 2] = -1.0
    assert np.all(drop_grazing(depth, facing, np.random.default_rng(0), model, SR305) > 0)
    steep = np.zeros_like(facing)
    steep[..., 0] = math.cos(math.radians(3.0))    # about 87 deg from the rays near the centre
    steep[..., 2] = -math.sin(math.radians(3.0))
    lost = (drop_grazing(depth, steep, np.random.default_rng(0), model, SR305) == 0)[:, 280:360].mean()
    assert 0.4 < lost < 0.75


def test_grazing_dropout_reads_normals_from_a_coarser_cast():
    """Normals on a coarser grid of the same view (a ray cast with fewer rays) drop the same
    pixels as the full-resolution normals when the surface is flat, and the left half of a
    two-part surface still decides the left half of the image."""
    model = sensor_for_preset("sr305_640x480")
    depth = _plane(SR305, 800.0)
    steep = np.zeros(depth.shape + (3,), np.float32)
    steep[..., 0] = math.cos(math.radians(3.0))
    steep[..., 2] = -math.sin(math.radians(3.0))
    full = drop_grazing(depth, steep, np.random.default_rng(0), model, SR305) == 0
    coarse = drop_grazing(depth, np.ascontiguousarray(steep[::3, ::3]), np.random.default_rng(0), model, SR305) == 0
    assert 0.3 < full.mean() and np.array_equal(coarse, full)
    split = steep[::4, ::4].copy()               # (120, 160): left half faces the camera
    split[:, :80] = (0.0, 0.0, -1.0)
    lost = drop_grazing(depth, split, np.random.default_rng(0), model, SR305) == 0
    assert lost[:, :318].mean() == 0.0 and lost[:, 322:].mean() > 0.3   # 2 px blocks at the seam
    with pytest.raises(ValueError, match="normals"):
        drop_grazing(depth, np.zeros((481, 640, 3), np.float32), np.random.default_rng(0), model, SR305)


def test_holes_are_blobs_of_the_given_size():
    model = dataclasses.replace(sensor_for_preset("d435_848x480"), holes_per_frame=20.0, hole_radius_px=(3.0, 6.0))
    out = drop_holes(_plane(SR305, 800.0), np.random.default_rng(1), model)
    lost = int((out == 0).sum())
    assert 20 * math.pi * 9 * 0.3 < lost < 60 * math.pi * 36     # px: about 20 blobs of radius 3-6 px


def test_range_enforced():
    model = sensor_for_preset("sr305_640x480")     # 200-1500 mm
    ramp = np.linspace(50.0, 3000.0, 480 * 640, dtype=np.float32).reshape(480, 640)
    out = apply_range(ramp, model)
    inside = (ramp >= 200.0) & (ramp <= 1500.0)
    np.testing.assert_array_equal(out[inside], ramp[inside])
    assert np.all(out[~inside] == 0)
    for name in ("d435_848x480", "kinect_v1_640x480", "kinect_v2_512x424"):
        m = sensor_for_preset(name)
        full = apply_sensor(ramp, SR305, m, np.random.default_rng(0))
        valid = full[full > 0]
        assert valid.min() >= m.min_range_mm and valid.max() <= m.max_range_mm


# ----------------------------------------------------------------------------- raw units


@pytest.mark.parametrize("scale", [0.001, 0.000125, 0.00025])
def test_to_raw_round_trip_within_half_a_unit(scale):
    rng = np.random.default_rng(0)
    depth = rng.uniform(100.0, 8000.0, (480, 640)).astype(np.float32)
    depth[:10] = 0.0
    raw = to_raw(depth, scale)
    assert raw.dtype == np.uint16
    unit_mm = scale * 1000.0
    back = raw.astype(np.float64) * unit_mm
    fits = depth / unit_mm <= 65535
    assert np.all(np.abs(back[fits & (depth > 0)] - depth[fits & (depth > 0)]) <= unit_mm / 2 + 1e-3)  # mm
    assert np.all(raw[:10] == 0)
    assert np.all(raw[~fits] == 0)          # beyond 65535 units: invalid, not wrapped
    with pytest.raises(ValueError, match="depth_scale"):
        to_raw(depth, 0.0)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (1, 200), (200, 1)])
def test_tiny_windows_work(size):
    width, height = size
    window = SR305.window(300, 200, width, height)
    depth = np.random.default_rng(0).uniform(300.0, 1200.0, (height, width)).astype(np.float32)
    depth[::3, ::2] = 0.0
    normals = np.zeros((height, width, 3), np.float32)
    normals[..., 2] = -1.0
    for preset, _ in REFERENCE.values():
        out = apply_sensor(depth, window, sensor_for_preset(preset), np.random.default_rng(0), normals, window_u0=300)
        assert out.shape == depth.shape and np.all(out[depth == 0] == 0)


def test_range_envelope_holds_every_drawn_range():
    """range_envelope_mm bounds the ranges sample_sensor draws for a preset (mm)."""
    from models.sensor import range_envelope_mm

    for name in ("kinect_v1_640x480", "d435_848x480", "senz3d_320x240"):
        near, far = range_envelope_mm(name)
        base = sensor_for_preset(name)
        assert near < base.min_range_mm < base.max_range_mm < far
        rng = np.random.default_rng(0)
        drawn = [sample_sensor(rng, name) for _ in range(300)]
        assert min(m.min_range_mm for m in drawn) >= near
        assert max(m.max_range_mm for m in drawn) <= far
        assert min(m.min_range_mm for m in drawn) < near * 1.02  # the bound is reached, not loose
