"""Training losses (models/losses.py): hand-computed values, zeros, invariances, gradients, shapes.

Joint/vertex losses in mm², the limit loss in rad, the skeleton-difference loss dimensionless.
All cases are tiny (no hand layer), float64 unless stated.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.geometry import axis_angle_to_matrix
from models.joints import Joint
from models.losses import (
    BONE_PAIRS, FINGER_CHAINS, NUM_BONE_PAIRS, SkeletonDifference, anatomical_angle_thresholds,
    angles_over_threshold, bone_length_ratios, bone_pair_angles, feasibility, finger_bones,
    joint_loss, limit_loss, mean_joint_error_mm, skeleton_difference_loss, vertex_loss,
)
from models.skeleton import THETA_NAMES, theta_limits

EXACT = 1e-12        # dimensionless / mm² / rad: float64 round-off
ANGLE_TOL = 1e-9     # rad, dimensionless for tan: the norm regulariser reads a straight pair as ~1e-12 rad
THRESHOLD_100 = math.radians(100.0)
INDEX_DIP_PAIR = BONE_PAIRS.index((Joint.INDEX_PIP, Joint.INDEX_DIP, Joint.INDEX_TIP))


def _straight_hand() -> torch.Tensor:
    """(21, 3) float64 mm: wrist at 0, bases on a row at y = 60, each finger straight along +y.

    Phalanges 40, 30, 30 mm, so every pair except the wrist→base one is straight (θ = 0) and
    the ratios of the last two pairs are 30/70 and 0.5. Wrist-pair angles are atan(|x| / 60) < 34°.
    """
    joints = torch.zeros(21, 3, dtype=torch.float64)
    for f, chain in enumerate(FINGER_CHAINS):
        base = torch.tensor([20.0 * (f - 2), 60.0, 0.0], dtype=torch.float64)
        for k, y in enumerate((0.0, 40.0, 70.0, 100.0)):
            joints[chain[k + 1]] = base + torch.tensor([0.0, y, 0.0], dtype=torch.float64)
    return joints


def _random_hands(batch: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (_straight_hand() + 8.0 * torch.randn(batch, 21, 3, generator=g, dtype=torch.float64)).to(dtype)


def _rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(torch.randn(3, generator=g, dtype=torch.float64))


# --- joint / vertex loss -------------------------------------------------------------------

def _two_by_two() -> tuple[torch.Tensor, torch.Tensor]:
    """Errors: frame 0 (3, 4, 0) and 0; frame 1 (1, 0, 0) and (0, 2, 0)."""
    target = torch.zeros(2, 2, 3, dtype=torch.float64)
    pred = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]],
                         [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], dtype=torch.float64)
    return pred + 7.0, target + 7.0


def test_joint_loss_hand_computed():
    pred, target = _two_by_two()
    # ½ Σ_j ‖e_j‖² per frame: ½·25 = 12.5 and ½·(1 + 4) = 2.5; mean over frames 7.5 mm²
    assert joint_loss(pred, target).item() == pytest.approx(7.5, abs=EXACT)
    # per-joint weights (2, 1): ½·50 = 25 and ½·(2 + 4) = 3 -> 14 mm²
    w = torch.tensor([2.0, 1.0], dtype=torch.float64)
    assert joint_loss(pred, target, w).item() == pytest.approx(14.0, abs=EXACT)
    # per-sample weights (B, J)
    wb = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert joint_loss(pred, target, wb).item() == pytest.approx((12.5 + 2.0) / 2, abs=EXACT)
    # mean Euclidean error: (5 + 0 + 1 + 2) / 4 = 2 mm
    assert mean_joint_error_mm(pred, target).item() == pytest.approx(2.0, abs=EXACT)


def test_vertex_loss_same_form_and_zero():
    pred, target = _two_by_two()
    assert vertex_loss(pred, target).item() == pytest.approx(7.5, abs=EXACT)  # mm²
    assert vertex_loss(target, target).item() == 0.0
    assert joint_loss(target, target).item() == 0.0


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_joint_loss_batch_mean_and_dtype(batch, dtype):
    pred = _random_hands(batch, 1, dtype)
    target = _random_hands(batch, 2, dtype)
    loss = joint_loss(pred, target)
    assert loss.shape == () and loss.dtype == dtype
    per_sample = [joint_loss(pred[i:i + 1], target[i:i + 1]).item() for i in range(batch)]
    assert loss.item() == pytest.approx(np.mean(per_sample), rel=1e-5)  # mm²


def test_joint_and_vertex_loss_gradcheck():
    pred = _random_hands(2, 3)[:, :4].requires_grad_()
    target = _random_hands(2, 4)[:, :4]
    w = torch.rand(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: joint_loss(p, target, w), (pred,))
    assert torch.autograd.gradcheck(lambda p: vertex_loss(p, target), (pred,))


def test_joint_loss_bad_input():
    pred, target = _two_by_two()
    with pytest.raises(ValueError, match="same shape"):
        joint_loss(pred, target[:, :1])
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        joint_loss(pred[..., :2], target[..., :2])
    with pytest.raises(ValueError, match="weights"):
        joint_loss(pred, target, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative"):
        joint_loss(pred, target, torch.tensor([1.0, -1.0], dtype=torch.float64))
    with pytest.raises(TypeError):
        joint_loss(pred.numpy(), target)


# --- limit loss ----------------------------------------------------------------------------

def _theta_index(name: str) -> int:
    return THETA_NAMES.index(name)


def test_limit_loss_hand_computed():
    lo, hi = theta_limits()
    theta = torch.zeros(2, 26, dtype=torch.float64)
    theta[:, 3:6] = 1e4                                         # global part: no limits
    theta[:, 0:3] = 5.0
    i = _theta_index("index_pip_flex")
    theta[0, i] = hi[i] + 0.1                                   # 0.1 rad above the max
    theta[1, i] = lo[i] - 0.2                                   # 0.2 rad below the min
    j = _theta_index("thumb_ip_flex")
    theta[1, j] = hi[j] + 0.3                                   # and 0.3 above another max
    assert limit_loss(theta[:1], lo, hi).item() == pytest.approx(0.1, abs=EXACT)   # rad
    assert limit_loss(theta, lo, hi).item() == pytest.approx((0.1 + 0.5) / 2, abs=EXACT)
    inside = torch.zeros(4, 26, dtype=torch.float64)
    assert limit_loss(inside, lo, hi).item() == 0.0
    # tensors as limits give the same
    assert limit_loss(theta, torch.as_tensor(lo), torch.as_tensor(hi)).item() == pytest.approx(0.3, abs=EXACT)


def test_limit_loss_gradcheck_and_float32():
    lo, hi = theta_limits()
    g = torch.Generator().manual_seed(0)
    theta = (torch.rand(3, 26, generator=g, dtype=torch.float64) - 0.5) * 6.0  # many out of range
    theta.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: limit_loss(t, lo, hi), (theta,))
    grad, = torch.autograd.grad(limit_loss(theta, lo, hi), theta)
    assert (grad[:, :6] == 0).all()                                            # global part free
    t32 = theta.detach().float()
    assert limit_loss(t32, lo, hi).dtype == torch.float32
    assert limit_loss(t32, lo, hi).item() == pytest.approx(limit_loss(theta, lo, hi).item(), rel=1e-5)


def test_limit_loss_bad_input():
    lo, hi = theta_limits()
    with pytest.raises(ValueError, match=r"\(B, 26\)"):
        limit_loss(torch.zeros(2, 25, dtype=torch.float64), lo, hi)
    with pytest.raises(ValueError, match=r"lo of shape \(26,\)"):
        limit_loss(torch.zeros(2, 26, dtype=torch.float64), lo[:20], hi)
    with pytest.raises(ValueError, match="lo <= hi"):
        limit_loss(torch.zeros(2, 26, dtype=torch.float64), hi, lo)


# --- skeleton difference: primitives ---------------------------------------------------------

def test_bone_pairs_definition():
    assert len(BONE_PAIRS) == NUM_BONE_PAIRS == 15
    assert BONE_PAIRS[:3] == ((0, 1, 2), (1, 2, 3), (2, 3, 4))          # thumb: wrist-CMC-MCP-IP-tip
    assert BONE_PAIRS[3:6] == ((0, 5, 6), (5, 6, 7), (6, 7, 8))         # index: wrist-MCP-PIP-DIP-tip
    bones = finger_bones(_straight_hand()[None])
    assert bones.shape == (1, 5, 4, 3)
    assert torch.equal(bones[0, 1, 0], _straight_hand()[5] - _straight_hand()[0])


def test_three_joint_chain_angle_and_ratio():
    # joints (0,0,0) -> (3,0,0) -> (3,1,0): bones of 3 and 1 mm at a right angle
    bones = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert bone_pair_angles(bones).item() == pytest.approx(math.pi / 2, abs=EXACT)   # rad
    assert bone_length_ratios(bones).item() == pytest.approx(0.25, abs=EXACT)
    straight = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert bone_pair_angles(straight).item() == pytest.approx(0.0, abs=ANGLE_TOL)
    folded = torch.tensor([[3.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    assert bone_pair_angles(folded).item() == pytest.approx(math.pi, abs=ANGLE_TOL)
    sixty = torch.tensor([[2.0, 0.0, 0.0], [1.0, math.sqrt(3.0), 0.0]], dtype=torch.float64)
    assert bone_pair_angles(sixty).item() == pytest.approx(math.pi / 3, abs=EXACT)
    assert bone_length_ratios(sixty).item() == pytest.approx(0.5, abs=EXACT)


def test_feasibility_hard_and_smooth():
    theta = torch.tensor([0.0, 0.9, 1.0, 1.05, 1.1, 2.0], dtype=torch.float64)
    hard = feasibility(theta, 1.0, 0.1, hard=True)
    assert hard.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    soft = feasibility(theta, 1.0, 0.1)
    # smoothstep((θ − 1) / 0.1): 0 below, 3s² − 2s³ = 0.5 at s = 0.5, 1 from s = 1 on
    assert soft.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0], abs=1e-12)
    assert (soft <= hard).all()


def test_anatomical_thresholds():
    t = torch.rad2deg(anatomical_angle_thresholds())
    assert t.shape == (15,)
    # thumb CMC: flex 60°, abd 45° -> acos(cos 60° cos 45°) = 69.295°; IP 90°
    assert t[0].item() == pytest.approx(math.degrees(math.acos(0.5 * math.sqrt(0.5))), abs=1e-9)
    assert t[2].item() == pytest.approx(90.0, abs=1e-9)
    # index: MCP 100°, PIP 110°, DIP 90° (deg)
    assert t[3:6].tolist() == pytest.approx([100.0, 110.0, 90.0], abs=1e-9)


# --- skeleton difference: the loss -------------------------------------------------------

def _bend_index_tip(joints: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate the index DIP→tip bone by ``angle`` about x (towards +z), length kept."""
    out = joints.clone()
    dip, tip = Joint.INDEX_DIP, Joint.INDEX_TIP
    length = (joints[tip] - joints[dip]).norm()
    out[tip] = joints[dip] + length * torch.tensor([0.0, math.cos(angle), math.sin(angle)],
                                                    dtype=joints.dtype)
    return out


