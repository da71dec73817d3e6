"""Inverse kinematics: 3D joint positions -> pose θ (and bone scales α, shape β) of the hand layer.

Frames and units: targets are (B, K, 3) float, millimetres, in any right-handed frame (the
camera frame in the app: x right, y down, z forward); the fitted θ maps the hand frame of
``models/skeleton.py`` (wrist origin, x radial, y distal, z palmar, right hand) into that
frame. Angles are radians. Nothing here reads files or touches devices: the functions are
pure torch and run on whatever device and dtype the layer has (use float64 for fits
better than about 0.01 mm; float32 works but stalls around 1e-3 mm).

Method (all items of a batch at once):
  1. Initialisation: the rest palm (wrist, thumb CMC and the four MCPs, which move rigidly
     with the global transform) is mapped through the layout and rigidly aligned to the
     target by weighted Kabsch, using the layout rows that are pure palm points; an item
     with fewer than three such rows falls back to all its given rows of the rest hand.
     Articulations start at a slightly curled hand (every flexion at
     ``initial_flexion_deg`` = 25°, abductions 0) unless ``init_theta`` is given: starting
     from the flat hand, targets without DIPs (NYU, ICVL) fall into the mirrored
     PIP/DIP "elbow" solution twice as often.
  2. Levenberg-Marquardt on x = [δ (3), t (3), articulations (20), α (6)?, β (7)?]: the
     global rotation is updated on the manifold (R <- exp(δ) R). The Jacobian is analytic
     (:func:`joints_and_jacobian`: ω × (p_d − p_j) for the revolute joints, linear terms
     for α and β), checked against ``torch.func.jacfwd`` in ``tests/test_ik.py``; on CPU
     it made the fit over 50 times faster than forward-mode autodiff through the layer
     (about 50 ms -> 0.8 ms per pose in batches of a few hundred). Each item
     has its own damping λ (step accepted: λ / 3; rejected: λ x 4); converged items leave
     the batch. After every step the articulations are projected onto [lo, hi]
     (``theta_limits``), α onto ``alpha_range`` and β onto ``beta_range``; parameters on
     a bound with the gradient pushing outwards are frozen for that step (active set), so
     the projection does not stall the free ones. The result satisfies the limits exactly.
  3. Weak priors: residual rows ``alpha_prior_mm * (α - 1)`` and ``beta_prior_mm * β``
     (they bias an exact α fit by a few hundredths of a mm).
  4. Restarts: items whose mean joint error stays above ``restart_threshold_mm`` are
     refitted from ``restarts`` random articulations (uniform within the limits), keeping
     the global transform and shape of the best fit so far; the lowest cost wins.

Convergence (measured, float64, ``python -m models.ik --bench``): on exact targets from
uniform in-limit poses with random global pose, every one of 4096 poses reached < 1e-6 mm
within 8 iterations (52 % after 5; quadratic near the optimum) and no restart was
needed: the palm Kabsch fixes the global pose, and the fingers' chains are then
unambiguous. Through layouts without DIPs (nyu14, icvl16) about 8 % of the items end in
the mirrored PIP/DIP solution (a finger's tip reached with the DIP hyperextended), with a
layout residual below 1 mm that the 2 mm restart threshold does not catch; a threshold of
0.1 mm halves them. Targets the model cannot reproduce (other skeletons, noise) converge
linearly to their least-squares pose. An item stops when an accepted step lowers its cost
by less than ``rtol`` relatively, its damping exceeds 1e10, or its cost is below 1e-20 mm².
Speed (2 CPU threads): about 0.8 ms per pose in batches of 512, about 35 ms for a single
pose (then the per-call overhead of the layer's kinematics dominates; pass ``init_theta``
and few ``iterations`` when tracking).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from models.geometry import axis_angle_to_matrix, kabsch, matrix_to_axis_angle, skew
from models.hand_layer import HandLayer, articulation_rotations, forward_kinematics, scaled_rest, shaped_rest
from models.joints import NUM_JOINTS, PARENTS, Joint, Layout, get_layout
from models.skeleton import (
    ALPHA_DIM, ALPHA_OF_JOINT, ARTICULATED_JOINTS, ARTICULATION, ARTICULATIONS, BETA_DIM, NUM_ARTICULATIONS, THETA_DIM,
    theta_limits,
)

#: Joints that move rigidly with the global transform (for a given shape): the palm.
RIGID_PALM_JOINTS: tuple[int, ...] = (Joint.WRIST, Joint.THUMB_CMC, Joint.INDEX_MCP, Joint.MIDDLE_MCP,
                                Joint.RING_MCP, Joint.LITTLE_MCP)


@dataclass(frozen=True)
class IKConfig:
    """Solver settings. Lengths in mm, angles in radians."""

    iterations: int = 50                   # LM iterations per pass (first pass and each restart)
    restarts: int = 4                      # random restarts for items above the threshold
    restart_threshold_mm: float = 2.0      # mean joint error that triggers restarts
    alpha_range: tuple[float, float] = (0.6, 1.6)
    beta_range: tuple[float, float] = (-3.0, 3.0)
    alpha_prior_mm: float = 5.0            # residual (mm) per unit of α - 1 (weak)
    beta_prior_mm: float = 2.0             # residual (mm) per unit of β (weak)
    initial_flexion_deg: float = 25.0      # start of every flexion DoF without init_theta
    initial_damping: float = 1e-3          # λ, relative to diag(JᵀJ)
    rtol: float = 1e-12                    # stop when the cost falls by less than this, relatively
    seed: int = 0                          # random restarts

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.restarts < 0:
            raise ValueError(f"expected iterations >= 1 and restarts >= 0, got {self.iterations}, {self.restarts}")
        for name in ("alpha_range", "beta_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"expected {name} with lo < hi, got {(lo, hi)}")


class IKResult(NamedTuple):
    """Result of :func:`fit`. Same dtype and device as the layer.

    theta:        (B, 26) pose; θ[6:26] within ``theta_limits`` exactly
    alpha:        (B, 6) bone scales (the given/initial ones unless ``fit_alpha``)
    beta:         (B, 7) shape (the given/initial ones unless ``fit_beta``)
    joints:       (B, 21, 3) mm, the fitted canonical joints in the target's frame
    residual_mm:  (B,) mean distance over the given joints (weight > 0), target layout
    per_joint_mm: (B, K) distance per layout joint, mm; NaN for missing joints (weight 0)
    """

    theta: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    joints: torch.Tensor
    residual_mm: torch.Tensor
    per_joint_mm: torch.Tensor


# ---------------------------------------------------------------------------------------
# Pure model pieces
# ---------------------------------------------------------------------------------------

class JointJacobian(NamedTuple):
    """Joints and their derivatives, see :func:`joints_and_jacobian`."""

    joints: torch.Tensor    # (B, 21, 3) mm, output frame
    jacobian: torch.Tensor  # (B, 21, 3, P) mm per parameter unit


def _hand_frames(layer: HandLayer, articulations: torch.Tensor, alpha: torch.Tensor,
                 beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed hand_from_joint frames (B, 21, 4, 4) and the shaped, unscaled rest joints (B, 21, 3).

    The layer's own stages (:func:`shaped_rest` with no surface points, :func:`scaled_rest`,
    :func:`forward_kinematics` with a zero global part), without skinning.
    """
    no_surface = layer.rest_offsets[:0]
    shaped, _ = shaped_rest(beta, layer.rest_joints, layer.joint_morphs, no_surface,
                            layer.offset_morphs[:, :0])
    rest = scaled_rest(alpha, shaped, layer.alpha_of_joint)
    theta = torch.cat((articulations.new_zeros(articulations.shape[0], 6), articulations), 1)
    arts = articulation_rotations(theta, layer.first_index, layer.first_axis,
                                  layer.second_index, layer.second_axis)
    posed, _ = forward_kinematics(theta, rest, layer.rest_rotations, arts)
    return posed, shaped


