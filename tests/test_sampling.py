"""The sampler of the synthetic data generator (models/sampling.py).

Checks are made through the hand layer itself (full forward with skinning and the wrist
bend) and ``calib.project``, not through the sampler's own shortcuts. Units: angles in
radians unless a name says degrees, lengths in mm, pixels with (0, 0) the centre of the
top-left pixel.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calib import Intrinsics, get_preset, project
from models import sampling as S
from models.hand_layer import HandLayer
from models.handmesh import ASSET_PATH
from models.joints import Joint
from models.posebank import load_posebank
from models.skeleton import ARTICULATION, ARTICULATIONS, theta_limits

D435 = get_preset("d435_848x480").intrinsics


@pytest.fixture(scope="module")
def layer() -> HandLayer:
    return HandLayer(dtype=torch.float64)


@pytest.fixture(scope="module")
def sampler() -> S.HandSampler:
    return S.HandSampler()


@pytest.fixture(scope="module")
def batch(sampler: S.HandSampler) -> S.HandBatch:
    return sampler.sample(np.random.default_rng(123), 4000, D435, "train")


def _forward(layer: HandLayer, b: S.HandBatch, sel: np.ndarray | slice = slice(None)):
    t = lambda a: torch.as_tensor(a[sel], dtype=torch.float64)  # noqa: E731
    with torch.no_grad():
        return layer(t(b.theta), t(b.alpha), t(b.beta), t(b.wrist))


def _inside(uv: np.ndarray, intr: Intrinsics) -> np.ndarray:
    return ((uv[..., 0] >= -0.5) & (uv[..., 0] <= intr.width - 0.5)
            & (uv[..., 1] >= -0.5) & (uv[..., 1] <= intr.height - 0.5))


def _binomial_tolerance(p: float, n: int) -> float:
    return 4.0 * math.sqrt(p * (1.0 - p) / n) + 1e-9  # 4 σ of a sample fraction


# --- articulations -----------------------------------------------------------------------

def test_batch_types_and_shapes(batch: S.HandBatch) -> None:
    n = 4000
    assert batch.theta.shape == (n, 26) and batch.theta.dtype == np.float32
    assert batch.alpha.shape == (n, 6) and batch.beta.shape == (n, 7) and batch.wrist.shape == (n, 2)
    for name in ("view", "pose_source", "family"):
        assert getattr(batch, name).shape == (n,) and getattr(batch, name).dtype == np.int8
    assert batch.subject.dtype == np.int32 and batch.posebank_index.dtype == np.int32
    assert np.isfinite(batch.theta).all()


def test_articulations_within_limits(batch: S.HandBatch) -> None:
    lo, hi = theta_limits()
    arts = batch.theta[:, ARTICULATION].astype(np.float64)
    assert (arts >= lo[ARTICULATION] - 1e-9).all()  # rad
    assert (arts <= hi[ARTICULATION] + 1e-9).all()  # rad


def test_same_seed_same_arrays(sampler: S.HandSampler) -> None:
    a = sampler.sample(np.random.default_rng(7), 300, D435, "val")
    b = sampler.sample(np.random.default_rng(7), 300, D435, "val")
    c = sampler.sample(np.random.default_rng(8), 300, D435, "val")
    for field in S.HandBatch._fields:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.theta, c.theta)
    # A fresh sampler (new pools, new layers) gives the same arrays too.
    d = S.HandSampler().sample(np.random.default_rng(7), 300, D435, "val")
    np.testing.assert_array_equal(a.theta, d.theta)


def test_mixture_fractions_match_the_config(batch: S.HandBatch) -> None:
    cfg = S.SamplerConfig()
    n = batch.theta.shape[0]
    for source, p in zip(S.PoseSource, cfg.pose.mixture):
        share = float(np.mean(batch.pose_source == source))
        assert abs(share - p) < _binomial_tolerance(p, n), (source, share, p)
    assert ((batch.posebank_index >= 0) == (batch.pose_source == S.PoseSource.BANK)).all()
    assert ((batch.family >= 0) == (batch.pose_source == S.PoseSource.SYNERGY)).all()
    fam = batch.family[batch.family >= 0]
    weights = np.asarray(cfg.pose.family_weights) / np.sum(cfg.pose.family_weights)
    for f, p in zip(S.Family, weights):
        share = float(np.mean(fam == f))
        assert abs(share - p) < _binomial_tolerance(p, fam.size), (f, share, p)
    share = float(np.mean(batch.view == S.View.EGOCENTRIC))
    p = cfg.view.egocentric_fraction
    assert abs(share - p) < _binomial_tolerance(p, n)


def test_pinch_and_ok_bring_thumb_tip_to_index_tip(layer: HandLayer, batch: S.HandBatch) -> None:
    for family in (S.Family.PINCH, S.Family.OK):
        sel = np.flatnonzero(batch.family == family)
        assert sel.size > 50
        joints = _forward(layer, batch, sel).joints.numpy()
        gap = np.linalg.norm(joints[:, Joint.THUMB_TIP] - joints[:, Joint.INDEX_TIP], axis=-1)
        assert gap.max() < 15.0, (family, np.sort(gap)[-5:])  # mm, tip joints sit 3 mm inside the tips
    # Families without a contact keep the thumb away from the index tip most of the time.
    sel = np.flatnonzero(np.isin(batch.family, [S.Family.SPREAD, S.Family.POINT]))
    joints = _forward(layer, batch, sel).joints.numpy()
    gap = np.linalg.norm(joints[:, Joint.THUMB_TIP] - joints[:, Joint.INDEX_TIP], axis=-1)
    assert np.median(gap) > 40.0  # mm


def test_synergy_couples_dip_to_pip_and_spread_to_extension(batch: S.HandBatch) -> None:
    syn = batch.theta[batch.family >= 0, 6:].astype(np.float64)
    pip, dip = syn[:, [6, 10, 14, 18]], syn[:, [7, 11, 15, 19]]
    lo, hi = theta_limits()
    free = (dip > lo[6:][[7, 11, 15, 19]] + 1e-6) & (dip < hi[6:][[7, 11, 15, 19]] - 1e-6)
    deviation = np.degrees(np.abs(dip - 2.0 / 3.0 * pip))[free]
    assert np.median(deviation) < 4.0  # deg: 2/3 coupling plus a few degrees of jitter
    spread = syn[:, 5] - syn[:, 17]            # index abduction minus little abduction, rad
    curl = syn[:, [4, 8, 12, 16]].mean(1) + syn[:, [6, 10, 14, 18]].mean(1)
    assert np.corrcoef(spread, curl)[0, 1] < -0.4


def test_every_limit_range_is_reached(sampler: S.HandSampler) -> None:
    b = sampler.sample(np.random.default_rng(5), 20000, D435, "train")
    deg = np.degrees(b.theta[:, ARTICULATION].astype(np.float64))
    for i, d in enumerate(ARTICULATIONS):
        counts, _ = np.histogram(deg[:, i], bins=S.COVERAGE_BINS, range=(d.lo_deg, d.hi_deg))
        assert (counts > 0).all(), d.name


# --- pose-bank and subject splits ---------------------------------------------------------

def test_bank_splits_are_disjoint_blocks() -> None:
    num = load_posebank().theta.shape[0]
    parts = {s: S.bank_indices(s, num) for s in S.SPLITS}
    assert sum(p.size for p in parts.values()) > 0.95 * num
    assert not set(parts["train"]) & set(parts["val"])
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["val"]) & set(parts["test"])
    # Held-out poses are at least a guard's distance from any train pose.
    train = np.asarray(parts["train"])
    held = np.concatenate([parts["val"], parts["test"]])
    nearest = np.abs(held[:, None] - train[None, :]).min(1)
    assert nearest.min() > S.SplitConfig().bank_guard


def test_held_out_bank_poses_never_appear_in_train(sampler: S.HandSampler, batch: S.HandBatch) -> None:
    num = sampler.bank_angles.shape[0]
    held = set(S.bank_indices("val", num)) | set(S.bank_indices("test", num))
    used = set(batch.posebank_index[batch.posebank_index >= 0].tolist())
    assert len(used) > 500 and not used & held
    val = sampler.sample(np.random.default_rng(3), 1000, D435, "val")
    assert set(val.posebank_index[val.posebank_index >= 0].tolist()) <= set(S.bank_indices("val", num))


def test_subject_pools_are_disjoint(sampler: S.HandSampler, batch: S.HandBatch) -> None:
    pools = {s: sampler.pool(s) for s in S.SPLITS}
    ids = [set(p.ids.tolist()) for p in pools.values()]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    shapes = [{tuple(np.round(np.r_[a, b], 9)) for a, b in zip(p.alpha, p.beta)} for p in pools.values()]
    assert not shapes[0] & shapes[1] and not shapes[0] & shapes[2] and not shapes[1] & shapes[2]
    assert set(batch.subject.tolist()) <= ids[0]
    train = pools["train"]
    row = np.searchsorted(train.ids, batch.subject)
    np.testing.assert_allclose(batch.beta, train.beta[row].astype(np.float32))


def test_make_subjects(layer: HandLayer) -> None:
    a1, b1 = S.make_subjects(11, 50)
    a2, b2 = S.make_subjects(11, 50)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    cfg = S.ShapeConfig()
    assert a1.shape == (50, 6) and b1.shape == (50, 7)
    assert a1.min() >= cfg.alpha_clip[0] and a1.max() <= cfg.alpha_clip[1]
    others = np.delete(b1, S.SIZE_BETA, axis=1)
    assert np.abs(others).max() <= cfg.beta_clip
    with pytest.raises(ValueError):
        S.make_subjects(0, 0)


def test_hand_lengths_span_children_to_large_adults(layer: HandLayer, sampler: S.HandSampler) -> None:
    pool = sampler.pool("train")
    assert pool.hand_length_mm.min() <= 125.0 and pool.hand_length_mm.max() >= 225.0  # mm
    # Independent measure: wrist joint to the farthest middle-finger vertex of the rest mesh.
    with np.load(ASSET_PATH) as z:
        middle = np.flatnonzero(z["part"] == 3)
    ends = np.argsort(pool.hand_length_mm)[[0, 1, -2, -1]]
    with torch.no_grad():
        rest = layer.rest_shape(torch.as_tensor(pool.alpha[ends]), torch.as_tensor(pool.beta[ends]))
    length = np.linalg.norm(rest.vertices[:, middle].numpy() - rest.joints[:, :1].numpy(), axis=-1).max(1)
    np.testing.assert_allclose(length, pool.hand_length_mm[ends], atol=0.05)  # mm
    # The held-out pools span children to adults too.
    for split in ("val", "test"):
        lengths = sampler.pool(split).hand_length_mm
        assert lengths.min() <= 135.0 and lengths.max() >= 215.0  # mm


# --- viewpoints ----------------------------------------------------------------------------

def _view_batch(view: S.View, intr: Intrinsics, n: int = 500) -> S.HandBatch:
    cfg = S.SamplerConfig(view=S.ViewConfig(egocentric_fraction=float(view)))
    return S.HandSampler(cfg).sample(np.random.default_rng(31 + int(view)), n, intr, "train")


def _forearm_far_end(layer: HandLayer, vertices: torch.Tensor) -> np.ndarray:
    """(n, 3): centroid of the forearm's far cap (part 6 vertices farthest from the wrist at rest)."""
    with np.load(ASSET_PATH) as z:
        part = z["part"]
    with torch.no_grad():
        rest = layer.rest_shape(torch.ones(1, 6, dtype=torch.float64), torch.zeros(1, 7, dtype=torch.float64))
    y = rest.vertices[0, :, 1].numpy()
    arm = np.flatnonzero(part == S.FOREARM_PART)
    cap = arm[y[arm] < y[arm].min() + 0.5]
    return vertices[:, cap].numpy().mean(1)


