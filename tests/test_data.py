"""Tests of models/data.py: shards -> samples, the shard-by-shard order, and augmentation.

Units: millimetres (mm) for points, depths and shifts; pixels (px) in the patch; normalised
joints and depths are in cube/2 units (dimensionless; cube 250 mm, so 1 unit = 125 mm).
"""
from __future__ import annotations

import math
from functools import partial

import cv2
import numpy as np
import pytest
import torch

from calib import DISTORTION_MODELS, Intrinsics, backproject, get_preset
from models.crop import BACKGROUND, FRONT, CropConfig, crop_depth, crop_window, denormalize_joints, normalize_joints, \
    uvd_in_crop
from models.data import (
    AugmentConfig, Batch, Sample, ShardDataset, ShardSampler, Warp, add_depth_noise, add_occluder, augment,
    drop_pixels, fatten_edges, make_loader, pull_homography, rotate, sample_crop, sample_intrinsics, scale, set_epoch,
    shift, to_numpy, warp_patch,
)
from models.geometry import axis_angle_to_matrix
from models.hand_layer import HandLayer
from models.joints import Joint
from models.synth import Renderer, SynthConfig, render_shard, write_shard

HALF = 125.0  # mm: cube/2, one normalised unit
S = 96        # px: patch side
C = 47.5      # px: patch centre
PINHOLE = Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480, 0.001)
FISHEYE = get_preset("azure_kinect_nfov_unbinned").intrinsics  # equidistant fisheye (kannala_brandt4)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two 8-frame train shards written with the generator's own functions."""
    out = tmp_path_factory.mktemp("synth") / "train"
    renderer = Renderer(SynthConfig(chunk=8, hands_per_draw=8, seed=1))
    cameras = [c for c, _ in renderer.cfg.cameras]
    frames = []
    for k in range(2):
        arrays, _ = render_shard(renderer, "train", k, 8)
        write_shard(out / f"shard_{k:05d}.npz", arrays, {"split": "train", "shard": k, "cameras": cameras})
        frames.append(arrays)
    return out, frames


@pytest.fixture(scope="module")
def dataset(shards):
    return ShardDataset(shards[0])


@pytest.fixture(scope="module")
def layer():
    return HandLayer(dtype=torch.float64).eval()


def hand_layer(layer, samples):
    """HandOutput of the samples' (θ, α, β, wrist), float64."""
    t = lambda name: torch.from_numpy(np.stack([getattr(s, name) for s in samples]).astype(np.float64))  # noqa: E731
    with torch.no_grad():
        return layer(t("theta"), t("alpha"), t("beta"), wrist=t("wrist"))


def synthetic(patch, com, intr=PINHOLE, joints_mm=None, mask=None):
    """A numpy Sample around a hand-made patch (S, S) whose crop is centred on ``com`` (mm)."""
    com = np.asarray(com, np.float64)
    joints_mm = com + np.arange(63).reshape(21, 3) % 7 * 5.0 if joints_mm is None else joints_mm
    return Sample(
        patch=np.asarray(patch, np.float32)[None], joints=normalize_joints(joints_mm, com, 250.0).astype(np.float32),
        joints_mm=joints_mm.astype(np.float32), com_mm=com.astype(np.float32), theta=np.zeros(26, np.float32),
        alpha=np.ones(6, np.float32), beta=np.zeros(7, np.float32), wrist=np.zeros(2, np.float32),
        mask=np.asarray(patch) < 1.0 if mask is None else mask,
        crop_from_image=crop_window(com, intr).astype(np.float32),
        intrinsics=np.array([intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height], np.float32),
        distortion=np.int64(DISTORTION_MODELS.index(intr.distortion)), coeffs=np.array(intr.coeffs, np.float32),
        view=np.int64(0), params_valid=np.bool_(True), cube_mm=np.float32(250.0), index=np.int64(0))