def hand_frame_joints(layer: HandLayer, articulations: torch.Tensor, alpha: torch.Tensor,
                      beta: torch.Tensor) -> torch.Tensor:
    """Posed joints (B, 21, 3) mm in the hand frame (global rotation 0, wrist at the origin).

    articulations: (B, 20) radians; alpha: (B, 6); beta: (B, 7). Equal to
    ``layer(θ).joints`` for θ = [0, 0, articulations], without computing the surface.
    """
    return _hand_frames(layer, articulations, alpha, beta)[0][..., :3, 3]


@dataclass(frozen=True)
class KinematicTables:
    """Index tables of the kinematic tree, for analytic Jacobians (here and in ``models.fit``)."""

    parent: torch.Tensor          # (21,) long, the wrist its own parent
    path: torch.Tensor            # (21, 21): path[d, j] = 1 if bone j (ending at j >= 1) lies on d's chain
    below: torch.Tensor           # (21, 20): below[d, i] = 1 if articulation i moves joint d
    art_joint: torch.Tensor       # (20,) long, the joint each articulation rotates
    art_first: torch.Tensor       # (20,) bool, rotation applied first (abduction) vs second (flexion)
    art_axis: torch.Tensor        # (20, 3) axis in the joint's (rest) frame
    alpha_onehot: torch.Tensor    # (21, 6) which α scales the bone ending at each joint

    @classmethod
    def of(cls, layer: HandLayer) -> "KinematicTables":
        dtype, device = layer.rest_joints.dtype, layer.rest_joints.device
        parent = [max(p, 0) for p in PARENTS]
        path = np.zeros((NUM_JOINTS, NUM_JOINTS))
        for d in range(NUM_JOINTS):
            j = d
            while j > 0:
                path[d, j] = 1.0
                j = PARENTS[j]
        art_joint = np.zeros(NUM_ARTICULATIONS, dtype=np.int64)
        art_first = np.zeros(NUM_ARTICULATIONS, dtype=bool)
        art_axis = np.zeros((NUM_ARTICULATIONS, 3))
        first_axis = layer.first_axis.cpu().numpy()
        second_axis = layer.second_axis.cpu().numpy()
        for k, j in enumerate(ARTICULATED_JOINTS):
            fi, si = int(layer.first_index[k]), int(layer.second_index[k])
            if fi < NUM_ARTICULATIONS:
                art_joint[fi], art_first[fi], art_axis[fi] = j, True, first_axis[k]
            art_joint[si], art_first[si], art_axis[si] = j, False, second_axis[k]
        # Joint d moves with articulation i when d is a strict descendant of its joint.
        below = np.stack([(path[:, j] > 0) & (np.arange(NUM_JOINTS) != j) for j in art_joint], 1)
        alpha_onehot = np.zeros((NUM_JOINTS, ALPHA_DIM))
        for j, s in enumerate(ALPHA_OF_JOINT):
            if s >= 0:
                alpha_onehot[j, s] = 1.0
        t = lambda a, dt=dtype: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        return cls(t(parent, torch.long), t(path), t(below.astype(np.float64)), t(art_joint, torch.long),
                   t(art_first, torch.bool), t(art_axis), t(alpha_onehot))


