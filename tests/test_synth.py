"""Synthetic data: the labels agree with the pictures, generation is reproducible and resumable."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calib import project
from models.data import sample_from_arrays, sample_intrinsics
from models.synth import (
    FramePolicy, Renderer, SynthConfig, contact_sheet, cv2_resize_nearest, generate, load_shard, render_shard,
    shard_path,
)

PALM = [0, 5, 9, 13, 17]
TIPS = [4, 8, 12, 16, 20]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(SynthConfig(chunk=16, hands_per_draw=32, seed=7))


@pytest.fixture(scope="module")
def frames(renderer):
    arrays, stats = render_shard(renderer, "train", 0, 40)
    return arrays, stats


def _crop_pixels(arrays, i, joints):
    uv1 = np.concatenate((arrays["joints_uvd"][i][joints, :2], np.ones((len(joints), 1))), 1)
    return (arrays["crop_from_image"][i].astype(np.float64) @ uv1.T).T[:, :2]


def test_fingertips_fall_on_the_hand_mask(frames):
    """Projected fingertips lie on (or within 2 crop pixels of) the rendered hand's silhouette."""
    arrays, _ = frames
    size = arrays["patch"].shape[1]
    far = []
    for i in range(len(arrays["patch"])):
        mask = arrays["mask"][i].astype(np.uint8)
        dist = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)  # crop px to the nearest hand pixel
        uv = np.round(_crop_pixels(arrays, i, TIPS + PALM)).astype(int)
        inside = (uv >= 0).all(1) & (uv < size).all(1)
        far.extend(dist[uv[inside, 1], uv[inside, 0]].tolist())
    far = np.asarray(far)
    assert far.size > 100
    assert np.percentile(far, 95) <= 2.0  # crop px; occluded tips still project onto the hand's silhouette
    assert far.max() <= 6.0  # crop px


def test_palm_surface_is_just_in_front_of_the_joints(frames):
    """Along the ray through a palm joint, the measured hand surface is in front of the joint.

    Mostly the palm or back of the hand, half a hand's thickness in front; sometimes curled
    fingers occlude the joint and the gap grows, so the upper bound is on the quartile.
    """
    arrays, _ = frames
    gaps = []
    for i in range(len(arrays["patch"])):
        cube = 250.0
        uv = np.round(_crop_pixels(arrays, i, PALM)).astype(int)
        for k, (u, v) in enumerate(uv):
            if not (0 <= u < 96 and 0 <= v < 96) or not arrays["mask"][i][v, u]:
                continue
            value = float(arrays["patch"][i][v, u])
            if abs(value) >= 1.0:  # no depth there (dropout) or clipped
                continue
            surface = arrays["com_mm"][i][2] + value * cube / 2
            gaps.append(arrays["joints_uvd"][i][PALM[k], 2] - surface)
    gaps = np.asarray(gaps)
    assert gaps.size > 50
    assert np.percentile(gaps, 5) > -4.0  # mm: sensor noise can put the surface slightly behind
    assert np.percentile(gaps, 75) < 30.0  # mm: about half a palm/finger thickness
    assert 3.0 < np.median(gaps) < 20.0  # mm


def test_labels_are_consistent(frames, renderer):
    import torch

    arrays, stats = frames
    n = len(arrays["patch"])
    assert n == 40 and stats.kept >= 40
    assert arrays["patch"].dtype == np.float16 and arrays["patch"].min() >= -1 and arrays["patch"].max() <= 1
    # The stored layer inputs reproduce the stored joints.
    with torch.no_grad():
        out = renderer.layer(torch.as_tensor(arrays["theta"]), torch.as_tensor(arrays["alpha"]),
                             torch.as_tensor(arrays["beta"]))
    np.testing.assert_allclose(out.joints.numpy(), arrays["joints_mm"], atol=1e-3)  # mm
    # uvd are the projections of the joints with the stored intrinsics, lens model included.
    assert len(set(arrays["distortion"].tolist())) > 1  # this seed has pinhole and distorted cameras
    for i in range(n):
        intr = sample_intrinsics(sample_from_arrays(arrays, i, 250.0))
        uvd = project(arrays["joints_mm"][i].astype(np.float64), intr)
        np.testing.assert_allclose(arrays["joints_uvd"][i], uvd, atol=1e-2)  # px and mm
    # The crop centre is near the palm centre (the finder's job), never far.
    palm = arrays["joints_mm"][:, PALM].mean(1)
    err = np.linalg.norm(arrays["com_mm"] - palm, axis=1)
    assert err.max() <= FramePolicy().max_com_error_mm  # mm