def render_spheres(spheres, intr):
    """(H, W) float32 depth in mm of spheres [(centre (3,) mm, radius mm)], 0 = no hit."""
    v, u = np.mgrid[0:intr.height, 0:intr.width].astype(np.float64)
    q = backproject(np.stack([u, v, np.ones_like(u)], -1), intr)  # rays with z = 1
    a = (q * q).sum(-1)
    depth = np.full(u.shape, np.inf)
    for c, r in spheres:
        b = q @ c
        disc = b * b - a * (c @ c - r * r)
        t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
        depth = np.where((disc > 0) & (t < depth), t, depth)
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)


def distance_to_mask(sample, joints):
    """px from each joint's patch pixel to the nearest mask pixel (joints inside the patch only)."""
    uv = uvd_in_crop(sample.joints_mm[joints].astype(np.float64), sample_crop(sample), sample_intrinsics(sample))
    dist = cv2.distanceTransform((~sample.mask).astype(np.uint8), cv2.DIST_L2, 5)
    iu = np.round(uv[:, :2]).astype(int)
    inside = (iu >= 0).all(1) & (iu < S).all(1)
    return dist[iu[inside, 1], iu[inside, 0]]


# --------------------------------------------------------------------------- dataset and order


def test_dataset_length_and_indexing_across_shards(shards, dataset):
    out, frames = shards
    assert len(dataset) == 16 and dataset.shard_sizes == (8, 8)
    assert dataset.locate(9) == (1, 1) and dataset.locate(-1) == (1, 7)
    s = dataset[9]
    np.testing.assert_array_equal(s.patch[0].numpy(), frames[1]["patch"][1].astype(np.float32))
    np.testing.assert_array_equal(s.joints_mm.numpy(), frames[1]["joints_mm"][1])
    np.testing.assert_array_equal(s.mask.numpy(), frames[1]["mask"][1])
    assert int(s.index) == 9 and bool(s.params_valid)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in s._asdict().items()}
    assert shapes["patch"] == ((1, S, S), torch.float32) and shapes["joints"] == ((21, 3), torch.float32)
    assert shapes["mask"] == ((S, S), torch.bool) and shapes["view"] == ((), torch.int64)
    assert shapes["intrinsics"] == ((6,), torch.float32) and shapes["coeffs"] == ((5,), torch.float32)
    files = ShardDataset([out / "shard_00001.npz", out / "shard_00000.npz"])
    np.testing.assert_array_equal(files[1].patch.numpy(), dataset[9].patch.numpy())  # file order kept
    with pytest.raises(IndexError):
        dataset[16]
    with pytest.raises(ValueError, match="64 x 64"):
        ShardDataset(out, crop=CropConfig(size=64))
    with pytest.raises(ValueError, match="cube_mm=300"):
        ShardDataset(out, crop=CropConfig(cube_mm=300.0)).raw(0)
    with pytest.raises(ValueError, match="none"):
        ShardDataset(out.parent)  # no shard_<n>.npz directly inside