def joints_and_jacobian(layer: HandLayer, rotation: torch.Tensor, translation: torch.Tensor,
                        articulations: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                        with_alpha: bool = True, with_beta: bool = True,
                        tables: "KinematicTables | None" = None) -> JointJacobian:
    """Joints ``rotation @ hand_joints + translation`` and their analytic Jacobian.

    rotation: (B, 3, 3) out_from_hand; translation: (B, 3) mm; articulations (B, 20) rad;
    alpha (B, 6); beta (B, 7). Jacobian columns, in order: a rotation increment δ (3,
    applied on the left: R <- exp(δ) R, rad), the translation (3), the 20 articulations,
    then α (6) if ``with_alpha`` and β (7) if ``with_beta``. Revolute joints give
    ω × (p_d − p_j) for every joint d below joint j; α and β enter the posed bones linearly.
    """
    tb = tables or KinematicTables.of(layer)
    posed, shaped = _hand_frames(layer, articulations, alpha, beta)
    hand = posed[..., :3, 3]
    rot_h = posed[..., :3, :3]                                      # (B, 21, 3, 3) hand_from_joint
    joints = hand @ rotation.transpose(-1, -2) + translation[:, None, :]
    rel = joints - translation[:, None, :]
    batch = joints.shape[0]
    cols = [-skew(rel), torch.eye(3, dtype=joints.dtype, device=joints.device).expand(batch, NUM_JOINTS, 3, 3)]
    # Articulations: the world axis of each rotation, then ω × (p_d − p_joint).
    rest_rot = layer.rest_rotations
    par = tb.parent[tb.art_joint]
    first_axes = rot_h[:, par] @ (rest_rot[par].transpose(-1, -2) @ rest_rot[tb.art_joint] @ tb.art_axis[..., None])
    second_axes = rot_h[:, tb.art_joint] @ tb.art_axis[..., None]
    axes = torch.where(tb.art_first[:, None, None], first_axes, second_axes)[..., 0]  # (B, 20, 3) hand
    axes = axes @ rotation.transpose(-1, -2)
    arm = joints[:, :, None, :] - joints[:, None, tb.art_joint, :]                        # (B, 21, 20, 3)
    d_art = torch.linalg.cross(axes[:, None].expand_as(arm), arm, dim=-1) * tb.below[None, :, :, None]
    cols.append(d_art.transpose(-1, -2))                                                  # (B, 21, 3, 20)
    if with_alpha or with_beta:
        parent_rot = rotation[:, None] @ rot_h[:, tb.parent] @ rest_rot[tb.parent].transpose(-1, -2)
    if with_alpha:
        # Posed bone vectors per unit scale, summed along each joint's chain per α.
        bones = ((shaped - shaped[:, tb.parent])[..., None, :] @ parent_rot.transpose(-1, -2))[..., 0, :]
        cols.append(torch.einsum("dj,js,bjc->bdcs", tb.path, tb.alpha_onehot, bones))
    if with_beta:
        morph = layer.joint_morphs - layer.joint_morphs[:, tb.parent]                      # (7, 21, 3)
        scale = alpha @ tb.alpha_onehot.T                                                  # (B, 21)
        dbones = torch.einsum("bjce,tje->bjct", parent_rot, morph) * scale[:, :, None, None]
        cols.append(torch.einsum("dj,bjct->bdct", tb.path, dbones))
    return JointJacobian(joints, torch.cat(cols, -1))


