"""Training losses of the four papers, pure torch, batched, differentiable (float32 and float64).

Units: joints and vertices in millimetres (any frame, as long as prediction and target
share it); angles and pose parameters θ in radians (``models/skeleton.py``). Every loss
returns a scalar tensor: a sum over the terms of one sample, then a MEAN over the batch,
so its size does not depend on the batch size.

    joint_loss(pred, target)        DeepModel / DeepHPS   ½ Σ_j w_j ‖p_j − y_j‖²         mm²
    vertex_loss(pred, target)       DeepHPS               ½ Σ_v ‖v_v − v*_v‖²           mm²
    limit_loss(theta, lo, hi)       DeepModel             Σ_i [max(lo_i − θ_i, 0)
                                                              + max(θ_i − hi_i, 0)]     rad
    skeleton_difference_loss(...)   SDNet                 α Loss_a + β Loss_b            dimensionless

SDNet's skeleton-difference loss (its Eqs. 2-7) in our 21-joint skeleton
-------------------------------------------------------------------------
SDNet's tree has the palm as root and three joints per finger (ICVL). Ours has the wrist as
root and four joints per finger, so each finger is the chain wrist → base → 2 → 3 → tip and
has four bones (:data:`FINGER_CHAINS`)::

    B_0 = wrist → MCP (thumb: wrist → CMC)   (the metacarpal; the thumb's CMC sits on the wrist)
    B_1 = MCP → PIP  (thumb: CMC → MCP)
    B_2 = PIP → DIP  (thumb: MCP → IP)
    B_3 = DIP → tip  (thumb: IP → tip)

The pairs are the consecutive bones (B_0, B_1), (B_1, B_2), (B_2, B_3) of each finger:
5 fingers × 3 = 15 pairs, in the order (finger, pair) with thumb first (:data:`BONE_PAIRS`).
Pair n of a finger meets at its n-th joint (base, PIP/MCP, DIP/IP).

For each pair, θ is the unsigned angle between the two bone vectors, in [0, π]: 0 for a
straight finger, growing as the finger bends either way (Eq. 4). It is computed as
θ = 2·atan2(‖â − b̂‖, ‖â + b̂‖) with â, b̂ the unit bones, which is exact and has a
finite gradient everywhere, where acos of the dot product has an infinite one at 0 and π.

    Loss_a = Σ_pairs [ ω1 |tan(θ/2 − θ_GT/2)| + ω2 F(θ) ]                     (Eq. 3)
    Loss_b = Σ_pairs | G − G_GT |,   G = ‖B_{n+1}‖ / (‖B_n‖ + ‖B_{n+1}‖)       (Eqs. 6-7)
    total  = α Loss_a + β Loss_b                                               (Eq. 2)

F (Eq. 5) is SDNet's feasibility indicator, 1 when the predicted angle is at or above a
threshold and 0 otherwise: "if an angle is greater than a threshold, it will suffer an
additional penalty to hold the natural bend of a hand finger", i.e. a bend between two
bones beyond the anatomical maximum. It depends on the prediction only. A step has zero
gradient almost everywhere, so it adds a constant and trains nothing. The default F here is
a C¹ smoothstep ramp that starts at the threshold:

    F_soft(θ) = S((θ − threshold) / width),  S(s) = 3s² − 2s³ on [0, 1], 0 below, 1 above

It equals the exact indicator below the threshold (so F_soft = 0 for a feasible hand) and
beyond threshold + width, and lies in (0, 1) within the band [threshold, threshold + width],
where its gradient pushes the angle back below the threshold. F_soft ≤ F everywhere. The
exact indicator stays available: ``hard_feasibility=True`` in the loss, and
:func:`angles_over_threshold` for evaluation. :func:`anatomical_angle_thresholds` gives
per-pair thresholds from the joint limits in ``models/skeleton.py``.

|·| has zero gradient exactly at θ = θ_GT (torch's subgradient), which is harmless.
Zero-length bones: bone norms are sqrt(‖B‖² + eps²) (eps in mm, default 1e-6) and the
norms of â ± b̂ are sqrt(‖·‖² + 1e-24), so values and gradients stay finite (a zero bone reads as a 90° angle
and G = 0.5 when both bones of a pair vanish); the effect on bones of normal length is of
order eps²/‖B‖², far below float precision.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch

from models.joints import FINGER_JOINTS, NUM_JOINTS
from models.skeleton import ARTICULATIONS, THETA_DIM

#: Each finger's chain, wrist first: (5, 5) joint indices, thumb first.
FINGER_CHAINS: tuple[tuple[int, ...], ...] = tuple((0,) + tuple(f) for f in FINGER_JOINTS)

#: The 15 consecutive bone pairs as ((a, b), (b, c)) joint triples (a, b, c): bones a→b and b→c,
#: in (finger, pair) order, thumb first.
BONE_PAIRS: tuple[tuple[int, int, int], ...] = tuple(
    (chain[n], chain[n + 1], chain[n + 2]) for chain in FINGER_CHAINS for n in range(3)
)
NUM_BONE_PAIRS = len(BONE_PAIRS)

DEFAULT_EPS = 1e-6  # mm, regulariser of bone lengths
_UNIT_EPS = 1e-12   # dimensionless, regulariser of norms of unit-vector sums and differences


# --- input checks ------------------------------------------------------------------------

def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def _check_points(name: str, x: object, num: int | None = None) -> torch.Tensor:
    x = _check_tensor(name, x)
    if x.ndim != 3 or x.shape[-1] != 3 or (num is not None and x.shape[1] != num):
        expected = f"(B, {num}, 3)" if num is not None else "(B, N, 3)"
        raise ValueError(f"expected {name} of shape {expected}, got {tuple(x.shape)}")
    return x


def _check_pair(pred: object, target: object, num: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _check_points("pred", pred, num)
    target = _check_points("target", target, num)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    return pred, target


# --- DeepModel / DeepHPS -----------------------------------------------------------------

def joint_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """DeepModel's joint location loss ½‖F(Θ) − Y‖², mm².

    pred, target: (B, J, 3) float, mm, same frame.
    weights: optional (J,) or (B, J) non-negative per-joint weights (1 when None).
    Returns the scalar mean over the batch of ½ Σ_j w_j ‖pred_j − target_j‖²: a SUM over
    joints and coordinates (the paper's squared norm of the stacked 3J vector), a MEAN over
    the batch. A uniform error of d mm on every joint gives ½ J d².
    """
    pred, target = _check_pair(pred, target)
    sq = ((pred - target) ** 2).sum(-1)                          # (B, J) mm²
    if weights is not None:
        weights = _check_tensor("weights", weights)
        if weights.shape not in (sq.shape[1:], sq.shape):
            raise ValueError(f"expected weights of shape ({sq.shape[1]},) or {tuple(sq.shape)}, "
                             f"got {tuple(weights.shape)}")
        if bool((weights < 0).any()):
            raise ValueError(f"expected non-negative weights, got min {weights.min().item()}")
        sq = sq * weights.to(sq.dtype)
    return 0.5 * sq.sum(-1).mean()


def vertex_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DeepHPS's mesh loss in the same form: mean over the batch of ½ Σ_v ‖pred_v − target_v‖², mm².

    pred, target: (B, V, 3) float, mm. A SUM over vertices and coordinates, a MEAN over the batch.
    """
    return joint_loss(pred, target)


def mean_joint_error_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance per joint, mm: mean over batch and joints of ‖pred_j − target_j‖.

    pred, target: (B, J, 3) float, mm. The field's headline metric, for logging during training
    (not meant as a loss: the norm has no gradient where a joint is exact).
    """
    pred, target = _check_pair(pred, target)
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()


def limit_loss(theta: torch.Tensor, lo: np.ndarray | torch.Tensor, hi: np.ndarray | torch.Tensor) -> torch.Tensor:
    """DeepModel's physical-constraint loss, radians.

    theta: (B, 26) float, radians for the articulations (``models/skeleton.py``).
    lo, hi: (26,) limits, e.g. ``theta_limits()``; entries that are ±inf (the global rotation
    and translation there) are ignored, so with ``theta_limits()`` only the 20 articulations count.
    Returns the batch mean of Σ_i [max(lo_i − θ_i, 0) + max(θ_i − hi_i, 0)] over finite limits.
    """
    theta = _check_tensor("theta", theta)
    if theta.ndim != 2 or theta.shape[1] != THETA_DIM:
        raise ValueError(f"expected theta of shape (B, {THETA_DIM}), got {tuple(theta.shape)}")
    bounds = []
    for name, b in (("lo", lo), ("hi", hi)):
        b = torch.as_tensor(b, dtype=theta.dtype, device=theta.device)
        if b.shape != (THETA_DIM,):
            raise ValueError(f"expected {name} of shape ({THETA_DIM},), got {tuple(b.shape)}")
        bounds.append(b)
    lo_t, hi_t = bounds
    if bool((lo_t > hi_t).any()):
        raise ValueError(f"expected lo <= hi everywhere, got lo > hi at indices "
                         f"{torch.nonzero(lo_t > hi_t).flatten().tolist()}")
    lo_mask, hi_mask = torch.isfinite(lo_t), torch.isfinite(hi_t)
    below = torch.relu(torch.where(lo_mask, lo_t, 0.0) - theta) * lo_mask
    above = torch.relu(theta - torch.where(hi_mask, hi_t, 0.0)) * hi_mask
    return (below + above).sum(-1).mean()


# --- SDNet: skeleton difference ----------------------------------------------------------

class SkeletonDifference(NamedTuple):
    """SDNet's skeleton-difference loss (Eq. 2), scalars, batch means, dimensionless.

    angle: Loss_a = Σ_pairs [ω1 |tan(θ/2 − θ_GT/2)| + ω2 F(θ)] (Eq. 3)
    ratio: Loss_b = Σ_pairs |G − G_GT| (Eq. 6)
    total: alpha · angle + beta · ratio
    """

    angle: torch.Tensor
    ratio: torch.Tensor
    total: torch.Tensor


def _safe_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(‖x‖² + eps²) over the last axis: ‖x‖ for ‖x‖ ≫ eps, smooth and finite at 0."""
    return torch.sqrt((x * x).sum(-1) + eps * eps)


def finger_bones(joints: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) joints -> (B, 5, 4, 3) bone vectors B_0..B_3 along each finger chain, mm.

    B_n = chain[n + 1] − chain[n] with chain = wrist, base, 2, 3, tip (:data:`FINGER_CHAINS`).
    """
    joints = _check_points("joints", joints, NUM_JOINTS)
    chains = torch.as_tensor(FINGER_CHAINS, device=joints.device)     # (5, 5)
    points = joints[:, chains]                                         # (B, 5, 5, 3)
    return points[:, :, 1:] - points[:, :, :-1]


def bone_pair_angles(bones: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """(..., K, 3) chain of bones -> (..., K − 1) angle between B_n and B_{n+1}, radians in [0, π].

    θ = 2 atan2(‖â − b̂‖, ‖â + b̂‖) (unit bones; = acos(â·b̂) but stable at 0 and π);
    eps (mm) regularises the bone lengths.
    """
    unit = bones / _safe_norm(bones, eps)[..., None]
    a, b = unit[..., :-1, :], unit[..., 1:, :]
    return 2.0 * torch.atan2(_safe_norm(a - b, _UNIT_EPS), _safe_norm(a + b, _UNIT_EPS))


def bone_length_ratios(bones: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """(..., K, 3) chain of bones -> (..., K − 1) G = ‖B_{n+1}‖ / (‖B_n‖ + ‖B_{n+1}‖), in [0, 1]."""
    length = _safe_norm(bones, eps)
    return length[..., 1:] / (length[..., :-1] + length[..., 1:])


def _smoothstep(s: torch.Tensor) -> torch.Tensor:
    s = s.clamp(0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def feasibility(angles: torch.Tensor, threshold_rad: float | torch.Tensor, width_rad: float,
                hard: bool = False) -> torch.Tensor:
    """SDNet's F(θ) (Eq. 5), elementwise: 1 where θ ≥ threshold, else 0; or its C¹ surrogate.

    angles: (..., 15) radians; threshold_rad: scalar or (15,) radians.
    hard=True: the exact indicator (float 0/1, no gradient).
    hard=False: smoothstep((θ − threshold) / width_rad), equal to the indicator outside
    [threshold, threshold + width) and ≤ it everywhere.
    """
    threshold = torch.as_tensor(threshold_rad, dtype=angles.dtype, device=angles.device)
    if hard:
        return (angles >= threshold).to(angles.dtype)
    if not width_rad > 0:
        raise ValueError(f"expected width_rad > 0, got {width_rad}")
    return _smoothstep((angles - threshold) / width_rad)


def _check_threshold(threshold_rad: float | torch.Tensor) -> None:
    if isinstance(threshold_rad, (torch.Tensor, np.ndarray)):
        shape = tuple(threshold_rad.shape)
        if shape not in ((), (NUM_BONE_PAIRS,)):
            raise ValueError(f"expected angle_threshold_rad as a scalar or of shape ({NUM_BONE_PAIRS},), "
                             f"got {shape}")


def skeleton_difference_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    w1: float,
    w2: float,
    angle_threshold_rad: float | torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    width_rad: float = math.radians(10.0),
    hard_feasibility: bool = False,
    eps: float = DEFAULT_EPS,
) -> SkeletonDifference:
    """SDNet's skeleton-difference loss over the 15 finger bone pairs (module docstring).

    pred, target: (B, 21, 3) float, mm, canonical joint order.
    w1, w2: SDNet's ω1 (angle difference) and ω2 (feasibility penalty).
    angle_threshold_rad: F's threshold, a scalar or (15,) in :data:`BONE_PAIRS` order
        (e.g. :func:`anatomical_angle_thresholds`).
    alpha, beta: SDNet's weights of Loss_a and Loss_b in the total.
    width_rad: the band of the smooth F; hard_feasibility=True uses the exact step instead.
    eps: regulariser of the bone lengths, mm.
    Each term is summed over the 15 pairs, then averaged over the batch. It depends only on
    angles and length ratios, so it is invariant to a rigid motion of either input and to a
    uniform scale of either input.
    """
    pred, target = _check_pair(pred, target, NUM_JOINTS)
    _check_threshold(angle_threshold_rad)
    bones, bones_gt = finger_bones(pred), finger_bones(target)          # (B, 5, 4, 3)
    theta = bone_pair_angles(bones, eps).flatten(1)                     # (B, 15)
    theta_gt = bone_pair_angles(bones_gt, eps).flatten(1)
    f = feasibility(theta, angle_threshold_rad, width_rad, hard_feasibility)
    angle = (w1 * torch.tan(0.5 * (theta - theta_gt)).abs() + w2 * f).sum(-1).mean()
    g = bone_length_ratios(bones, eps).flatten(1)                       # (B, 15)
    g_gt = bone_length_ratios(bones_gt, eps).flatten(1)
    ratio = (g - g_gt).abs().sum(-1).mean()
    return SkeletonDifference(angle=angle, ratio=ratio, total=alpha * angle + beta * ratio)


def angles_over_threshold(joints: torch.Tensor, angle_threshold_rad: float | torch.Tensor,
                          eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Exact F for evaluation: (B, 21, 3) joints -> (B, 15) bool, True where θ ≥ threshold."""
    _check_threshold(angle_threshold_rad)
    theta = bone_pair_angles(finger_bones(joints), eps).flatten(1)
    return theta >= torch.as_tensor(angle_threshold_rad, dtype=theta.dtype, device=theta.device)


def anatomical_angle_thresholds(margin_rad: float = 0.0) -> torch.Tensor:
    """Per-pair maximum bend, (15,) float64 radians in :data:`BONE_PAIRS` order, + margin_rad.

    Pair n of a finger meets at the joint whose articulation (``models/skeleton.py``) sets
    the angle between its bones. Bones are treated as collinear at rest (they are within
    about 11° in our template), so the largest unsigned angle the joint can reach is
    acos(min cos(flex) · cos(abd)) over its limit box: max |flex| for a hinge, and for the
    two-DoF base joints the flexion combined with the abduction.
    """
    out = []
    for chain in FINGER_CHAINS:
        for joint in chain[1:4]:
            dofs = {d.kind: d for d in ARTICULATIONS if d.joint == joint}
            cos_values = []
            for kind in ("flex", "abd"):
                d = dofs.get(kind)
                if d is None:
                    cos_values.append([1.0])
                    continue
                cands = [d.lo_deg, d.hi_deg] + ([0.0] if d.lo_deg <= 0.0 <= d.hi_deg else [])
                cos_values.append([math.cos(math.radians(a)) for a in cands])
            worst = min(c1 * c2 for c1 in cos_values[0] for c2 in cos_values[1])
            out.append(math.acos(max(-1.0, min(1.0, worst))) + margin_rad)
    return torch.tensor(out, dtype=torch.float64)


#: Slack on the anatomical maximum bend of each bone pair before a pose counts as invalid, deg.
#: Our template's rest bones are up to 11 deg from collinear, so a pose inside the joint limits
#: can bend a pair that much beyond the collinear-bones maximum.
ANGLE_MARGIN_DEG = 15.0


def invalid_poses(joints_mm: np.ndarray, margin_deg: float = ANGLE_MARGIN_DEG) -> np.ndarray:
    """(N, 21, 3) joints, mm -> (N,) bool: True where a bone pair bends beyond its anatomical
    maximum + ``margin_deg`` (:func:`anatomical_angle_thresholds`); the evaluation's invalid-pose
    measure (``models.evaluate``), the rotation ensemble's check (``models.estimator``) and the
    model fit's (``models.fit``, through :func:`invalid_pose_mask`)."""
    return invalid_pose_mask(torch.as_tensor(np.asarray(joints_mm), dtype=torch.float64), margin_deg).numpy()


def invalid_pose_mask(joints_mm: torch.Tensor, margin_deg: float = ANGLE_MARGIN_DEG) -> torch.Tensor:
    """:func:`invalid_poses` on a tensor: (N, 21, 3) joints, mm -> (N,) bool tensor."""
    thresholds = _thresholds(float(margin_deg)).to(joints_mm.dtype)
    return angles_over_threshold(joints_mm, thresholds).any(1)


@functools.lru_cache(maxsize=8)
def _thresholds(margin_deg: float) -> torch.Tensor:
    """:func:`anatomical_angle_thresholds` + margin_deg, computed once per margin (the rotation
    ensemble checks every frame)."""
    return anatomical_angle_thresholds(math.radians(margin_deg))