def test_lens_model_comes_from_the_camera_preset(shards, dataset):
    """Every frame's crop window is reproduced by crop_window with the recovered lens model."""
    _, frames = shards
    for i in range(len(dataset)):
        s = dataset.raw(i)
        frame = frames[i // 8]
        name = SynthConfig().cameras[int(frame["camera"][i % 8])][0]
        assert DISTORTION_MODELS[int(s.distortion)] == get_preset(name).intrinsics.distortion
        np.testing.assert_allclose(sample_crop(s).crop_from_image, s.crop_from_image, rtol=1e-5, atol=1e-3)  # px


def test_normalised_joints_round_trip_to_mm(dataset):
    batch = Batch(*(torch.stack(f) for f in zip(*(dataset[i] for i in range(len(dataset))))))
    mm = denormalize_joints(batch.joints.double(), batch.com_mm.double(), 250.0)
    assert (mm - batch.joints_mm.double()).abs().max() <= 1e-3  # mm
    s = dataset.raw(3)
    expected = (s.joints_mm[Joint.INDEX_TIP].astype(np.float64) - s.com_mm) / HALF  # hand-computed
    np.testing.assert_allclose(s.joints[Joint.INDEX_TIP], expected, atol=1e-6)  # normalised


def test_sampler_reads_shard_by_shard_and_cache_is_bounded(shards):
    ds = ShardDataset(shards[0], cache_shards=1)
    order = ShardSampler(ds, buffer_shards=1, seed=5).order()
    assert sorted(order.tolist()) == list(range(16))
    assert len({i // 8 for i in order[:8]}) == 1  # the first 8 items come from one shard
    for i in order:
        ds.raw(int(i))
    assert ds.shard_loads == 2 and len(ds._cache) == 1  # each shard decoded once
    ds.raw(0), ds.raw(8), ds.raw(1)
    assert ds.shard_loads == 4  # alternating access thrashes a 1-shard cache: what the sampler avoids


def test_sampler_is_seeded_and_reshuffles_per_epoch():
    a, b = ShardSampler([8, 8, 5], seed=1), ShardSampler([8, 8, 5], seed=1)
    assert list(a) == list(b) and len(a) == 21
    b.set_epoch(1)
    assert list(a) != list(b) and sorted(b) == list(range(21))
    assert list(ShardSampler([8, 8, 5], shuffle=False)) == list(range(21))
    assert list(ShardSampler([8, 8, 5], seed=2)) != list(a)


# --------------------------------------------------------------------------- rotation


def test_rotation_labels_follow_the_hand_layer(dataset, layer):
    """Joints AND mesh of the rotated θ are the rotated joints / mesh (rigid, exact)."""
    rng = np.random.default_rng(0)
    originals = [dataset.raw(i) for i in range(len(dataset))]
    angles = rng.uniform(-math.pi, math.pi, len(originals))
    rotated = [rotate(s, a) for s, a in zip(originals, angles)]
    out = hand_layer(layer, rotated)
    joints = np.stack([r.joints_mm for r in rotated])
    assert np.abs(out.joints.numpy() - joints).max() <= 1e-3  # mm
    before = hand_layer(layer, originals).vertices.numpy()
    for k, (s, a) in enumerate(zip(originals, angles)):
        com = s.com_mm.astype(np.float64)
        r = axis_angle_to_matrix(torch.from_numpy(com / np.linalg.norm(com) * a)).numpy()
        assert np.abs(before[k] @ r.T - out.vertices[k].numpy()).max() <= 1e-3  # mm
        np.testing.assert_array_equal(rotated[k].com_mm, s.com_mm)  # the COM is on the axis
        assert bool(rotated[k].params_valid)
        np.testing.assert_allclose(rotated[k].joints, normalize_joints(rotated[k].joints_mm, s.com_mm, 250.0),
                                   atol=1e-6)


def test_rotation_by_90_degrees_on_the_optical_axis_is_rot90():
    """COM on the optical axis: +90° = np.rot90(patch, -1), clockwise on screen (y is down)."""
    rng = np.random.default_rng(1)
    patch = rng.uniform(-0.9, 0.9, (S, S)).astype(np.float16).astype(np.float32)
    patch[rng.random((S, S)) < 0.2] = BACKGROUND
    patch[rng.random((S, S)) < 0.05] = FRONT
    com = np.array([0.0, 0.0, 500.0])  # PINHOLE's principal point
    s = synthetic(patch, com, mask=rng.random((S, S)) < 0.5)
    r = rotate(s, math.pi / 2)
    np.testing.assert_array_equal(r.patch[0], np.rot90(patch, -1))
    np.testing.assert_array_equal(r.mask, np.rot90(s.mask, -1))
    np.testing.assert_array_equal(rotate(s, -math.pi / 2).patch[0], np.rot90(patch, 1))
    # joints: (x, y) -> (-y, x) about the COM: +x (right) turns to +y (down)
    np.testing.assert_allclose(r.joints[:, 0], -s.joints[:, 1], atol=1e-6)
    np.testing.assert_allclose(r.joints[:, 1], s.joints[:, 0], atol=1e-6)
    np.testing.assert_allclose(r.joints[:, 2], s.joints[:, 2], atol=1e-6)
    four = s
    for _ in range(4):
        four = rotate(four, math.pi / 2)
    np.testing.assert_array_equal(four.patch, s.patch)


@pytest.mark.parametrize("degrees", [90.0, 60.0, -143.0])
def test_rotated_joints_land_on_the_rotated_hand(dataset, degrees):
    """The direction convention of the patch matches the labels' on real frames.

    Joints (index tip included) projected into the rotated crop through the crop contract lie
    on the rotated hand mask as often as before rotation (about 95 % within 1 px: some are
    occluded by other objects); labels turned the other way, or not turned, do not.
    """
    angle = math.radians(degrees)
    before, after, tips, wrong, unturned = [], [], [], [], []
    for i in range(len(dataset)):
        s = dataset.raw(i)
        r = rotate(s, angle)
        before.append(distance_to_mask(s, list(Joint)))
        after.append(distance_to_mask(r, list(Joint)))
        tips.append(distance_to_mask(r, [Joint.INDEX_TIP]))
        wrong.append(distance_to_mask(r._replace(joints_mm=rotate(s, -angle).joints_mm), list(Joint)))
        unturned.append(distance_to_mask(r._replace(joints_mm=s.joints_mm), list(Joint)))
    on_hand = lambda d: np.mean(np.concatenate(d) <= 1.0)  # noqa: E731  share within 1 px
    assert np.concatenate(after).size > 250 and np.concatenate(tips).size >= 14
    assert on_hand(after) >= min(on_hand(before), 0.9) - 0.02
    assert on_hand(tips) >= 0.85  # the index tip lands on the hand
    assert on_hand(unturned) <= 0.65 and (degrees == 90.0 or on_hand(wrong) <= 0.65)


def scene(com):
    return [(com + np.array([0.0, 0.0, 30.0]), 60.0), (com + np.array([50.0, -55.0, -20.0]), 22.0)]


def compare_patches(got, expected):
    """(IoU of valid pixels, median |Δ| mm, 95th percentile |Δ| mm on pixels valid in both)."""
    vg, ve = np.abs(got) < 1.0, np.abs(expected) < 1.0
    both = vg & ve
    diff = np.abs(got - expected)[both] * HALF
    return both.sum() / (vg | ve).sum(), np.median(diff), np.percentile(diff, 95)


@pytest.mark.parametrize("intr", [PINHOLE, FISHEYE], ids=["pinhole", "fisheye"])
@pytest.mark.parametrize("step", ["rotate", "scale_up", "scale_down", "shift"])
def test_geometric_steps_equal_the_crop_of_the_transformed_scene(intr, step):
    """Off-axis COM (about 18° off): the augmented patch is the crop of the rotated / scaled /
    re-centred scene of two spheres, up to nearest-neighbour sampling."""
    com = np.array([120.0, -80.0, 450.0])
    spheres = scene(com)
    original = crop_depth(render_spheres(spheres, intr), intr, com)
    s = synthetic(original.patch, com, intr)
    if step == "rotate":
        angle = math.radians(60.0)
        r = axis_angle_to_matrix(torch.from_numpy(com / np.linalg.norm(com) * angle)).numpy()
        moved, new_com, got = [(r @ c, rad) for c, rad in spheres], com, rotate(s, angle)
    elif step == "shift":
        delta = np.array([9.0, -6.0, 12.0])
        moved, new_com, got = spheres, com + delta, shift(s, delta)
    else:
        f = 1.1 if step == "scale_up" else 0.9
        moved, new_com, got = [(f * c, f * rad) for c, rad in spheres], f * com, scale(s, f)
    expected = crop_depth(render_spheres(moved, intr), intr, new_com)
    np.testing.assert_allclose(got.crop_from_image, expected.crop_from_image, rtol=1e-6, atol=1e-4)  # px
    iou, median, p95 = compare_patches(got.patch[0], expected.patch)
    assert iou >= 0.96 and median <= 0.7 and p95 <= 3.5  # mm: a sphere's slope times half a pixel
    if step == "rotate":  # a plain 2D rotation of the patch about its centre is far off
        co, si = math.cos(angle), math.sin(angle)
        m = np.array([[co, si, C - co * C - si * C], [-si, co, C + si * C - co * C], [0.0, 0.0, 1.0]])
        naive, _ = warp_patch(s.patch[0], s.mask, [Warp(partial(pull_homography, m), 1.0, 0.0, 0.0)])
        assert compare_patches(naive, expected.patch)[1] > 4.0  # mm


# --------------------------------------------------------------------------- scale and shift


def test_scale_of_a_plate_hand_computed():
    """A 22 px square plate 50 mm behind the COM, s = 1.1: 24 px wide, 55 mm behind."""
    patch = np.full((S, S), BACKGROUND, np.float32)
    patch[37:59, 37:59] = 0.4  # px 37..58 (|u - 47.5| <= 10.5); 0.4 × 125 mm = 50 mm
    com = np.array([60.0, -40.0, 500.0])
    s = synthetic(patch, com)
    out = scale(s, 1.1)
    expected = np.full((S, S), BACKGROUND, np.float32)
    # destination px p has source 47.5 + (p - 47.5) / 1.1: p = 36 -> 37.05 (in), p = 35 -> 36.14 (out),
    # p = 59 -> 57.95 (in), p = 60 -> 58.86 (out)
    expected[36:60, 36:60] = 0.44
    np.testing.assert_allclose(out.patch[0], expected, atol=1e-6)  # normalised (1e-6 × 125 mm)
    np.testing.assert_allclose(out.com_mm, 1.1 * com, rtol=1e-6)  # mm
    np.testing.assert_allclose(out.joints, 1.1 * s.joints, atol=1e-6)
    np.testing.assert_allclose(out.crop_from_image, crop_window(1.1 * com, PINHOLE), rtol=1e-6, atol=1e-4)
    assert not bool(out.params_valid)


def test_scale_keeps_the_layer_joints_exact(dataset, layer):
    originals = [dataset.raw(i) for i in range(4)]
    scaled = [scale(s, f) for s, f in zip(originals, (0.9, 0.95, 1.05, 1.1))]
    out = hand_layer(layer, scaled)
    assert np.abs(out.joints.numpy() - np.stack([s.joints_mm for s in scaled])).max() <= 1e-3  # mm


def test_shift_moves_a_feature_by_the_hand_computed_pixels():
    """+10 mm in x: content moves by -10 / 125 × 48 = -3.84 px, i.e. column 60 -> 56."""
    patch = np.full((S, S), BACKGROUND, np.float32)
    patch[40:56, 60] = 0.2
    com = np.array([60.0, -40.0, 500.0])
    s = synthetic(patch, com)
    out = shift(s, np.array([10.0, 0.0, 0.0]))
    columns = np.nonzero((out.patch[0] < 1.0).any(0))[0]
    assert columns.tolist() == [56]  # round(60 - 3.84) = 56 px
    np.testing.assert_allclose(out.patch[0][40:56, 56], 0.2, atol=1e-6)  # depth unchanged (Δz = 0)
    np.testing.assert_allclose(out.joints, s.joints - np.array([10.0, 0.0, 0.0]) / HALF, atol=1e-6)
    back = shift(s, np.array([0.0, 0.0, 12.5]))  # cube 12.5 mm farther: depth offsets drop by 0.1
    np.testing.assert_allclose(back.patch[0][back.patch[0] < 1.0], 0.1, atol=1e-6)  # normalised
    # the window shrinks in the image (half-size 125 mm × fx / 512.5 mm): content × 1.025, 16.4 rows
    assert 16 <= (back.patch[0] < 1.0).sum() <= 17  # px
    with pytest.raises(ValueError, match="z > 0"):
        shift(s, np.array([0.0, 0.0, -600.0]))


# --------------------------------------------------------------------------- patch-only steps


def test_noise_dropout_and_occluder():
    patch = np.full((S, S), 0.2, np.float32)
    patch[:, :20] = BACKGROUND
    patch[:, 20:24] = FRONT
    s = synthetic(patch, [0.0, 0.0, 500.0])
    rng = np.random.default_rng(2)
    noisy = add_depth_noise(s, rng, 2.0).patch[0]
    np.testing.assert_array_equal(noisy[:, :24], patch[:, :24])  # background and clamped untouched
    assert np.std(noisy[:, 24:] - 0.2) * HALF == pytest.approx(2.0, rel=0.05)  # mm
    dropped = drop_pixels(s, rng, 0.25).patch[0]
    assert np.mean(dropped[:, 24:] == BACKGROUND) == pytest.approx(0.25, abs=0.02)
    hand = np.zeros((S, S), bool)
    hand[38:58, 40:60] = True
    occ = add_occluder(s._replace(mask=hand), rng, 10.0)
    covered = occ.patch[0] != patch
    assert covered.sum() == 317  # px: a disc of radius 10 px about a pixel centre, inside the patch
    assert occ.patch[0][covered].max() <= 0.2 - 10.0 / HALF + 1e-6  # at least 10 mm in front
    assert not occ.mask[covered].any() and occ.mask[~covered & hand].all()


def test_fatten_edges_grows_the_nearer_side_of_each_jump():
    patch = np.full((S, S), BACKGROUND, np.float32)
    far = np.float32(0.4)
    patch[20:80, 10:70] = far                              # a far plane
    patch[30:70, 30:40] = 0.0                              # a finger 50 mm in front of it
    patch[30:70, 44:54] = 0.0                              # another, 4 px to its right
    patch[20:80, 70:80] = 0.4 - 5.0 / HALF                 # 5 mm nearer than the plane: no edge
    s = synthetic(patch, [0.0, 0.0, 500.0])
    out = fatten_edges(s, np.random.default_rng(0), 2.0, ragged=0.0).patch[0]
    # Each finger is 2 px wider on every side (an octagon's straight edges), and the 4-px gap
    # between them is closed; the plane grows 2 px into the background above and below it.
    np.testing.assert_array_equal(out[50, 26:60], np.r_[[far] * 2, [0.0] * 28, [far] * 4].astype(np.float32))
    np.testing.assert_array_equal(out[27:73, 35], np.r_[[far], [0.0] * 44, [far]].astype(np.float32))
    assert (out[18:20, 12:68] == far).all() and (out[:18] == BACKGROUND).all()
    # Depth only ever comes nearer, and steps under 10 mm are not edges.
    assert (out <= patch).all()
    np.testing.assert_array_equal(out[20:80, 72:78], patch[20:80, 72:78])
    np.testing.assert_array_equal(fatten_edges(s, np.random.default_rng(0), 0.0).patch[0], patch)
    # Ragged: the width varies along an edge between (1 - ragged) x width and width.
    rag = fatten_edges(s, np.random.default_rng(1), 3.0, ragged=1.0).patch[0]
    grown = (rag[30:70, 24:30] == 0.0).sum(axis=1)         # rows' growth left of the first finger, px
    assert grown.min() < grown.max() <= 3
    with pytest.raises(ValueError, match="width_px"):
        fatten_edges(s, np.random.default_rng(0), -1.0)


def test_augment_is_seeded_and_keeps_the_crop_contract(dataset):
    cfg = AugmentConfig(scale_prob=1.0, noise_prob=1.0, dropout_prob=1.0, occluder_prob=1.0, fatten_prob=1.0)
    for i in range(len(dataset)):
        s = dataset.raw(i)
        a = augment(s, np.random.default_rng(i), cfg)
        b = augment(s, np.random.default_rng(i), cfg)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(augment(s, np.random.default_rng(i + 100), cfg).patch, a.patch)
        assert a.patch.shape == (1, S, S) and a.patch.dtype == np.float32
        assert a.patch.min() >= FRONT and a.patch.max() <= BACKGROUND
        np.testing.assert_allclose(a.joints, normalize_joints(a.joints_mm, a.com_mm, 250.0), atol=1e-5)
        np.testing.assert_allclose(sample_crop(a).crop_from_image, a.crop_from_image, rtol=1e-5, atol=1e-3)  # px
    with pytest.raises(TypeError, match="numpy"):
        augment(dataset[0], np.random.default_rng(0), cfg)
    to_numpy(dataset[0])  # the way back for a torch sample


def test_recentre_moves_the_crop_onto_the_palm(dataset):
    """recentre_prob 1, σ 0: the crop centre becomes the (rotated) labels' palm centre, and the
    patch is the one a shift by that offset gives; recentre_prob 0 leaves the draws unchanged."""
    from models.joints import palm_centre

    off = dict(scale_prob=0.0, noise_prob=0.0, dropout_prob=0.0, occluder_prob=0.0)
    cfg = AugmentConfig(recentre_prob=1.0, recentre_sigma_mm=0.0, **off)
    moved = []
    for i in range(len(dataset)):
        s = dataset.raw(i)
        a = augment(s, np.random.default_rng(i), cfg)
        np.testing.assert_allclose(a.com_mm, palm_centre(a.joints_mm.astype(np.float64)), atol=1e-3)  # mm
        np.testing.assert_allclose(a.joints, normalize_joints(a.joints_mm, a.com_mm, 250.0), atol=1e-5)
        moved.append(np.linalg.norm(s.com_mm - palm_centre(s.joints_mm.astype(np.float64))))
        same = augment(s, np.random.default_rng(i), AugmentConfig(recentre_prob=0.0, fatten_prob=0.0, **off))
        plain = augment(s, np.random.default_rng(i), AugmentConfig(**off))
        np.testing.assert_array_equal(same.patch, plain.patch)
    assert np.median(moved) > 5.0   # mm: the finder's centres were off the palm to begin with


def test_augment_config_validation():
    for bad in (dict(rotation_prob=1.5), dict(scale_range=(1.1, 0.9)), dict(scale_range=(0.0, 1.0)),
                dict(shift_sigma_mm=-1.0), dict(recentre_prob=-0.1), dict(recentre_sigma_mm=-1.0),
                dict(occluder_radius=(0.1, 2.0)), dict(rotation_max_deg=270.0), dict(fatten_prob=2.0),
                dict(fatten_max_px=-1.0)):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


def test_dataset_augmentation_depends_on_seed_epoch_and_index(shards):
    ds = ShardDataset(shards[0], augment=AugmentConfig(), seed=3)
    first = ds[5].patch
    assert torch.equal(ds[5].patch, first)
    ds.set_epoch(1)
    assert not torch.equal(ds[5].patch, first)
    ds.set_epoch(0)
    assert torch.equal(ds[5].patch, first)


def test_make_loader_batches_are_seeded(shards):
    def run(seed):
        loader = make_loader(shards[0], 5, AugmentConfig(), seed=seed)
        set_epoch(loader, 2)
        return list(loader)

    a, b = run(7), run(7)
    assert [len(x.index) for x in a] == [5, 5, 5, 1]
    assert isinstance(a[0], Batch)
    assert a[0].patch.shape == (5, 1, S, S) and a[0].joints.shape == (5, 21, 3) and a[0].mask.dtype == torch.bool
    assert sorted(torch.cat([x.index for x in a]).tolist()) == list(range(16))
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)
    assert not all(torch.equal(x.index, y.index) for x, y in zip(a, run(8)))


def test_pinhole_rotation_is_the_general_pull_back():
    """Without a lens model the rotation's pull-back is the homography A·K·Rᵀ·K⁻¹·A⁻¹: on every
    patch pixel it gives the general ray path's source pixel (1e-9 px) and w (1e-12)."""
    from models.data import _rotate_step, pull_rotation

    rng = np.random.default_rng(3)
    v, u = np.mgrid[0:S, 0:S].astype(np.float64)
    for com in ([0.0, 0.0, 500.0], [180.0, -120.0, 420.0], [-260.0, 90.0, 700.0]):
        sample = synthetic(rng.uniform(-1, 1, (S, S)), np.array(com))
        angle = math.radians(rng.uniform(-180, 180))
        _, warp = _rotate_step(sample, angle)
        assert warp.pull.func is pull_homography
        c = np.asarray(sample.com_mm, dtype=np.float64)
        r = axis_angle_to_matrix(torch.as_tensor(c / np.linalg.norm(c) * angle)).numpy()
        general = pull_rotation(crop_window(c, PINHOLE), PINHOLE, r.T, u, v)
        fast = warp.pull(u, v)
        np.testing.assert_allclose(fast[0], general[0], atol=1e-9)  # px
        np.testing.assert_allclose(fast[1], general[1], atol=1e-9)  # px
        np.testing.assert_allclose(fast[2], general[2], atol=1e-12)