@pytest.mark.parametrize("view", list(S.View))
@pytest.mark.parametrize("camera", ["d435_848x480", "sr300_320x240", "azure_kinect_nfov_unbinned"])
def test_hands_are_in_view_at_the_documented_depths(layer: HandLayer, view: S.View, camera: str) -> None:
    intr = get_preset(camera).intrinsics
    b = _view_batch(view, intr)
    assert (b.view == view).all()
    out = _forward(layer, b)
    joints = out.joints.numpy()
    uv = project(joints, intr)[..., :2]
    assert _inside(uv, intr).all(1).mean() >= 0.95
    palm = joints[:, list(S.PALM_CENTRE_JOINTS)].mean(1)
    assert _inside(project(palm, intr)[:, :2], intr).all()
    cfg = S.ViewConfig()
    lo, hi = cfg.ego_depth_mm if view == S.View.EGOCENTRIC else cfg.third_depth_mm
    assert (palm[:, 2] >= lo - 0.01).all() and (palm[:, 2] <= hi + 0.01).all()  # mm
    assert (joints[..., 2] > 0).all()
    lim = np.radians(cfg.wrist_limits_deg)
    assert (np.abs(b.wrist) <= lim + 1e-6).all()  # rad


def test_third_person_depths_are_denser_in_the_core(layer: HandLayer) -> None:
    b = _view_batch(S.View.THIRD_PERSON, D435, n=1500)
    joints = _forward(layer, b).joints.numpy()
    z = joints[:, list(S.PALM_CENTRE_JOINTS)].mean(1)[:, 2]
    core = np.mean((z >= 300) & (z <= 700)) / 400.0    # share per mm inside 300-700
    outer = np.mean((z < 300) | (z > 700)) / 400.0     # share per mm in 200-300 and 700-1000
    assert core > 2.5 * outer