def test_same_seed_same_bytes(renderer):
    a, _ = render_shard(renderer, "val", 3, 12)
    b, _ = render_shard(renderer, "val", 3, 12)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    c, _ = render_shard(renderer, "val", 4, 12)
    assert a["patch"].tobytes() != c["patch"].tobytes()


def test_generate_writes_shards_and_resumes(tmp_path):
    cfg = SynthConfig(frames_per_shard=10, chunk=8, hands_per_draw=16, seed=3)
    report = generate(tmp_path, "test", 20, cfg, workers=1)
    assert report["frames"] == 20
    assert 0.0 <= report["start_s"] < report["seconds"]   # s, the worker's start-up, reported once
    first = shard_path(tmp_path, "test", 0)
    shard = load_shard(first)
    assert shard["patch"].shape == (10, 96, 96) and shard["meta"]["split"] == "test"
    mtime = first.stat().st_mtime_ns
    again = generate(tmp_path, "test", 20, cfg, workers=1)
    assert again["frames"] == 0 and first.stat().st_mtime_ns == mtime  # nothing rewritten
    assert again["start_s"] is None
    sheet = contact_sheet(shard, count=10, columns=5)
    assert sheet.shape == (2 * 192, 5 * 192, 3) and sheet.any()


def test_coarse_ray_cast_keeps_the_silhouette_in_place(renderer):
    """A near hand's window (390 px across) is cast at one ray per crop pixel (106 rays across)
    and brought back with nearest neighbours: the silhouette matches the full-resolution
    cast in place (centroid within 1 px; a coarse pixel is 3.7 px) and shape (IoU > 0.9)."""
    import torch

    from calib import get_preset
    from models.render import raycast

    intr = get_preset("d435_848x480").intrinsics
    theta = torch.zeros(1, 26)
    theta[0, 3:6] = torch.tensor([0.0, 0.0, 300.0])   # wrist 300 mm in front of the camera
    with torch.no_grad():
        verts = renderer.layer(theta, torch.zeros(1, 6), torch.zeros(1, 7)).vertices[0].numpy()
    win = intr.window(200, 40, 390, 390)
    meshes = [(verts, renderer.faces)]
    fine = raycast(meshes, win, 1).geometry_id == 0
    coarse = renderer._raycast(meshes, win).geometry_id == 0
    assert coarse.shape == fine.shape and 0.05 < fine.mean() < 0.6
    iou = (fine & coarse).sum() / (fine | coarse).sum()
    assert iou > 0.9
    centroid = lambda m: np.array(np.nonzero(m), dtype=np.float64).mean(1)  # noqa: E731
    np.testing.assert_allclose(centroid(coarse), centroid(fine), atol=1.0)  # px of the camera


def test_upsampling_picks_the_nearest_coarse_pixel():
    """Every camera pixel takes the coarse pixel whose centre is nearest (``Intrinsics.scaled``
    puts coarse centre c at camera position (c + 0.5) * 390 / 106 - 0.5); cv2's plain
    INTER_NEAREST would be off by up to one camera pixel."""
    coarse = np.repeat(np.arange(106, dtype=np.int32)[None, :], 2, 0)
    picked = cv2_resize_nearest(coarse, 390, 2)[0]
    ratio = 390 / 106
    distance = np.abs((picked + 0.5) * ratio - 0.5 - np.arange(390))  # camera px
    assert distance.max() <= 0.5 * ratio + 1e-9


def test_written_shards_evaluate_with_several_models(tmp_path):
    """Shards as the generator writes them feed ``python -m models.evaluate``, which takes
    several models after one ``--model`` (as the README's success-curve command does)."""
    import json
    from pathlib import Path

    from models.evaluate import main as evaluate

    generate(tmp_path, "test", 12, SynthConfig(frames_per_shard=12, chunk=8, hands_per_draw=16, seed=5), workers=1)
    weights = Path(__file__).resolve().parent.parent / "models" / "weights"
    out = tmp_path / "eval.json"
    code = evaluate(["--model", str(weights / "deephps.pt"), str(weights / "compare" / "sdnet.pt"),
                     "--data", str(tmp_path / "test"), "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert sorted(results) == ["deephps", "sdnet"]
    for r in results.values():
        assert r["frames"] == 12 and 0.0 < r["mean_mm"] < 200.0  # mm