def palm_rows(matrix: torch.Tensor) -> torch.Tensor:
    """(K,) bool: the layout rows that combine palm joints only (rigid with the global pose)."""
    non_palm = torch.ones(NUM_JOINTS, dtype=torch.bool, device=matrix.device)
    non_palm[list(RIGID_PALM_JOINTS)] = False
    return (matrix[:, non_palm].abs() < 1e-12).all(1) & (matrix.abs().sum(1) > 0)


# ---------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Problem:
    """What stays fixed during one solve. All tensors on the layer's device and dtype."""

    layer: HandLayer
    tables: KinematicTables
    matrix: torch.Tensor     # (K, 21) layout
    target: torch.Tensor     # (B, K, 3)
    sqrt_w: torch.Tensor     # (B, K)
    fit_alpha: bool
    fit_beta: bool
    lo: torch.Tensor         # (P,) lower bounds of x (−inf where free)
    hi: torch.Tensor         # (P,)
    config: IKConfig

    def subset(self, idx: torch.Tensor) -> "_Problem":
        return dataclasses.replace(self, target=self.target[idx], sqrt_w=self.sqrt_w[idx])


class _State(NamedTuple):
    rotation: torch.Tensor  # (B, 3, 3) out_from_hand
    x: torch.Tensor         # (B, P): [δ = 0 (3), t (3), articulations (20), α?, β?]
    alpha: torch.Tensor     # (B, 6) fixed values where α is not fitted
    beta: torch.Tensor      # (B, 7)

    def take(self, idx: torch.Tensor) -> "_State":
        return _State(self.rotation[idx], self.x[idx], self.alpha[idx], self.beta[idx])


def _unpack(problem: _Problem, state: _State) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(translation, articulations, α, β) of a state."""
    x, alpha, beta, k = state.x, state.alpha, state.beta, 26
    if problem.fit_alpha:
        alpha = x[:, k:k + ALPHA_DIM]
        k += ALPHA_DIM
    if problem.fit_beta:
        beta = x[:, k:k + BETA_DIM]
    return x[:, 3:6], x[:, 6:26], alpha, beta


def _residuals(problem: _Problem, state: _State) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M) stacked residuals (weighted joint errors in mm, then the prior rows) and their
    Jacobian (B, M, P) with respect to x at δ = 0."""
    trans, arts, alpha, beta = _unpack(problem, state)
    rotation = axis_angle_to_matrix(state.x[:, 0:3]) @ state.rotation
    cfg = problem.config
    joints, jac = joints_and_jacobian(problem.layer, rotation, trans, arts, alpha, beta,
                                      problem.fit_alpha, problem.fit_beta, problem.tables)
    err = torch.einsum("kj,bjc->bkc", problem.matrix, joints) - problem.target
    rows = [(problem.sqrt_w[..., None] * err).flatten(1)]
    jrows = [(problem.sqrt_w[..., None, None] * torch.einsum("kj,bjcp->bkcp", problem.matrix, jac)).flatten(1, 2)]
    p, k = jac.shape[-1], 26
    for fitted, value, dim, weight in ((problem.fit_alpha, alpha - 1.0, ALPHA_DIM, cfg.alpha_prior_mm),
                                       (problem.fit_beta, beta, BETA_DIM, cfg.beta_prior_mm)):
        if fitted:
            rows.append(weight * value)
            prior = jac.new_zeros(jac.shape[0], dim, p)
            prior[:, :, k:k + dim] = weight * torch.eye(dim, dtype=jac.dtype, device=jac.device)
            jrows.append(prior)
            k += dim
    return torch.cat(rows, 1), torch.cat(jrows, 1)