def test_third_person_orientations(layer: HandLayer) -> None:
    b = _view_batch(S.View.THIRD_PERSON, D435, n=1500)
    out = _forward(layer, b)
    rot = out.transforms[:, 0, :3, :3].numpy()               # camera_from_hand
    wrist = out.joints[:, 0].numpy()
    palm_normal = rot[:, :, 2]                                 # hand +z (palmar) in the camera frame
    towards = np.einsum("ni,ni->n", palm_normal, -wrist / np.linalg.norm(wrist, axis=-1, keepdims=True))
    assert np.mean(towards > 0.5) > 0.15 and np.mean(towards < -0.5) > 0.15  # palm / back to the camera
    assert np.mean(np.abs(towards) < 0.5) > 0.15                               # sideways
    fingers = rot[:, :2, 1]                                    # hand +y (distal) in the image plane
    angle = np.degrees(np.arctan2(fingers[:, 0], -fingers[:, 1]))  # 0: fingers up in the image
    assert np.mean(np.abs(angle) < 45) > 0.2 and np.mean(np.abs(angle) > 135) > 0.05
    assert np.mean((np.abs(angle) > 45) & (np.abs(angle) < 135)) > 0.15
    # The forearm never points at the camera: elevation >= -10 deg from the image plane
    # (0.5 deg more: the far cap's centre sits 1 mm off the forearm's axis).
    far = _forearm_far_end(layer, out.vertices)
    d = far - wrist
    assert (d[:, 2] / np.linalg.norm(d, axis=-1) > -math.sin(math.radians(10.5))).all()