def test_skeleton_difference_right_angle_vs_straight():
    target = _straight_hand()[None]
    pred = _bend_index_tip(target[0], math.pi / 2)[None]
    w1, w2 = 0.7, 5.0
    out = skeleton_difference_loss(pred, target, w1, w2, THRESHOLD_100)
    assert isinstance(out, SkeletonDifference)
    # one pair at 90° vs 0°: |tan(π/4 − 0)| = 1 -> ω1; below the 100° threshold F = 0
    assert out.angle.item() == pytest.approx(w1, abs=ANGLE_TOL)
    assert out.ratio.item() == pytest.approx(0.0, abs=1e-12)           # lengths kept
    # a threshold of 80°: hard F = 1 -> ω1 + ω2; smooth F over 20° is at s = 0.5 -> ω1 + ω2 / 2
    t80 = math.radians(80.0)
    hard = skeleton_difference_loss(pred, target, w1, w2, t80, hard_feasibility=True)
    assert hard.angle.item() == pytest.approx(w1 + w2, abs=ANGLE_TOL)
    soft = skeleton_difference_loss(pred, target, w1, w2, t80, width_rad=math.radians(20.0))
    assert soft.angle.item() == pytest.approx(w1 + 0.5 * w2, abs=ANGLE_TOL)
    over = angles_over_threshold(pred, t80)
    assert over.shape == (1, 15) and over[0].nonzero().flatten().tolist() == [INDEX_DIP_PAIR]
    # per-pair thresholds: only the index DIP pair's matters here
    per_pair = torch.full((15,), math.pi)
    per_pair[INDEX_DIP_PAIR] = t80
    assert skeleton_difference_loss(pred, target, w1, w2, per_pair, hard_feasibility=True).angle.item() \
        == pytest.approx(w1 + w2, abs=ANGLE_TOL)


