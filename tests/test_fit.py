"""models.fit: the hand layer fitted to predicted joints and to a crop's depth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from calib import get_preset
from models.crop import BACKGROUND, FRONT, Crop, CropConfig, crop_depth
from models.fit import FitConfig, HandFitter, observed_points, silhouettes
from models.hand_layer import HandLayer
from models.joints import Joint, palm_centre
from models.losses import invalid_poses
from models.render import raycast
from models.skeleton import theta_limits

INTR = get_preset("d435_848x480").intrinsics


@pytest.fixture(scope="module")
def fitter() -> HandFitter:
    return HandFitter(FitConfig())


def _hand(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A layer hand 450 mm in front of the camera, palm towards it, fingers half bent:
    θ (26), α (6), β (7) and its joints (21, 3) mm, float64."""
    rng = np.random.default_rng(seed)
    lo, hi = theta_limits()
    theta = np.zeros(26)
    theta[0:3] = [np.pi, 0.0, 0.0]                     # hand y (fingers) up in the image, palm to the camera
    theta[0:3] += rng.normal(0.0, 0.2, 3)
    theta[3:6] = [0.0, 60.0, 450.0]
    theta[6:] = lo[6:] + (hi[6:] - lo[6:]) * rng.uniform(0.25, 0.5, 20)
    alpha = rng.uniform(0.95, 1.05, 6)
    beta = rng.uniform(-0.5, 0.5, 7)
    layer = HandLayer().double()
    out = layer(*(torch.as_tensor(a)[None] for a in (theta, alpha, beta)))
    return theta, alpha, beta, out.joints[0].numpy()


def _render_crop(theta: np.ndarray, alpha: np.ndarray, beta: np.ndarray):
    layer = HandLayer().double()
    out = layer(*(torch.as_tensor(a)[None] for a in (theta, alpha, beta)))
    depth = raycast([(out.vertices[0].numpy(), layer.faces.numpy())], INTR).depth
    return crop_depth(depth, INTR, palm_centre(out.joints[0].numpy()), CropConfig()), out.joints[0].numpy()


def test_start_recovers_a_layer_hand_from_its_joints(fitter):
    for seed in range(4):
        _, _, _, joints = _hand(seed)
        params = fitter.start(joints[None])
        got = fitter._posed(params.rotation, params.x)[0]
        # IK from a flat template in 5 steps: within 1.5 mm on average (mm)
        assert np.linalg.norm(got[0].numpy() - joints, axis=-1).mean() < 1.5


def test_fit_pulls_a_wrong_hand_onto_the_depth(fitter):
    theta, alpha, beta, _ = _hand(7)
    crop, truth = _render_crop(theta, alpha, beta)
    rng = np.random.default_rng(0)
    # The "prediction": the true hand with every finger moved 12 mm and the whole hand 6 mm.
    wrong = truth + rng.normal(0.0, 1.0, (1, 3)) * 6.0
    wrong[1:] += rng.normal(0.0, 1.0, (20, 3)) * 12.0 / np.sqrt(3.0)
    before = np.linalg.norm(wrong - truth, axis=-1).mean()
    res = fitter([crop], [INTR], wrong[None])
    after = np.linalg.norm(res.joints[0] - truth, axis=-1).mean()
    assert before > 10.0          # mm: the start is well off
    assert after < 0.4 * before   # the depth pulls it most of the way back (measured 11.4 -> 2.9 mm)
    lo, hi = theta_limits()
    assert np.all(res.theta[0, 6:] >= lo[6:] - 1e-9) and np.all(res.theta[0, 6:] <= hi[6:] + 1e-9)
    # the mesh returned is the layer's for the returned parameters (mm)
    layer = HandLayer().double()
    again = layer(torch.as_tensor(res.theta), torch.as_tensor(res.alpha), torch.as_tensor(res.beta),
                  root_rotation=torch.as_tensor(res.rotation))
    assert np.abs(again.vertices.numpy() - res.vertices).max() < 1e-6


def test_fit_keeps_a_right_hand(fitter):
    theta, alpha, beta, _ = _hand(3)
    crop, truth = _render_crop(theta, alpha, beta)
    res = fitter([crop], [INTR], truth[None])
    # noiseless depth of the true hand: the fit stays on it (mm)
    assert np.linalg.norm(res.joints[0] - truth, axis=-1).mean() < 1.5   # measured 0.5-0.9 mm


def test_blank_crop_keeps_the_prediction(fitter):
    _, _, _, joints = _hand(1)
    blank = crop_depth(np.zeros((INTR.height, INTR.width), np.float32), INTR, palm_centre(joints), CropConfig())
    assert not observed_points([blank], [INTR], 64).valid.any()
    res = fitter([blank], [INTR], joints[None])
    # nothing observed: the layer's hand nearest to the prediction (mm)
    assert np.linalg.norm(res.joints[0] - joints, axis=-1).mean() < 1.5