def test_egocentric_forearm_enters_from_below(layer: HandLayer) -> None:
    b = _view_batch(S.View.EGOCENTRIC, D435)
    out = _forward(layer, b)
    far = _forearm_far_end(layer, out.vertices)
    wrist = out.joints[:, 0].numpy()
    near = far[:, 2] < 1.0                                     # mm: at or behind the camera plane
    uv_far = project(np.where(near[:, None], 1.0, far), D435)[:, :2]
    uv_wrist = project(wrist, D435)[:, :2]
    ok = near | ~_inside(uv_far, D435) | (uv_far[:, 1] > uv_wrist[:, 1])
    assert ok.mean() >= 0.9
    # The back of the hand faces the camera for most egocentric samples.
    rot = out.transforms[:, 0, :3, :3].numpy()
    away = np.einsum("ni,ni->n", rot[:, :, 2], wrist / np.linalg.norm(wrist, axis=-1, keepdims=True))
    assert np.mean(away > 0.0) > 0.6
    # Fingers point up in the image for most of them.
    assert np.mean(rot[:, 1, 1] < 0.0) > 0.8


def test_place_hands_closed_form_fit_is_tight() -> None:
    # A point cloud in front of the camera: the least depth puts it exactly on the box edges.
    rng = np.random.default_rng(0)
    rel = rng.normal(0.0, 60.0, (50, 21, 3))
    box = S.image_box(D435, 0.0)
    depth = S._fit_depth(rel, box, near=1.0)
    lo, hi = S._joint_intervals(rel, depth, box)
    slack = np.minimum(hi - lo, 1e9).min(1)
    np.testing.assert_allclose(slack, 0.0, atol=1e-6)  # mm: one axis has no room left