def test_skeleton_difference_bone_ratio():
    target = _straight_hand()[None]                       # index middle and distal phalanges 30, 30
    pred = target.clone()
    pred[0, Joint.INDEX_TIP] = pred[0, Joint.INDEX_DIP] + torch.tensor([0.0, 10.0, 0.0], dtype=torch.float64)
    out = skeleton_difference_loss(pred, target, 1.0, 1.0, THRESHOLD_100, alpha=2.0, beta=3.0)
    # G = 10 / (30 + 10) = 0.25 vs 30 / 60 = 0.5; the finger stays straight
    assert out.ratio.item() == pytest.approx(0.25, abs=1e-12)
    assert out.angle.item() == pytest.approx(0.0, abs=ANGLE_TOL)
    assert out.total.item() == pytest.approx(2.0 * 0.0 + 3.0 * 0.25, abs=ANGLE_TOL)


def test_skeleton_difference_zero_for_identical_inputs():
    hands = _random_hands(3, 5)
    out = skeleton_difference_loss(hands, hands.clone(), 1.0, 1.0, THRESHOLD_100)
    # random hands bend less than 100° between bones here, so F_soft = 0 exactly
    assert (bone_pair_angles(finger_bones(hands)) < THRESHOLD_100).all()
    assert out.angle.item() == 0.0 and out.ratio.item() == 0.0 and out.total.item() == 0.0