def test_fit_never_returns_an_impossible_hand(fitter):
    """Depth of hands the layer can make but a hand cannot: a shape at a corner of the α, β
    ranges (test frame 1790's fit: long spread fingers on a short palm) with every articulation
    at a limit. Fitted to that depth from those joints, the fit still returns a possible pose
    (the evaluation's measure), the layer's mesh for the parameters it returns."""
    lo, hi = theta_limits()
    alpha, beta = np.full(6, 1.2), np.array([-1.51, 0.9, -2.18, -2.0, 1.87, 1.95, 1.12])
    layer = HandLayer().double()
    impossible, template_fallbacks = 0, 0
    for seed in range(12):
        theta = _hand(seed)[0]
        theta[6:] = np.where(np.random.default_rng(seed).uniform(size=20) < 0.5, lo[6:], hi[6:])
        crop, truth = _render_crop(theta, alpha, beta)
        if not invalid_poses(truth[None])[0]:
            continue
        impossible += 1
        res = fitter([crop], [INTR], truth[None])
        assert not invalid_poses(res.joints)[0], seed
        again = layer(torch.as_tensor(res.theta), torch.as_tensor(res.alpha), torch.as_tensor(res.beta),
                      root_rotation=torch.as_tensor(res.rotation))
        assert np.abs(again.joints.numpy() - res.joints).max() < 1e-6     # mm
        template_fallbacks += bool(np.allclose(res.alpha, 1.0) and np.allclose(res.beta, 0.0))
    assert impossible >= 6           # measured 9 of the 12 seeds
    assert template_fallbacks >= 1   # where no iterate was possible (seed 6)


def test_bad_input_is_refused(fitter):
    with pytest.raises(ValueError, match="points"):
        FitConfig(points=0)
    with pytest.raises(ValueError, match="prior_mm"):
        FitConfig(prior_mm=0.0)
    with pytest.raises(ValueError, match="silhouette_mm"):
        FitConfig(silhouette_mm=-1.0)
    with pytest.raises(ValueError, match="shape_every"):
        FitConfig(shape_every=0)
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        fitter.start(np.zeros((1, 14, 3)))


def test_fit_in_the_pipeline_on_the_demo_recording():
    """The app's --fit on the shipped labelled recording (its first 40 frames): more accurate
    than the network alone (150 frames: 15.8 -> 10.3 mm, README)."""
    from pathlib import Path

    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.evaluate import predict_frames
    from sources import open_source

    root = Path(__file__).resolve().parents[1]
    demo = root / "app/assets/demo.db3"
    predictor = load_predictor(root / "models/weights/deephps.onnx", "cpu")
    errors = {}
    for fit in (False, True):
        with open_source(str(demo), labels=str(demo.with_name("demo.labels.jsonl"))) as src:
            pred = predict_frames(predictor, src, max_frames=40, fit=fit)
        assert pred.found.all()
        errors[fit] = np.linalg.norm(pred.joints - pred.labels, axis=-1).mean()
    assert errors[True] < errors[False] - 1.5   # mm
    with open_source(str(demo)) as src:
        frame = next(iter(src))
    est = Estimator(predictor, EstimatorConfig(fit=True))(frame.depth_mm, frame.intrinsics)
    assert est.hand_found and est.latency_ms["fit"] > 0.0 and est.vertices_mm.shape == (1185, 3)


def test_jacobians_match_finite_differences(fitter):
    """Pose columns are in closed form (shape columns by forward differences): against central
    differences through the layer, exact for the joints, and for the vertices up to the
    skinning blend across a joint."""
    _, _, _, joints = _hand(5)
    params = fitter.start(joints[None])
    _, _, jj, jv = fitter._jacobians(params.rotation, params.x)
    eps = 1e-5
    fd_j, fd_v = [], []
    for p in range(params.x.shape[1]):
        step = torch.zeros_like(params.x)
        step[0, p] = eps
        plus = fitter._posed(params.rotation, params.x + step)    # ω (p < 3): exp(ω) R
        minus = fitter._posed(params.rotation, params.x - step)
        fd_j.append((plus[0] - minus[0]) / (2 * eps))
        fd_v.append((plus[1] - minus[1]) / (2 * eps))
    fd_j, fd_v = torch.stack(fd_j, -1), torch.stack(fd_v, -1)
    assert (jj - fd_j).abs().max() < 1e-3 * fd_j.abs().max()      # mm per unit
    err = (jv - fd_v).norm(dim=2)                                  # (1, V, 39) mm per unit
    assert err.flatten().quantile(0.99) < 0.02 * fd_v.norm(dim=2).max()
    assert err.median() < 1e-3