# --- configuration, errors and the report ---------------------------------------------------

def test_invalid_inputs_raise(sampler: S.HandSampler) -> None:
    with pytest.raises(ValueError, match="split"):
        sampler.sample(np.random.default_rng(0), 10, D435, "holdout")
    with pytest.raises(ValueError, match="positive"):
        sampler.sample(np.random.default_rng(0), 0, D435, "train")
    with pytest.raises(TypeError):
        sampler.sample(0, 10, D435, "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        S.PoseConfig(bank_weight=-1.0)
    with pytest.raises(ValueError, match="family_weights"):
        S.PoseConfig(family_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="egocentric_fraction"):
        S.ViewConfig(egocentric_fraction=1.5)


def test_sample_hands_wrapper_and_speed() -> None:
    import time

    rng = np.random.default_rng(0)
    S.sample_hands(rng, 10, D435, "train")   # builds and caches the sampler
    start = time.perf_counter()
    b = S.sample_hands(rng, 5000, D435, "train")
    rate = 5000 / (time.perf_counter() - start)
    assert b.theta.shape == (5000, 26)
    assert rate > 2000.0  # samples/s; about 15 k/s on an idle core, generous for a loaded CI box


def test_coverage_report(tmp_path, capsys) -> None:
    out = tmp_path / "coverage.png"
    S.main(["--coverage", "--n", "400", "--out", str(out)])
    text = capsys.readouterr().out
    assert "filled" in text and "hand length" in text and "egocentric" in text
    assert out.is_file() and out.stat().st_size > 10_000


def test_placement_within_a_depth_range(sampler: S.HandSampler) -> None:
    """With a depth range, every placement that succeeds has its palm centre inside it (mm),
    and redrawing keeps most placements (a 450-900 mm camera); ``sample`` is
    ``place(bodies(...))`` with the same draws."""
    bodies = sampler.bodies(np.random.default_rng(5), 300, "train")
    for near, far, share in ((450.0, 900.0, 0.97), (550.0, 650.0, 0.6)):
        placed = S.place_hands(np.random.default_rng(6), bodies.view, bodies.joints, bodies.palm,
                               bodies.forearm_end, D435, sampler.cfg.view, (near, far))
        z = placed.palm_centre[placed.in_view, 2]
        assert placed.in_view.mean() >= share
        assert z.min() >= near and z.max() <= far  # mm
    rng = np.random.default_rng(9)
    a = sampler.sample(rng, 20, D435, "val")
    rng = np.random.default_rng(9)
    b = sampler.place(rng, sampler.bodies(rng, 20, "val"), D435)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
