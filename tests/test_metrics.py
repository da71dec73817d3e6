"""Evaluation metrics (models/metrics.py): hand-computed values of the field's protocol.

Errors in mm, accelerations in mm/frame², θ in rad, fractions and AUC dimensionless.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from models.metrics import (
    EvalSummary, JointErrors, acceleration_error, bone_length_spread, curve_auc, joint_errors,
    jitter, pose_validity, render_success_curves, success_curve, success_curve_png, summarize,
    vertex_error_mm,
)
from models.skeleton import THETA_NAMES, theta_limits

EXACT = 1e-12  # mm, mm/frame², or dimensionless: float64 round-off


def _two_frames() -> tuple[np.ndarray, np.ndarray]:
    """2 frames x 2 joints with errors (3, 4) and (0, 10) mm."""
    target = np.full((2, 2, 3), 100.0)
    offsets = np.array([[[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]],
                        [[0.0, 0.0, 0.0], [6.0, 0.0, 8.0]]])
    return target + offsets, target


# --- joint errors and summary --------------------------------------------------------------

def test_joint_errors_and_summary_hand_computed():
    pred, target = _two_frames()
    err = joint_errors(pred, target)
    assert isinstance(err, JointErrors)
    np.testing.assert_allclose(err.errors_mm, [[3.0, 4.0], [0.0, 10.0]], atol=EXACT)  # mm
    s = summarize(err)
    assert isinstance(s, EvalSummary)
    assert (s.num_frames, s.num_joints) == (2, 2)
    assert s.mean_mm == pytest.approx(4.25, abs=EXACT)       # (3 + 4 + 0 + 10) / 4
    assert s.median_mm == pytest.approx(3.5, abs=EXACT)      # of 0, 3, 4, 10
    np.testing.assert_allclose(s.per_joint_mean_mm, [1.5, 7.0], atol=EXACT)
    # largest error per frame: 4 and 10 mm
    assert s.thresholds_mm.shape == s.success.shape == (81,)
    assert s.thresholds_mm[0] == 0.0 and s.thresholds_mm[-1] == 80.0
    assert s.success[3] == 0.0 and s.success[4] == 0.5 and s.success[5] == 0.5
    assert s.success[9] == 0.5 and s.success[10] == 1.0
    assert s.success_at == {10: 1.0, 20: 1.0, 30: 1.0, 40: 1.0, 50: 1.0, 80: 1.0}
    # trapezoid over 1 mm steps: [3,4] 0.25 + [4..9] 5 x 0.5 + [9,10] 0.75 + [10,80] 70 = 73.5 mm
    assert s.auc == pytest.approx(73.5 / 80.0, abs=EXACT)
    # an array gives the same as the NamedTuple
    assert summarize(err.errors_mm).auc == s.auc


def test_success_at_reported_thresholds():
    # largest errors 15, 25, 45, 85 mm: within 10/20/30/40/50/80 mm: 0, 1/4, 2/4, 2/4, 3/4, 3/4
    errors = np.array([[15.0, 1.0], [25.0, 2.0], [3.0, 45.0], [85.0, 0.0]])
    s = summarize(errors)
    assert s.success_at == pytest.approx({10: 0.0, 20: 0.25, 30: 0.5, 40: 0.5, 50: 0.75, 80: 0.75})
    assert s.mean_mm == pytest.approx(176.0 / 8, abs=EXACT)


def test_curve_auc_step_by_hand():
    # one frame at 40 mm: 0 up to 39 mm, 1 from 40 mm on: [39, 40] gives 0.5, [40, 80] gives 40
    t, f = success_curve(np.array([40.0]))
    assert curve_auc(t, f) == pytest.approx(40.5 / 80.0, abs=EXACT)
    assert curve_auc([0.0, 80.0], [1.0, 1.0]) == pytest.approx(1.0, abs=EXACT)
    assert curve_auc([0.0, 40.0, 80.0], [0.0, 1.0, 1.0]) == pytest.approx(0.75, abs=EXACT)
    perfect = summarize(np.zeros((3, 21)))
    assert perfect.auc == pytest.approx(1.0, abs=EXACT) and perfect.success[0] == 1.0


def test_valid_mask_leaves_joints_and_frames_out():
    pred, target = _two_frames()
    pred[1, 1] = np.nan                                    # an unlabelled joint may hold anything
    valid = np.array([[True, True], [True, False]])
    s = summarize(joint_errors(pred, target, valid))
    assert s.mean_mm == pytest.approx(7.0 / 3.0, abs=EXACT)   # 3, 4, 0
    np.testing.assert_allclose(s.per_joint_mean_mm, [1.5, 4.0], atol=EXACT)
    assert s.success[0] == 0.5 and s.success[4] == 1.0      # frame maxima 4 and 0 mm
    none = summarize(joint_errors(pred, target, np.array([[True, True], [False, False]])))
    assert none.success[3] == 0.0 and none.success[4] == 1.0  # frame 1 is out of the curve
    assert math.isnan(summarize(np.array([[1.0, np.nan]])).per_joint_mean_mm[1])


def test_joint_errors_bad_input():
    pred, target = _two_frames()
    with pytest.raises(ValueError, match="same shape"):
        joint_errors(pred, target[:1])
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        joint_errors(pred[0], target[0])
    with pytest.raises(ValueError, match="valid"):
        joint_errors(pred, target, np.ones((2, 3), bool))
    pred[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        joint_errors(pred, target)
    with pytest.raises(ValueError, match=r"\(N, J\)"):
        summarize(np.zeros(4))
    with pytest.raises(ValueError, match="at least one valid"):
        summarize(np.full((2, 2), np.nan))


def test_vertex_error():
    target = np.zeros((2, 3, 3), np.float32)
    pred = target.copy()
    pred[0, 0] = (0.0, 3.0, 4.0)                           # 5 mm
    pred[1, 2] = (1.0, 0.0, 0.0)                           # 1 mm
    assert vertex_error_mm(pred, target) == pytest.approx(6.0 / 6.0, abs=1e-6)  # mm


# --- model validity ----------------------------------------------------------------------

def test_pose_validity_counts():
    lo, hi = theta_limits()
    i, j, k = (THETA_NAMES.index(n) for n in ("thumb_cmc_flex", "index_mcp_abd", "index_pip_flex"))
    theta = np.zeros((4, 26))                               # zero is inside every articulation range
    theta[1, i] = hi[i] + 0.01
    theta[2, i] = lo[i] - 0.01
    theta[2, j] = hi[j] + 1.0
    theta[3, 0:6] = 1e3                                     # global part: no limits
    theta[3, k] = hi[k] + 1e-7                              # within tol_rad = 1e-6
    v = pose_validity(theta, lo, hi)
    assert v.num_frames == 4
    assert v.invalid_fraction == pytest.approx(0.5, abs=EXACT)
    assert v.too_high[i] == 1 and v.too_low[i] == 1 and v.per_dof[i] == 2 and v.per_dof[j] == 1
    assert v.per_dof.sum() == 3 and v.per_dof[:6].sum() == 0
    strict = pose_validity(theta, lo, hi, tol_rad=0.0)
    assert strict.invalid_fraction == pytest.approx(0.75, abs=EXACT) and strict.per_dof[k] == 1
    with pytest.raises(ValueError, match=r"\(N, 26\)"):
        pose_validity(theta[:, :20], lo, hi)


def test_bone_length_spread():
    rng = np.random.default_rng(0)
    hand = rng.normal(0.0, 50.0, (21, 3))
    doubled = np.stack((hand, 2.0 * hand))                 # every bone L and 2L
    s = bone_length_spread(doubled)
    assert s.cv.shape == (20,)
    # mean 1.5 L, population std 0.5 L -> cv 1/3
    np.testing.assert_allclose(s.cv, 1.0 / 3.0, atol=EXACT)
    np.testing.assert_allclose(s.std_mm, 0.5 * s.mean_mm / 1.5, atol=1e-9)
    # a rigidly moving hand keeps its bones
    c, si = math.cos(0.7), math.sin(0.7)
    r = np.array([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]])
    rigid = np.stack((hand, hand @ r.T + [10.0, -20.0, 300.0]))
    np.testing.assert_allclose(bone_length_spread(rigid).cv, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(N, 21, 3\)"):
        bone_length_spread(np.zeros((2, 20, 3)))


# --- temporal quality --------------------------------------------------------------------

def _times(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)[:, None, None]


def test_acceleration_error_and_jitter():
    t = _times(6)
    rng = np.random.default_rng(1)
    p0, v = rng.normal(size=(1, 4, 3)), rng.normal(size=(1, 4, 3))
    linear = p0 + v * t                                     # constant velocity: Δ² = 0
    still = np.broadcast_to(p0, linear.shape)
    assert acceleration_error(linear, still) == pytest.approx(0.0, abs=1e-12)
    assert jitter(linear) == pytest.approx(0.0, abs=1e-12)
    # p = (1.5 t², 2 t², 0): Δ² = (3, 4, 0), norm 5 mm/frame² for every frame and joint
    parabola = linear + np.array([1.5, 2.0, 0.0]) * t**2
    assert acceleration_error(parabola, linear) == pytest.approx(5.0, abs=1e-9)
    assert jitter(parabola) == pytest.approx(5.0, abs=1e-9)
    assert acceleration_error(parabola, parabola) == 0.0
    with pytest.raises(ValueError, match="T >= 3"):
        jitter(parabola[:2])
    with pytest.raises(ValueError, match="same shape"):
        acceleration_error(parabola, parabola[:, :2])


# --- plot --------------------------------------------------------------------------------

def test_success_curve_png(tmp_path):
    s1 = summarize(np.array([[4.0, 3.0], [10.0, 0.0]]))
    s2 = summarize(np.array([[30.0, 3.0], [60.0, 0.0]]))
    curves = {"model A": (s1.thresholds_mm, s1.success), "model B": (s2.thresholds_mm, s2.success)}
    path = success_curve_png(curves, tmp_path / "success.png")
    assert path.is_file() and path.stat().st_size > 1000
    img = cv2.imread(str(path))
    assert img.shape == (520, 720, 3)
    spread = img.astype(int).max(-1) - img.astype(int).min(-1)
    assert (spread > 100).sum() > 200                       # coloured curve pixels, not only grey
    assert (img == 0).all(-1).sum() > 500                   # black axes, ticks and labels
    with pytest.raises(ValueError, match="at least one curve"):
        render_success_curves({})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render_success_curves({"bad": (np.array([0.0, 80.0]), np.array([0.0, 100.0]))})