def _fold_rotation(state: _State) -> _State:
    """Move the rotation increment δ of x into R (δ <- 0)."""
    rotation = axis_angle_to_matrix(state.x[:, 0:3]) @ state.rotation
    x = torch.cat((torch.zeros_like(state.x[:, :3]), state.x[:, 3:]), 1)
    return _State(rotation, x, state.alpha, state.beta)


def _levenberg_marquardt(problem: _Problem, state: _State, iterations: int) -> tuple[_State, torch.Tensor]:
    """Refine every item of ``state`` (batch aligned with ``problem``); returns the state and
    its cost (B,). Each iteration evaluates the trial point with its Jacobian, which becomes
    the next linearisation when the step is accepted: one model evaluation per iteration."""
    cfg = problem.config
    x = torch.minimum(torch.maximum(state.x, problem.lo), problem.hi)
    state = _fold_rotation(state._replace(x=x))
    r, jac = _residuals(problem, state)
    cost = r.square().sum(1)
    p = x.shape[1]
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    lam = torch.full((x.shape[0],), cfg.initial_damping, dtype=x.dtype, device=x.device)
    active = torch.arange(x.shape[0], device=x.device)
    for _ in range(iterations):
        if active.numel() == 0:
            break
        sub, cur = problem.subset(active), state.take(active)
        jtj = jac.transpose(1, 2) @ jac
        grad = (jac.transpose(1, 2) @ r[..., None])[..., 0]
        # Active set: parameters on a bound that the descent direction would push through.
        pinned = ((cur.x <= problem.lo) & (grad > 0)) | ((cur.x >= problem.hi) & (grad < 0))
        free = (~pinned).to(x.dtype)
        jtj = jtj * free[:, :, None] * free[:, None, :] + eye * (1.0 - free)[:, None, :]
        grad = grad * free
        lam_a = lam[active]
        diag = torch.diagonal(jtj, dim1=1, dim2=2)
        step = -torch.linalg.solve(jtj + lam_a[:, None, None] * torch.diag_embed(diag + 1e-9), grad)
        x_new = torch.minimum(torch.maximum(cur.x + step, problem.lo), problem.hi)
        trial = _fold_rotation(cur._replace(x=x_new))
        r_new, jac_new = _residuals(sub, trial)
        cost_new = r_new.square().sum(1)
        old = cost[active]
        better = cost_new < old

        def keep(new: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
            return torch.where(better.view(-1, *([1] * (new.ndim - 1))), new, current)

        state = _State(state.rotation.index_copy(0, active, keep(trial.rotation, cur.rotation)),
                       state.x.index_copy(0, active, keep(trial.x, cur.x)), state.alpha, state.beta)
        cost = cost.index_copy(0, active, torch.where(better, cost_new, old))
        r, jac = keep(r_new, r), keep(jac_new, jac)
        lam_new = torch.where(better, (lam_a / 3.0).clamp(min=1e-9), lam_a * 4.0)
        lam = lam.index_copy(0, active, lam_new)
        gain = (old - cost_new) / old.clamp(min=1e-300)
        done = (better & (gain < cfg.rtol)) | (lam_new > 1e10) | (cost[active] < 1e-20)
        active, r, jac = active[~done], r[~done], jac[~done]
    return state, cost


def _as_tensor(name: str, value: torch.Tensor | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    return torch.as_tensor(value).to(dtype=like.dtype, device=like.device)


def _check_shape(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(x.shape)}")


def _layout_matrix(layout: str | Layout, like: torch.Tensor) -> torch.Tensor:
    if isinstance(layout, str):
        layout = get_layout(layout)
    if not isinstance(layout, Layout):
        raise TypeError(f"layout must be a layout name or a Layout, got {type(layout).__name__}")
    return torch.as_tensor(layout.matrix, dtype=like.dtype, device=like.device)


def _initial_state(problem: _Problem, init_theta: torch.Tensor | None, alpha: torch.Tensor,
                   beta: torch.Tensor) -> _State:
    """Global transform by Kabsch of the rest palm and a slightly flexed hand, or ``init_theta``."""
    batch = problem.target.shape[0]
    dtype, device = problem.target.dtype, problem.target.device
    lo, hi = problem.lo[ARTICULATION], problem.hi[ARTICULATION]
    if init_theta is not None:
        rotation = axis_angle_to_matrix(init_theta[:, 0:3])
        trans = init_theta[:, 3:6]
        arts = torch.minimum(torch.maximum(init_theta[:, ARTICULATION], lo), hi)
    else:
        flat = torch.zeros(batch, NUM_ARTICULATIONS, dtype=dtype, device=device)
        rest = hand_frame_joints(problem.layer, flat, alpha, beta)
        source = torch.einsum("kj,bjc->bkc", problem.matrix, rest)
        given = problem.sqrt_w > 0
        palm = given & palm_rows(problem.matrix)[None]
        enough = palm.sum(1) >= 3
        w = torch.where(enough[:, None], palm, given).to(dtype)
        rotation, trans = kabsch(source, problem.target, w)
        flex = torch.tensor([d.kind == "flex" for d in ARTICULATIONS], device=device)
        start = math.radians(problem.config.initial_flexion_deg) * flex.to(dtype)
        arts = torch.minimum(torch.maximum(start, lo), hi).expand(batch, -1)
    parts = [torch.zeros(batch, 3, dtype=dtype, device=device), trans, arts]
    if problem.fit_alpha:
        parts.append(alpha)
    if problem.fit_beta:
        parts.append(beta)
    return _State(rotation, torch.cat(parts, 1), alpha, beta)


def _world_joints(problem: _Problem, state: _State) -> torch.Tensor:
    trans, arts, alpha, beta = _unpack(problem, state)
    rotation = axis_angle_to_matrix(state.x[:, 0:3]) @ state.rotation
    return hand_frame_joints(problem.layer, arts, alpha, beta) @ rotation.transpose(-1, -2) + trans[:, None, :]


def _layout_errors(problem: _Problem, joints: torch.Tensor, given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint distances (B, K) mm (NaN where missing) and their mean over the given joints
    (B,), for canonical ``joints`` (B, 21, 3)."""
    dist = (torch.einsum("kj,bjc->bkc", problem.matrix, joints) - problem.target).norm(dim=-1)
    mean = torch.where(given, dist, torch.zeros_like(dist)).sum(1) / given.sum(1)
    return torch.where(given, dist, torch.full_like(dist, float("nan"))), mean


def fit(target: torch.Tensor | np.ndarray, layer: HandLayer, layout: str | Layout = "canonical",
        weights: torch.Tensor | np.ndarray | None = None, fit_alpha: bool = False, fit_beta: bool = False,
        init_theta: torch.Tensor | np.ndarray | None = None, alpha: torch.Tensor | np.ndarray | None = None,
        beta: torch.Tensor | np.ndarray | None = None, iterations: int | None = None,
        restarts: int | None = None, config: IKConfig | None = None) -> IKResult:
    """Fit θ (and α, β) of ``layer`` to joint positions; see the module docstring for the method.

    target:     (B, K, 3) mm, joints in ``layout`` order (K = the layout's joint count);
                entries of missing joints (weight 0) may be NaN
    layer:      the hand layer; its dtype and device are used (float64 recommended)
    layout:     "canonical", "nyu14", "icvl16", "msra21" or a :class:`Layout`
    weights:    (B, K) ≥ 0 per-joint weights, 0 = missing; None = all 1. Each item needs
                at least 3 given joints
    fit_alpha, fit_beta: also fit bone scales α / shape β (weak priors, clamped to the
                config's ranges)
    init_theta: (B, 26) start pose instead of the palm Kabsch + flat hand (tracking)
    alpha, beta: (B, 6) / (B, 7) fixed values, or the start when fitted; default 1 / 0
    iterations, restarts: override ``config.iterations`` / ``config.restarts``
    """
    cfg = config or IKConfig()
    if iterations is not None:
        cfg = dataclasses.replace(cfg, iterations=iterations)
    if restarts is not None:
        cfg = dataclasses.replace(cfg, restarts=restarts)
    if not isinstance(layer, HandLayer):
        raise TypeError(f"layer must be a HandLayer, got {type(layer).__name__}")
    like = layer.rest_joints
    target = _as_tensor("target", target, like)
    matrix = _layout_matrix(layout, like)
    k = matrix.shape[0]
    if target.ndim != 3 or target.shape[1:] != (k, 3):
        raise ValueError(f"expected target of shape (B, {k}, 3) for this layout, got {tuple(target.shape)}")
    batch = target.shape[0]
    if weights is None:
        weights = torch.ones(batch, k, dtype=like.dtype, device=like.device)
    weights = _as_tensor("weights", weights, like)
    _check_shape("weights", weights, (batch, k))
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("expected finite weights >= 0")
    given = weights > 0
    counts = given.sum(1)
    if (counts < 3).any():
        bad = int((counts < 3).nonzero()[0, 0])
        raise ValueError(f"expected at least 3 given joints (weight > 0) per item, item {bad} has {int(counts[bad])}")
    if not torch.isfinite(target[given]).all():
        raise ValueError("expected finite target coordinates for every joint with weight > 0")
    target = torch.where(given[..., None], target, torch.zeros_like(target))
    ones = torch.ones(batch, ALPHA_DIM, dtype=like.dtype, device=like.device)
    alpha = ones if alpha is None else _as_tensor("alpha", alpha, like)
    beta = torch.zeros(batch, BETA_DIM, dtype=like.dtype, device=like.device) if beta is None \
        else _as_tensor("beta", beta, like)
    _check_shape("alpha", alpha, (batch, ALPHA_DIM))
    _check_shape("beta", beta, (batch, BETA_DIM))
    if init_theta is not None:
        init_theta = _as_tensor("init_theta", init_theta, like)
        _check_shape("init_theta", init_theta, (batch, THETA_DIM))

    t_lo, t_hi = (torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in theta_limits())
    lo, hi = [t_lo], [t_hi]
    for fitted, dim, (a, b) in ((fit_alpha, ALPHA_DIM, cfg.alpha_range), (fit_beta, BETA_DIM, cfg.beta_range)):
        if fitted:
            lo.append(torch.full((dim,), a, dtype=like.dtype, device=like.device))
            hi.append(torch.full((dim,), b, dtype=like.dtype, device=like.device))
    if fit_alpha:
        alpha = alpha.clamp(*cfg.alpha_range)
    if fit_beta:
        beta = beta.clamp(*cfg.beta_range)
    problem = _Problem(layer, KinematicTables.of(layer), matrix, target, weights.sqrt(), fit_alpha, fit_beta,
                       torch.cat(lo), torch.cat(hi), cfg)
    with torch.no_grad():
        state = _initial_state(problem, init_theta, alpha, beta)
        state, cost = _levenberg_marquardt(problem, state, cfg.iterations)
        joints = _world_joints(problem, state)
        state, joints = _restart(problem, state, cost, joints, given)
        return _result(problem, state, joints, given)


def _restart(problem: _Problem, state: _State, cost: torch.Tensor, joints: torch.Tensor,
             given: torch.Tensor) -> tuple[_State, torch.Tensor]:
    """Refit items whose error stays above the threshold from random articulations (uniform
    within the limits), keeping their global transform and shape; the lowest cost wins.
    ``cost`` (B,) and ``joints`` (B, 21, 3) belong to ``state``; returns both updated."""
    cfg = problem.config
    if cfg.restarts == 0:
        return state, joints
    bad = (_layout_errors(problem, joints, given)[1] > cfg.restart_threshold_mm).nonzero()[:, 0]
    if bad.numel() == 0:
        return state, joints
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    n = bad.numel()
    rep = bad.repeat(cfg.restarts)                                        # (restarts * n,)
    lo, hi = problem.lo[ARTICULATION], problem.hi[ARTICULATION]
    u = torch.rand(rep.numel(), NUM_ARTICULATIONS, generator=gen, dtype=torch.float64).to(lo)
    x0 = state.x[rep].clone()
    x0[:, ARTICULATION] = lo + u * (hi - lo)
    sub = problem.subset(rep)
    trial, trial_cost = _levenberg_marquardt(
        sub, _State(state.rotation[rep], x0, state.alpha[rep], state.beta[rep]), cfg.iterations)
    best_cost, best = trial_cost.view(cfg.restarts, n).min(0)
    take = best_cost < cost[bad]
    sel = (best * n + torch.arange(n, device=bad.device))[take]
    dest = bad[take]
    if dest.numel() == 0:
        return state, joints
    state = _State(state.rotation.index_copy(0, dest, trial.rotation[sel]),
                   state.x.index_copy(0, dest, trial.x[sel]), state.alpha, state.beta)
    return state, joints.index_copy(0, dest, _world_joints(sub, trial.take(sel)))


def _result(problem: _Problem, state: _State, joints: torch.Tensor, given: torch.Tensor) -> IKResult:
    state = _fold_rotation(state)
    trans, arts, alpha, beta = _unpack(problem, state)
    theta = torch.cat((matrix_to_axis_angle(state.rotation), trans, arts), 1)
    per_joint, residual = _layout_errors(problem, joints, given)
    return IKResult(theta, alpha.clone(), beta.clone(), joints, residual, per_joint)


def fit_canonical(joints: torch.Tensor | np.ndarray, layer: HandLayer | None = None,
                  **kwargs: object) -> IKResult:
    """Convenience: fit canonical joints, (21, 3) or (B, 21, 3) mm, numpy or torch.

    Builds a float64 layer when none is given; a single pose gives a batch of one.
    Other keyword arguments go to :func:`fit`.
    """
    layer = layer or HandLayer(dtype=torch.float64)
    target = torch.as_tensor(joints)
    if target.ndim == 2:
        target = target[None]
    if target.ndim != 3 or target.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints of shape (21, 3) or (B, 21, 3), got {tuple(target.shape)}")
    return fit(target, layer, "canonical", **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Synthetic poses and the recovery benchmark
# ---------------------------------------------------------------------------------------

def random_theta(batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float64,
                 distance_mm: tuple[float, float] = (300.0, 800.0)) -> torch.Tensor:
    """(B, 26) random poses: articulations uniform within the limits, a uniformly random
    global rotation, the wrist at a uniform depth in ``distance_mm`` within ±150 mm laterally."""
    lo, hi = (torch.as_tensor(v[ARTICULATION], dtype=dtype) for v in theta_limits())
    arts = lo + torch.rand(batch, NUM_ARTICULATIONS, generator=generator, dtype=dtype) * (hi - lo)
    q = torch.randn(batch, 4, generator=generator, dtype=dtype)
    q = q / q.norm(dim=1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    angle = 2.0 * torch.atan2(q[:, 1:].norm(dim=1, keepdim=True), q[:, :1])
    rot = q[:, 1:] / q[:, 1:].norm(dim=1, keepdim=True).clamp(min=1e-12) * angle
    u = torch.rand(batch, 3, generator=generator, dtype=dtype)
    trans = torch.stack(((u[:, 0] - 0.5) * 300.0, (u[:, 1] - 0.5) * 300.0,
                         distance_mm[0] + u[:, 2] * (distance_mm[1] - distance_mm[0])), 1)
    return torch.cat((rot, trans, arts), 1)


class RecoveryStats(NamedTuple):
    """Joint error of IK on poses generated by the layer, mm; time per pose, ms."""

    mean_mm: float
    median_mm: float
    p90_mm: float
    max_mm: float
    ms_per_pose: float      # batched
    ms_single_pose: float   # median over 16 fits of one pose each


def recovery_benchmark(num_poses: int = 512, seed: int = 0, fit_alpha: bool = False,
                       config: IKConfig | None = None) -> RecoveryStats:
    """Generate random in-limit poses with the layer, fit them back, and measure the error."""
    layer = HandLayer(dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    theta = random_theta(num_poses, gen)
    alpha = None
    if fit_alpha:
        alpha = 0.8 + torch.rand(num_poses, ALPHA_DIM, generator=gen, dtype=torch.float64) * 0.45
    with torch.no_grad():
        target = layer(theta, alpha).joints
    start = time.perf_counter()
    result = fit(target, layer, fit_alpha=fit_alpha, config=config)
    elapsed = time.perf_counter() - start
    err = (result.joints - target).norm(dim=-1).mean(1).numpy()
    single = []
    for i in range(min(16, num_poses)):
        start = time.perf_counter()
        fit(target[i:i + 1], layer, fit_alpha=fit_alpha, config=config)
        single.append(time.perf_counter() - start)
    return RecoveryStats(float(err.mean()), float(np.median(err)), float(np.percentile(err, 90)),
                         float(err.max()), 1e3 * elapsed / num_poses, 1e3 * float(np.median(single)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hand IK: recovery benchmark on random poses.")
    parser.add_argument("--bench", action="store_true", help="run the recovery benchmark")
    parser.add_argument("--poses", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-alpha", action="store_true")
    parser.add_argument("--iterations", type=int, default=IKConfig.iterations)
    parser.add_argument("--restarts", type=int, default=IKConfig.restarts)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.bench:
        parser.print_help()
        return
    cfg = IKConfig(iterations=args.iterations, restarts=args.restarts)
    s = recovery_benchmark(args.poses, args.seed, args.fit_alpha, cfg)
    print(f"IK recovery over {args.poses} random in-limit poses (alpha {'free' if args.fit_alpha else '1'}), "
          f"{torch.get_num_threads()} threads: mean joint error mean {s.mean_mm:.2e} mm, "
          f"median {s.median_mm:.2e} mm, p90 {s.p90_mm:.2e} mm, max {s.max_mm:.2e} mm; "
          f"{s.ms_per_pose:.2f} ms per pose batched, {s.ms_single_pose:.1f} ms for a single pose")


if __name__ == "__main__":
    main()