def test_evaluate_fit_on_the_test_subset():
    """models.evaluate --fit on shards of crops: the first 64 frames of the fixed test subset
    (one crop each), fitted, err less than the network alone (2000 test crops: 19.8 -> 15.2 mm,
    README) and stay valid hands."""
    from pathlib import Path

    from models.estimator import load_predictor
    from models.evaluate import predict_shards, summary_record
    from models.ship import SUBSET_PATH

    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.pt")
    plain = summary_record(predict_shards(predictor, SUBSET_PATH, max_frames=64))
    fitted = summary_record(predict_shards(predictor, SUBSET_PATH, max_frames=64, fit=True))
    assert fitted["mean_mm"] < plain["mean_mm"] - 1.0           # mm
    assert fitted["vertices_mm"] < plain["vertices_mm"] - 1.0   # mm
    assert fitted["invalid_pose"] <= plain["invalid_pose"] + 1 / 64


def test_a_tracked_hand_starts_from_the_frame_before(fitter):
    """The previous frame's fit as the start (tracking): the same answer as a cold start on
    the same crop, within a fraction of a mm; a previous hand far from the prediction is not
    used."""
    theta, alpha, beta, _ = _hand(7)
    crop, truth = _render_crop(theta, alpha, beta)
    prediction = truth + np.random.default_rng(1).normal(0.0, 4.0, truth.shape)
    cold = fitter([crop], [INTR], prediction[None])
    warm = fitter([crop], [INTR], prediction[None], previous=cold)
    assert np.linalg.norm(warm.joints - cold.joints, axis=-1).mean() < 1.0                 # mm
    assert np.linalg.norm(warm.joints[0] - truth, axis=-1).mean() < 3.0                    # mm
    far = cold._replace(joints=cold.joints + 100.0)   # a different hand: ignored, cold start
    again = fitter([crop], [INTR], prediction[None], previous=far)
    assert np.abs(again.joints - cold.joints).max() < 1e-9


def test_silhouette_distance_and_gradient():
    """Distance outside the observed silhouette in patch px, less the slack: a 10 x 10 px
    observed square (an occluder's FRONT pixels count as observed), background elsewhere."""
    patch = np.full((96, 96), BACKGROUND, np.float32)
    patch[40:50, 40:50] = 0.1
    patch[40:50, 40] = FRONT
    crop = Crop(patch, np.array([0.0, 0.0, 500.0]), np.eye(3), 250.0)
    blank = Crop(np.full((96, 96), BACKGROUND, np.float32), crop.com_mm, np.eye(3), 250.0)
    sil = silhouettes([crop, blank], slack_px=1.0)
    d, g = sil.distance[0].numpy(), sil.gradient[0].numpy()
    assert d[40:50, 40:50].max() == 0.0 and d[45, 50] == 0.0         # inside, and within the slack
    assert d[45, 56] == pytest.approx(6.0, abs=1e-6)                 # 7 px right of the square, less 1 px
    assert d[45, 33] == pytest.approx(6.0, abs=1e-6)                 # 7 px left of the FRONT column
    assert d[30, 45] == pytest.approx(9.0, abs=1e-6)                 # 10 px above
    assert g[:, 45, 56] == pytest.approx([1.0, 0.0], abs=1e-6)       # (d/du, d/dv): away from it
    assert g[:, 30, 45] == pytest.approx([0.0, -1.0], abs=1e-6)
    assert not sil.distance[1].any()                                  # nothing observed: no term


def test_silhouette_term_pulls_a_finger_off_empty_space():
    """A prediction with the little finger laid 20 mm outside the hand: with the data term
    left out (no observed point near enough), only the silhouette term brings it back
    (measured: 14.5 -> 3.1 mm and 11.7 -> 3.4 mm; without it the prior keeps it off)."""
    little = [Joint.LITTLE_PIP, Joint.LITTLE_DIP, Joint.LITTLE_TIP]
    with_term = HandFitter(FitConfig(near_mm=1e-3))
    without = HandFitter(FitConfig(near_mm=1e-3, silhouette_mm=0.0))
    for seed in (1, 2):
        theta, alpha, beta, _ = _hand(seed)
        crop, truth = _render_crop(theta, alpha, beta)
        outward = truth[Joint.LITTLE_MCP] - truth[Joint.RING_MCP]
        outward[2] = 0.0
        wrong = truth.copy()
        wrong[little] += 20.0 * np.array([0.5, 0.75, 1.0])[:, None] * outward / np.linalg.norm(outward)
        errors = [np.linalg.norm(f([crop], [INTR], wrong[None]).joints[0] - truth, axis=-1)[little].mean()
                  for f in (without, with_term)]
        assert errors[0] > 8.0                                   # mm: the prior alone keeps it off
        assert errors[1] < 0.5 * errors[0] and errors[1] < 6.0   # mm