def test_skeleton_difference_invariant_to_rigid_motion_and_scale():
    pred, target = _random_hands(3, 6), _random_hands(3, 7)
    ref = skeleton_difference_loss(pred, target, 1.0, 2.0, math.radians(60.0))
    r, t = _rotation(8), torch.tensor([30.0, -200.0, 450.0], dtype=torch.float64)
    moved = skeleton_difference_loss(pred @ r.T + t, target @ _rotation(9).T - t, 1.0, 2.0, math.radians(60.0))
    for a, b in zip(ref, moved):
        assert a.item() == pytest.approx(b.item(), abs=1e-10)
    for scale in (0.01, 2.7):
        scaled = skeleton_difference_loss(scale * pred, scale * target, 1.0, 2.0, math.radians(60.0))
        for a, b in zip(ref, scaled):
            assert a.item() == pytest.approx(b.item(), abs=1e-10)
    assert ref.ratio.item() > 0.01 and ref.angle.item() > 0.01   # a non-trivial case


def test_skeleton_difference_gradcheck():
    pred = _random_hands(2, 10).requires_grad_()
    target = _random_hands(2, 11).requires_grad_()
    thr = math.radians(30.0)          # some angles fall in the smooth band [30°, 40°]

    def total(p, t):
        return skeleton_difference_loss(p, t, 0.5, 2.0, thr, alpha=1.5, beta=0.7).total

    assert torch.autograd.gradcheck(total, (pred, target))


def test_skeleton_difference_finite_at_zero_length_bones():
    target = _straight_hand()[None].repeat(2, 1, 1)
    pred = target.clone()
    pred[0, Joint.INDEX_DIP] = pred[0, Joint.INDEX_PIP]      # a zero-length bone
    pred[1] = 0.0                                            # every bone zero
    pred.requires_grad_()
    out = skeleton_difference_loss(pred, target, 1.0, 1.0, THRESHOLD_100)
    grad, = torch.autograd.grad(out.total, pred)
    assert torch.isfinite(out.total) and torch.isfinite(grad).all()


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_skeleton_difference_shapes_batch_mean_dtype(batch, dtype):
    pred, target = _random_hands(batch, 12, dtype), _random_hands(batch, 13, dtype)
    out = skeleton_difference_loss(pred, target, 1.0, 1.0, THRESHOLD_100)
    assert all(x.shape == () and x.dtype == dtype for x in out)
    singles = [skeleton_difference_loss(pred[i:i + 1], target[i:i + 1], 1.0, 1.0, THRESHOLD_100).total.item()
               for i in range(batch)]
    assert out.total.item() == pytest.approx(np.mean(singles), rel=1e-5)
    ref = skeleton_difference_loss(pred.double(), target.double(), 1.0, 1.0, THRESHOLD_100)
    assert out.total.item() == pytest.approx(ref.total.item(), rel=1e-4)


def test_skeleton_difference_bad_input():
    hands = _random_hands(2, 14)
    with pytest.raises(ValueError, match=r"\(B, 21, 3\)"):
        skeleton_difference_loss(hands[:, :20], hands[:, :20], 1.0, 1.0, THRESHOLD_100)
    with pytest.raises(ValueError, match="same shape"):
        skeleton_difference_loss(hands, hands[:1], 1.0, 1.0, THRESHOLD_100)
    with pytest.raises(ValueError, match=r"\(15,\)"):
        skeleton_difference_loss(hands, hands, 1.0, 1.0, torch.zeros(14))
    with pytest.raises(ValueError, match="width_rad"):
        skeleton_difference_loss(hands, hands, 1.0, 1.0, THRESHOLD_100, width_rad=0.0)
