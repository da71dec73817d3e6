"""Temporal refinement of the tracked hand: SDNet's hierarchical refinement, then a One Euro filter.

Units and frames: joints in the camera frame (x right, y down, z forward), millimetres; depth
images (H, W) float32 mm with 0 = no depth; pixels (u, v) = (column, row), (0, 0) the centre of
the top-left pixel; timestamps in milliseconds (the sensor's clock), filter maths in seconds.
Joint order: ``models/joints.py``. Bones: ``CONNECTIONS`` order, bone ``b`` ends at joint ``b + 1``.

Two stages, each a small stateful class over pure numpy functions:

1. **Hierarchical refinement** (SDNet, its section "Estimate Joints with Hierarchical
   Regression", eq. 8-12): joints are refined layer by layer from the palm to the tips
   (:data:`LAYERS`: wrist + thumb CMC + finger MCPs; thumb MCP + PIPs; thumb IP + DIPs; tips). Each
   joint of a layer, all fingers at once, takes the lowest-energy candidate of a small 3D
   grid around it, coarse to fine (:func:`refine_joints`). Energy (eq. 8) per candidate X:

   - φ_G, bone-length prior: −log p of each bone touching X under a 5-Gaussian mixture per bone,
     fitted by EM on our synthetic training labels (:class:`BoneGMM`). Lengths are divided by
     the hand's scale (mean wrist-to-MCP length of the four fingers), so one prior serves a
     child's and a large adult's hand: on the labels this takes the spread of the palm bones
     from 18 % to 0.5-1 % and of the phalanges from 18-19 % to 14 % (what is left is the
     independent per-finger scale of our subject pool). The scale comes from the incoming
     estimate, averaged over the track (:class:`HierarchicalRefiner`).
   - φ_D, 2D projection feasibility against the depth (eq. 10): the fraction of a small disc of
     pixels around X's projection whose depth does not fit a joint at X's depth: no depth
     (background), a surface far behind X (X floats in front of the hand) or, with a lower
     cost, a surface far in front of X (X hidden behind something) (:func:`depth_energy`).
   - φ_M, temporal term (eq. 11-12): a tip moves with its parent, so it should lie near its
     previous refined position moved by its parent's motion; a truncated quadratic, so real
     finger motion is not locked (:func:`temporal_energy`).
   - a small quadratic pull to the network's estimate (not in the paper; our addition): it
     breaks the ties of the flat depth term and keeps good estimates where they are.

2. **One Euro filter** (Casiez, Roussel & Vogel, CHI 2012) on the 63 coordinates, with the real
   frame intervals (:func:`one_euro_step`, :class:`OneEuroFilter`).

:class:`TemporalRefiner` chains both; :func:`evaluate_refinement` measures joint error and
jitter with each stage on and off. ``python -m app.refine --fit-gmm`` refits the bone prior
(``app/assets/bone_gmm.npz``); ``python -m app.refine --evaluate`` runs the noise-model
evaluation of ``app/README_REFINE.md`` and ``--bench`` times each stage per frame. Runs on the
tracking thread; nothing here is shared between threads.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from calib import Intrinsics, check_depth_mm, project
from models.joints import CONNECTIONS, NUM_JOINTS, PARENTS, TIPS, Joint

NUM_BONES = len(CONNECTIONS)  # 20
#: The bone prior's lookup table, read with linear interpolation: bone / scale ratios 0, LUT_STEP,
#: ..., (LUT_SIZE - 1) · LUT_STEP = 2.5 (0.0005 is 0.04 mm on an 80 mm hand scale); longer ratios
#: read the last entry.
LUT_STEP = 0.0005
LUT_SIZE = 5001
ASSET_PATH = Path(__file__).resolve().parent / "assets" / "bone_gmm.npz"
DEFAULT_SHARDS = Path(__file__).resolve().parents[1] / "data" / "synth" / "train"

#: Refinement layers, palm to tips; within a layer the joints are refined together.
LAYERS: tuple[tuple[int, ...], ...] = (
    (Joint.WRIST, Joint.THUMB_CMC, Joint.INDEX_MCP, Joint.MIDDLE_MCP, Joint.RING_MCP, Joint.LITTLE_MCP),
    (Joint.THUMB_MCP, Joint.INDEX_PIP, Joint.MIDDLE_PIP, Joint.RING_PIP, Joint.LITTLE_PIP),
    (Joint.THUMB_IP, Joint.INDEX_DIP, Joint.MIDDLE_DIP, Joint.RING_DIP, Joint.LITTLE_DIP),
    (Joint.THUMB_TIP, Joint.INDEX_TIP, Joint.MIDDLE_TIP, Joint.RING_TIP, Joint.LITTLE_TIP),
)

#: The bones (wrist to index, middle, ring, little MCP) whose mean length is the hand's scale.
SCALE_BONES: tuple[int, ...] = (Joint.INDEX_MCP - 1, Joint.MIDDLE_MCP - 1, Joint.RING_MCP - 1,
                                Joint.LITTLE_MCP - 1)

_BONE_PARENT = np.array([p for p, _ in CONNECTIONS])
_BONE_CHILD = np.array([c for _, c in CONNECTIONS])


# ============================================================================ input checks

def _check_joints(joints: Any, what: str = "joints") -> np.ndarray:
    """(21, 3) finite numbers -> float64 copy-free view; ValueError/TypeError otherwise."""
    a = np.asarray(joints)
    if a.shape != (NUM_JOINTS, 3):
        raise ValueError(f"{what}: expected shape ({NUM_JOINTS}, 3) mm, got {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise TypeError(f"{what}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: expected finite coordinates, got non-finite at joints "
                         f"{np.flatnonzero(~np.isfinite(a).all(1)).tolist()}")
    return a


def _check_time(timestamp_ms: Any) -> float:
    t = float(timestamp_ms)
    if not math.isfinite(t):
        raise ValueError(f"timestamp_ms: expected a finite number of milliseconds, got {timestamp_ms}")
    return t


# ============================================================================ bone-length prior

def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 21, 3) joints, mm -> (..., 20) bone lengths, mm, in ``CONNECTIONS`` order."""
    joints = np.asarray(joints, dtype=np.float64)
    return np.linalg.norm(joints[..., _BONE_CHILD, :] - joints[..., _BONE_PARENT, :], axis=-1)


def hand_scale_mm(joints: np.ndarray) -> np.ndarray:
    """(..., 21, 3) joints, mm -> (...) the hand's scale: mean wrist-to-MCP length of the four fingers, mm."""
    joints = np.asarray(joints, dtype=np.float64)
    mcps = joints[..., [Joint.INDEX_MCP, Joint.MIDDLE_MCP, Joint.RING_MCP, Joint.LITTLE_MCP], :]
    return np.linalg.norm(mcps - joints[..., None, Joint.WRIST, :], axis=-1).mean(-1)


class GMMFit(NamedTuple):
    """1-D Gaussian mixtures, one per column. (B, K) float64 each; weights sum to 1 per row."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    log_likelihood: np.ndarray  # (B,) mean log-likelihood per sample at the end
    iterations: int


def _log_normal(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2.0 * math.pi)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis=axis))


def fit_gmm_1d(x: np.ndarray, components: int = 5, iterations: int = 200, min_std: float = 1e-3,
               tol: float = 1e-6) -> GMMFit:
    """EM for a 1-D Gaussian mixture per column of x (N, B) -> :class:`GMMFit` with (B, K) parameters.

    Deterministic: means start at the quantiles (k + 0.5) / K, stds at the column's std / K,
    equal weights. ``min_std`` (units of x) floors every std (no collapse onto repeated values).
    Stops when no column's mean log-likelihood improves by more than ``tol``, or after
    ``iterations`` (on the bone ratios some column is still creeping at 200; the fit no longer
    changes visibly).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < components or not np.isfinite(x).all():
        raise ValueError(f"expected finite x of shape (N, B) with N >= {components}, got {x.shape}")
    k = components
    means = np.quantile(x, (np.arange(k) + 0.5) / k, axis=0).T.copy()             # (B, K)
    stds = np.maximum(np.repeat(x.std(0)[:, None] / k, k, 1), min_std)
    weights = np.full_like(means, 1.0 / k)
    xs = x[:, :, None]                                                            # (N, B, 1)
    previous = np.full(x.shape[1], -np.inf)
    it = 0
    for it in range(1, iterations + 1):
        log_joint = np.log(weights) + _log_normal(xs, means, stds)                # (N, B, K)
        log_total = _logsumexp(log_joint, axis=2)                                 # (N, B)
        resp = np.exp(log_joint - log_total[..., None])
        nk = resp.sum(0) + 1e-12                                                  # (B, K)
        weights = nk / x.shape[0]
        means = (resp * xs).sum(0) / nk
        stds = np.maximum(np.sqrt((resp * (xs - means) ** 2).sum(0) / nk), min_std)
        ll = log_total.mean(0)
        if np.all(ll - previous < tol):
            break
        previous = ll
    ll = _logsumexp(np.log(weights) + _log_normal(xs, means, stds), axis=2).mean(0)
    return GMMFit(weights, means, stds, ll, it)


@dataclass(frozen=True)
class BoneGMM:
    """A Gaussian mixture per bone of the length ratio bone / hand scale (:func:`hand_scale_mm`).

    weights, means, stds: (20, K) float64; means and stds are dimensionless ratios.
    source: where the fit came from (free text, JSON in the asset).
    """

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("weights", "means", "stds"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[0] != NUM_BONES or a.shape != self.weights.shape:
                raise ValueError(f"BoneGMM.{name}: expected shape ({NUM_BONES}, K), got {a.shape}")
        if not (self.stds > 0).all() or not np.allclose(self.weights.sum(1), 1.0):
            raise ValueError("BoneGMM: expected positive stds and weights summing to 1 per bone")

    @property
    def components(self) -> int:
        return int(self.weights.shape[1])

    def neg_log_pdf(self, ratio: np.ndarray, bones: np.ndarray) -> np.ndarray:
        """−log p(ratio) in nats, minus the smallest value of that bone's −log p (so ≥ ~0). Exact.

        ratio: (P, ...) bone length / hand scale; bones: (P,) int bone indices. Returns ratio's shape.
        """
        bones = np.asarray(bones)
        ratio = np.asarray(ratio, dtype=np.float64)
        shape = (bones.shape[0],) + (1,) * (ratio.ndim - 1) + (self.components,)
        log_coef, mean, inv_std = (a[bones].reshape(shape) for a in self._tables)
        log_joint = log_coef - 0.5 * ((ratio[..., None] - mean) * inv_std) ** 2
        top = log_joint.max(-1)
        nll = -(top + np.log(np.exp(log_joint - top[..., None]).sum(-1)))
        return nll - self._nll_floor[bones].reshape(shape[:-1])

    @functools.cached_property
    def lut(self) -> np.ndarray:
        """(20, LUT_SIZE) :meth:`neg_log_pdf` tabulated at ratios 0, LUT_STEP, ..., 2.5 (nats), for
        :func:`bone_energy`: an interpolated lookup instead of K exponentials per candidate."""
        grid = np.arange(LUT_SIZE) * LUT_STEP
        table = self.neg_log_pdf(np.broadcast_to(grid, (NUM_BONES, LUT_SIZE)), np.arange(NUM_BONES))
        table.flags.writeable = False
        return table

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(20, K) each: log(weight / (std √(2π))), mean, 1 / std."""
        return (np.log(self.weights) - np.log(self.stds) - 0.5 * math.log(2.0 * math.pi), self.means,
                1.0 / self.stds)

    @functools.cached_property
    def _nll_floor(self) -> np.ndarray:
        """(20,) the smallest −log p of each bone, on a fine grid around its components' means (nats)."""
        grid = np.linspace(self.means.min(1) - 0.05, self.means.max(1) + 0.05, 2001, axis=1)  # (20, 2001)
        nll = -_logsumexp(np.log(self.weights[:, None]) + _log_normal(grid[..., None], self.means[:, None],
                                                                      self.stds[:, None]), axis=-1)
        return nll.min(1)


def fit_bone_gmm(joints: np.ndarray, components: int = 5, min_std: float = 0.003,
                 source: str = "") -> BoneGMM:
    """(N, 21, 3) labelled joints, mm -> :class:`BoneGMM` of bone / hand-scale ratios (EM, K = 5).

    ``min_std``: floor on each Gaussian's std, in ratio units (0.003 ≈ 0.25 mm on an 80 mm scale).
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints of shape (N, {NUM_JOINTS}, 3), got {joints.shape}")
    ratio = bone_lengths(joints) / hand_scale_mm(joints)[:, None]
    fit = fit_gmm_1d(ratio, components=components, min_std=min_std)
    return BoneGMM(fit.weights, fit.means, fit.stds, source)


def save_bone_gmm(gmm: BoneGMM, path: str | Path = ASSET_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, weights=gmm.weights, means=gmm.means, stds=gmm.stds, source=np.array(gmm.source))
    return path


def load_bone_gmm(path: str | Path = ASSET_PATH) -> BoneGMM:
    """The shipped (or a refitted) bone prior. Refit: ``python -m app.refine --fit-gmm``."""
    with np.load(Path(path)) as z:
        return BoneGMM(z["weights"].astype(np.float64), z["means"].astype(np.float64),
                       z["stds"].astype(np.float64), str(z["source"]))


def read_label_shards(folder: str | Path = DEFAULT_SHARDS, shards: int = 10) -> tuple[np.ndarray, list[str]]:
    """The first ``shards`` ``shard_*.npz`` of ``folder`` -> (joints (N, 21, 3) float64 mm, file names)."""
    files = sorted(Path(folder).glob("shard_*.npz"))[:shards]
    if not files:
        raise FileNotFoundError(f"no shard_*.npz in {folder} (generate them: python -m models.synth generate)")
    joints = [np.load(f)["joints_mm"].astype(np.float64) for f in files]
    return np.concatenate(joints), [f.name for f in files]


# ============================================================================ energy terms

@dataclass(frozen=True)
class RefineConfig:
    """Hierarchical refinement. Energies are dimensionless; each weight says what one unit costs.

    bone_weight: per nat of −log p(bone / scale) (φ_G), summed over the bones touching the joint.
    child_bone_weight: factor on the bones to the not yet refined child joints (the paper scores
        the bone to the child; we score the refined parent's bone with weight 1 and these with this).
    depth_weight: per unit of φ_D, the fraction (0-1) of the disc's pixels that do not fit.
    disc_radius: radius of the pixel disc around a joint's projection, as a fraction of the hand
        scale (0.06: 4.8 mm at the training set's mean scale of 80 mm, 3.6 mm on a child's hand).
    tip_disc_radius: the same for the tips, smaller: a tip joint lies only 2-4 mm inside the end
        of the finger (our model), so a wider disc reaches past the end and pulls it inwards.
    depth_front_mm: how far the visible surface may lie in front of the joint at no cost, mm
        (joints are inside the hand: 5-20 mm behind the surface on our model, the wrist 20 mm).
    depth_behind_mm: how far the visible surface may lie behind the joint at no cost, mm.
    depth_ramp_mm: the cost rises from 0 to 1 over this many mm past either tolerance.
    occluded_cost: cost of a pixel whose surface lies in front by more than the tolerance
        (the joint may be hidden by another finger), relative to background (1).
    temporal_weight: φ_M per (distance / temporal_sigma_mm)², capped at temporal_cap_mm.
    temporal_sigma_mm, temporal_cap_mm: mm.
    temporal_joints: "tips" (the paper) or "all" (every joint except the wrist).
    stay_weight: per mm² of distance from the network's estimate (our addition).
    search_steps_mm: grid spacing of each coarse-to-fine round, mm; each round recentres.
    search_half_width: grid points on each side of the centre per axis ((2h + 1)³ candidates).
    refine_wrist: refine the wrist too (with the first layer); False keeps the estimate's wrist.
    max_gap_ms: a longer gap between frames drops the temporal term's memory.
    scale_frames: the hand scale is the running mean of this many frames' estimates.
    """

    bone_weight: float = 1.0
    child_bone_weight: float = 0.5
    depth_weight: float = 4.0
    disc_radius: float = 0.06
    tip_disc_radius: float = 0.03
    depth_front_mm: float = 25.0
    depth_behind_mm: float = 5.0
    depth_ramp_mm: float = 10.0
    occluded_cost: float = 0.3
    temporal_weight: float = 0.5
    temporal_sigma_mm: float = 10.0
    temporal_cap_mm: float = 20.0
    temporal_joints: str = "tips"
    stay_weight: float = 0.01
    search_steps_mm: tuple[float, ...] = (8.0, 4.0, 2.0)
    search_half_width: int = 1
    refine_wrist: bool = True
    max_gap_ms: float = 500.0
    scale_frames: int = 30

    def __post_init__(self) -> None:
        if self.temporal_joints not in ("tips", "all"):
            raise ValueError(f"temporal_joints: expected 'tips' or 'all', got {self.temporal_joints!r}")
        if self.search_half_width < 1 or not self.search_steps_mm or min(self.search_steps_mm) <= 0:
            raise ValueError("expected search_half_width >= 1 and positive search_steps_mm")
        for name in ("disc_radius", "tip_disc_radius", "depth_ramp_mm", "temporal_sigma_mm", "temporal_cap_mm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")


#: Unit disc of the depth kernel (13, 2): centre, 4 points at radius 0.5, 8 at radius 1 (× the radius in px).
DISC_PATTERN = np.concatenate([
    np.zeros((1, 2)),
    0.5 * np.stack([np.cos(np.arange(4) * np.pi / 2 + np.pi / 4), np.sin(np.arange(4) * np.pi / 2 + np.pi / 4)], 1),
    np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1),
])
_AHEAD = np.array([0.0, 0.0, 1.0])  # stand-in for candidates behind the camera (their cost is 1)


def depth_energy(points: np.ndarray, depth_mm: np.ndarray, intr: Intrinsics, radius_mm: float,
                 cfg: RefineConfig = RefineConfig()) -> np.ndarray:
    """φ_D: (..., 3) candidate joints, mm -> (...) fraction in [0, 1] of disc pixels that do not fit.

    The disc of radius ``radius_mm`` (in pixels fx · r / z) around each projection is
    sampled at 13 pixels. A pixel costs 1 with no depth (0, NaN, outside the image: background),
    ramps to 1 when its surface is more than ``depth_behind_mm`` behind the joint, and to
    ``occluded_cost`` when more than ``depth_front_mm`` in front of it. Candidates with z ≤ 1 mm cost 1.
    """
    pts = np.asarray(points, dtype=np.float64)
    z = pts[..., 2]
    ahead = z > 1.0
    uvd = project(pts if ahead.all() else np.where(ahead[..., None], pts, _AHEAD), intr)
    r_px = (radius_mm * intr.fx) / np.maximum(z, 1.0)
    h, w = depth_mm.shape
    u = np.floor(uvd[..., 0, None] + r_px[..., None] * DISC_PATTERN[:, 0] + 0.5)     # (..., 13) pixel columns
    v = np.floor(uvd[..., 1, None] + r_px[..., None] * DISC_PATTERN[:, 1] + 0.5)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    d = depth_mm.reshape(-1)[np.where(inside, v * w + u, 0).astype(np.intp)]
    valid = inside & (d > 0)                                                        # NaN > 0 is False
    gap = d - z[..., None]                                                    # > 0: surface behind the joint
    behind = np.minimum(np.maximum(gap - cfg.depth_behind_mm, 0.0) / cfg.depth_ramp_mm, 1.0)
    front = cfg.occluded_cost * np.minimum(np.maximum(-gap - cfg.depth_front_mm, 0.0) / cfg.depth_ramp_mm, 1.0)
    cost = np.where(valid, np.maximum(behind, front), 1.0).sum(-1) * (1.0 / len(DISC_PATTERN))
    return np.where(ahead, cost, 1.0)


def bone_energy(points: np.ndarray, others: np.ndarray, bones: np.ndarray, scale_mm: float,
                gmm: BoneGMM) -> np.ndarray:
    """φ_G: −log p(|points − others| / scale_mm) under each bone's mixture, nats (≥ ~0), read from
    :attr:`BoneGMM.lut` by linear interpolation (within 0.01 nats of :meth:`BoneGMM.neg_log_pdf`
    wherever that is below 20 nats, for ratios up to 2.5).

    points: (P, C, 3) candidates, mm; others: (P, 3) the joints at the other end of each bone;
    bones: (P,) bone indices. Returns (P, C).
    """
    return _bone_energy(points, others, scale_mm, *_lut_rows(gmm, bones))


def _lut_rows(gmm: BoneGMM, bones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat lookup table (a view, no copy) and the offset of each of ``bones`` (P,) into it, (P, 1)."""
    return gmm.lut.reshape(-1), (np.asarray(bones, dtype=np.intp) * LUT_SIZE)[:, None]


def _bone_energy(points: np.ndarray, others: np.ndarray, scale_mm: float, table: np.ndarray,
                 offsets: np.ndarray) -> np.ndarray:
    diff = points - others[:, None, :]
    position = np.minimum(np.sqrt((diff * diff).sum(-1)) * (1.0 / (scale_mm * LUT_STEP)), LUT_SIZE - 1.0)
    below = np.minimum(position.astype(np.intp), LUT_SIZE - 2)
    frac = position - below
    below += offsets
    return table[below] + frac * (table[below + 1] - table[below])


def temporal_energy(points: np.ndarray, predicted: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """φ_M: (n, C, 3) candidates and (n, 3) predicted positions, mm -> (n, C) truncated quadratic.

    min(d, cap)² / σ², d the distance to the prediction (its previous refined position moved by its
    parent's motion since the previous frame).
    """
    d = np.linalg.norm(points - predicted[:, None, :], axis=-1)
    return (np.minimum(d, cfg.temporal_cap_mm) / cfg.temporal_sigma_mm) ** 2


@functools.lru_cache(maxsize=32)
def grid_offsets(step_mm: float, half_width: int) -> np.ndarray:
    """(C, 3) offsets, mm: a cubic grid of (2h + 1)³ points, spacing ``step_mm``, centre included."""
    r = np.arange(-half_width, half_width + 1, dtype=np.float64) * step_mm
    grid = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    grid.flags.writeable = False  # cached: shared between calls
    return grid


class _LayerPlan(NamedTuple):
    """The fixed structure of one layer (n joints) and the P bones touching them.

    joints, parents: (n,) the layer's joints and their parents (the wrist's parent: itself).
    slot, other, bone, is_child: (P,) for each bone, the layer slot it touches, the joint at its
    other end, its index, and whether that other joint is a (not yet refined) child.
    sum_matrix: (n, P) 0/1, adds bone energies per slot. is_tip: (n,) bool.
    """

    joints: np.ndarray
    parents: np.ndarray
    slot: np.ndarray
    other: np.ndarray
    bone: np.ndarray
    is_child: np.ndarray
    sum_matrix: np.ndarray
    is_tip: np.ndarray


def _layer_plan(layer: Sequence[int]) -> _LayerPlan:
    slot, other, bone, is_child = [], [], [], []
    for i, j in enumerate(layer):
        if PARENTS[j] >= 0:
            slot.append(i), other.append(PARENTS[j]), bone.append(j - 1), is_child.append(False)
        for c in range(NUM_JOINTS):
            if PARENTS[c] == j:
                slot.append(i), other.append(c), bone.append(c - 1), is_child.append(True)
    matrix = np.zeros((len(layer), len(slot)))
    matrix[np.array(slot), np.arange(len(slot))] = 1.0
    return _LayerPlan(np.array(layer), np.array([max(PARENTS[j], 0) for j in layer]), np.array(slot),
                      np.array(other), np.array(bone), np.array(is_child), matrix,
                      np.array([j in TIPS for j in layer]))


_LAYER_PLANS: tuple[_LayerPlan, ...] = tuple(_layer_plan(layer) for layer in LAYERS)
_LAYER_PLANS_NO_WRIST: tuple[_LayerPlan, ...] = (_layer_plan(LAYERS[0][1:]),) + _LAYER_PLANS[1:]


class RefineResult(NamedTuple):
    """Output of :func:`refine_joints`.

    joints: (21, 3) float64, mm, camera frame, refined.
    energy: (21,) the chosen candidate's total energy per joint (dimensionless; 0 for joints not refined).
    moved_mm: (21,) distance from the input estimate, mm.
    """

    joints: np.ndarray
    energy: np.ndarray
    moved_mm: np.ndarray


def refine_joints(joints: np.ndarray, depth_mm: np.ndarray, intr: Intrinsics, gmm: BoneGMM,
                  cfg: RefineConfig = RefineConfig(), scale_mm: float | None = None,
                  previous: np.ndarray | None = None) -> RefineResult:
    """SDNet's hierarchical refinement of one frame (pure).

    joints: (21, 3) mm, camera frame, the network's estimate. depth_mm: (H, W) float32 mm, 0 = none.
    scale_mm: the hand's scale (:func:`hand_scale_mm`), from ``joints`` when None.
    previous: (21, 3) mm, the previous frame's refined joints, for φ_M; None = no temporal term.
    Each layer's joints (vectorised over the layer and the candidates) take, round by round,
    the lowest-energy point of a grid around their current position; a round scores the bones
    against the other ends' positions after the previous round (the wrist and the MCP row share
    the first layer), and later layers see the refined earlier ones.
    """
    estimate = _check_joints(joints)
    depth_mm = check_depth_mm(depth_mm, intr)
    if previous is not None:
        previous = _check_joints(previous, "previous")
    scale = float(hand_scale_mm(estimate)) if scale_mm is None else float(scale_mm)
    if not scale > 0:
        raise ValueError(f"scale_mm: expected > 0, got {scale}")
    depth_mm = np.ascontiguousarray(depth_mm)
    out = estimate.copy()
    energy = np.zeros(NUM_JOINTS)
    grids = [grid_offsets(float(step), cfg.search_half_width) for step in cfg.search_steps_mm]
    for plan in _LAYER_PLANS if cfg.refine_wrist else _LAYER_PLANS_NO_WRIST:
        n = len(plan.joints)
        rows = np.arange(n)
        table, offsets = _lut_rows(gmm, plan.bone)
        bone_w = plan.sum_matrix * (cfg.bone_weight * np.where(plan.is_child, cfg.child_bone_weight, 1.0))
        temporal_w = None
        if previous is not None and cfg.temporal_weight > 0:
            temporal_w = cfg.temporal_weight * (plan.is_tip if cfg.temporal_joints == "tips" else plan.joints > 0)
            # The joint moves with its parent: its previous position plus the parent's motion since.
            predicted = previous[plan.joints] + (out[plan.parents] - previous[plan.parents])
        radius = scale * (cfg.tip_disc_radius if plan.is_tip.all() else cfg.disc_radius)
        start = estimate[plan.joints][:, None, :]
        centre = out[plan.joints]
        for grid in grids:
            cand = centre[:, None, :] + grid                                              # (n, C, 3)
            e = cfg.depth_weight * depth_energy(cand, depth_mm, intr, radius, cfg)
            e += cfg.stay_weight * ((cand - start) ** 2).sum(-1)
            e += bone_w @ _bone_energy(cand[plan.slot], out[plan.other], scale, table, offsets)   # (n, P) @ (P, C)
            if temporal_w is not None:
                e += temporal_w[:, None] * temporal_energy(cand, predicted, cfg)
            best = e.argmin(1)
            centre = cand[rows, best]
            energy[plan.joints] = e[rows, best]
            out[plan.joints] = centre      # joints of the same layer see each other's new positions
    return RefineResult(out, energy, np.linalg.norm(out - estimate, axis=-1))


class HierarchicalRefiner:
    """Stateful wrapper of :func:`refine_joints` for one tracked hand (tracking thread).

    Keeps the previous refined joints (temporal term) and the running hand scale; both are
    dropped by :meth:`reset` and by a jump in time over ``cfg.max_gap_ms`` either way (a repeated
    or slightly earlier timestamp keeps them, as in :class:`OneEuroFilter`).
    """

    def __init__(self, cfg: RefineConfig = RefineConfig(), gmm: BoneGMM | None = None) -> None:
        self.cfg = cfg
        self.gmm = gmm if gmm is not None else load_bone_gmm()
        self.reset()

    def reset(self) -> None:
        self._previous: np.ndarray | None = None
        self._last_ms: float | None = None
        self._scale_mean = 0.0
        self._scale_count = 0
        self.last: RefineResult | None = None

    @property
    def scale_mm(self) -> float | None:
        """The running hand scale, mm (None before the first frame)."""
        return self._scale_mean if self._scale_count else None

    def __call__(self, joints: np.ndarray, depth_mm: np.ndarray, intr: Intrinsics,
                 timestamp_ms: float | None = None) -> np.ndarray:
        """(21, 3) estimate, mm -> (21, 3) float64 refined joints, mm."""
        estimate = _check_joints(joints)
        if timestamp_ms is not None:
            t = _check_time(timestamp_ms)
            if self._last_ms is not None and abs(t - self._last_ms) > self.cfg.max_gap_ms:
                self.reset()
            self._last_ms = t if self._last_ms is None else max(t, self._last_ms)
        # Running mean of the scale over the last ``scale_frames`` frames (exponential after that).
        self._scale_count = min(self._scale_count + 1, self.cfg.scale_frames)
        s = float(hand_scale_mm(estimate))
        self._scale_mean = s if self._scale_count == 1 else self._scale_mean + (s - self._scale_mean) / self._scale_count
        self.last = refine_joints(estimate, depth_mm, intr, self.gmm, self.cfg, self._scale_mean, self._previous)
        self._previous = self.last.joints
        return self.last.joints


# ============================================================================ One Euro filter

@dataclass(frozen=True)
class OneEuroConfig:
    """One Euro filter (Casiez et al. 2012) per coordinate.

    min_cutoff_hz: cutoff at rest, Hz (lower: less jitter, more lag when slow).
    beta_per_mm: cutoff increase per mm/s of filtered speed, Hz / (mm/s) (higher: less lag when fast).
    d_cutoff_hz: cutoff of the speed estimate, Hz.
    max_gap_ms: a longer gap (or time going back by more) restarts the filter at the new frame.
    fallback_dt_ms: the interval used when a timestamp repeats or goes back a little (no division
        by zero): the last positive interval, or this before there is one.
    """

    min_cutoff_hz: float = 1.0
    beta_per_mm: float = 0.02
    d_cutoff_hz: float = 1.0
    max_gap_ms: float = 500.0
    fallback_dt_ms: float = 1000.0 / 30.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff_hz", "d_cutoff_hz", "max_gap_ms", "fallback_dt_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")
        if not self.beta_per_mm >= 0:
            raise ValueError(f"beta_per_mm: expected >= 0, got {self.beta_per_mm}")


def smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray:
    """α = 1 / (1 + τ / dt), τ = 1 / (2π f_c): the exponential smoothing weight of the new sample."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroState(NamedTuple):
    """Filter memory: x (D,) last filtered value, dx (D,) last filtered speed (units/s)."""

    x: np.ndarray
    dx: np.ndarray


def one_euro_step(x: np.ndarray, state: OneEuroState | None, dt_s: float,
                  cfg: OneEuroConfig) -> tuple[np.ndarray, OneEuroState]:
    """One step of the filter over any array x (pure). ``state`` None: x passes through.

    dt_s: seconds since the previous sample, > 0. Returns (filtered x, new state).
    """
    x = np.asarray(x, dtype=np.float64)
    if state is None:
        return x.copy(), OneEuroState(x.copy(), np.zeros_like(x))
    if not dt_s > 0:
        raise ValueError(f"dt_s: expected > 0 seconds, got {dt_s}")
    dx = (x - state.x) / dt_s
    a_d = smoothing_factor(cfg.d_cutoff_hz, dt_s)
    dx_hat = state.dx + a_d * (dx - state.dx)
    cutoff = cfg.min_cutoff_hz + cfg.beta_per_mm * np.abs(dx_hat)
    a = smoothing_factor(cutoff, dt_s)
    x_hat = state.x + a * (x - state.x)
    return x_hat, OneEuroState(x_hat, dx_hat)


class OneEuroFilter:
    """One Euro filter of the 63 joint coordinates with the sensor timestamps (tracking thread)."""

    def __init__(self, cfg: OneEuroConfig = OneEuroConfig()) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self._state: OneEuroState | None = None
        self._last_ms: float | None = None
        self._dt_s = self.cfg.fallback_dt_ms / 1000.0

    def interval_s(self, timestamp_ms: float) -> float | None:
        """Seconds to filter over for a frame at ``timestamp_ms``; None = restart (first frame or gap)."""
        if self._last_ms is None:
            return None
        gap = timestamp_ms - self._last_ms
        if abs(gap) > self.cfg.max_gap_ms:
            return None
        return gap / 1000.0 if gap > 0 else self._dt_s

    def __call__(self, joints: np.ndarray, timestamp_ms: float) -> np.ndarray:
        """(21, 3) joints, mm, at the sensor time ``timestamp_ms`` -> (21, 3) float64 filtered joints."""
        x = _check_joints(joints)
        t = _check_time(timestamp_ms)
        dt = self.interval_s(t)
        if dt is None:                       # first frame or a gap: restart here
            self._state, self._last_ms = None, t
        elif t > self._last_ms:              # normal frame (else: a repeat, kept on the last clock)
            self._dt_s, self._last_ms = dt, t
        out, self._state = one_euro_step(x.reshape(-1), self._state, dt or 1.0, self.cfg)
        return out.reshape(NUM_JOINTS, 3)


# ============================================================================ both

@dataclass(frozen=True)
class TemporalRefinerConfig:
    """Refinement then filtering; each stage can be switched off."""

    refine_enabled: bool = True
    filter_enabled: bool = True
    refine: RefineConfig = field(default_factory=RefineConfig)
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)


#: The One Euro filter after the model fit (``--fit``): a higher speed term than the default's
#: 0.02. The fit's answer lags less behind the hand than the network's, and the default filter
#: gave the lag back: on the 600-frame demo render (the tuning set) the fitted hand's error went
#: 9.55 mm unfiltered, 9.92 mm filtered at 0.02, 9.45 at 0.05 (jitter 8.4 → 2.3 and 3.2 mm/frame²);
#: on the demo recording 10.24, 11.25 and 10.35 mm (jitter 10.9 → 3.6 and 4.8).
FIT_ONE_EURO = OneEuroConfig(beta_per_mm=0.05)


def temporal_refiner_config(fit: bool = False) -> TemporalRefinerConfig:
    """The app's temporal refinement: SDNet's hierarchical refinement then the One Euro filter;
    after the model fit (``fit``) the filter alone, with :data:`FIT_ONE_EURO` (the refinement,
    made for the network's errors, cost 1 mm there: README, "Model fitting")."""
    if fit:
        return TemporalRefinerConfig(refine_enabled=False, one_euro=FIT_ONE_EURO)
    return TemporalRefinerConfig()


class TemporalRefiner:
    """Hierarchical refinement, then the One Euro filter, for one tracked hand (tracking thread).

    Call with ``joints=None`` when the hand is lost: the state is dropped and None returned.
    """

    def __init__(self, cfg: TemporalRefinerConfig = TemporalRefinerConfig(), gmm: BoneGMM | None = None) -> None:
        self.cfg = cfg
        self.refiner = HierarchicalRefiner(cfg.refine, gmm) if cfg.refine_enabled else None
        self.filter = OneEuroFilter(cfg.one_euro) if cfg.filter_enabled else None

    def reset(self) -> None:
        if self.refiner is not None:
            self.refiner.reset()
        if self.filter is not None:
            self.filter.reset()

    def __call__(self, joints: np.ndarray | None, depth_mm: np.ndarray, intr: Intrinsics,
                 timestamp_ms: float) -> np.ndarray | None:
        """(21, 3) estimate, mm (None: hand lost) -> (21, 3) float64 joints, mm, or None."""
        if joints is None:
            self.reset()
            return None
        out = _check_joints(joints)
        if self.refiner is not None:
            out = self.refiner(out, depth_mm, intr, timestamp_ms)
        if self.filter is not None:
            out = self.filter(out, timestamp_ms)
        return out


# ============================================================================ evaluation

#: The settings :func:`evaluate_refinement` compares: (refine_enabled, filter_enabled).
EVAL_MODES: dict[str, tuple[bool, bool]] = {
    "off": (False, False), "refine": (True, False), "one_euro": (False, True), "both": (True, True),
}


def evaluate_refinement(pred_seq: np.ndarray, label_seq: np.ndarray, depth_seq: Sequence[np.ndarray] | np.ndarray,
                        intr: Intrinsics, timestamps_ms: np.ndarray,
                        cfg: TemporalRefinerConfig = TemporalRefinerConfig(),
                        gmm: BoneGMM | None = None) -> dict[str, dict[str, float]]:
    """Joint error and jitter of a labelled sequence with the stages off and on.

    pred_seq, label_seq: (T, 21, 3) mm, camera frame (T >= 3); depth_seq: T depth images (H, W)
    float32 mm; timestamps_ms: (T,) sensor times. ``cfg``'s stage settings are used; its
    enabled flags are overridden per mode of :data:`EVAL_MODES`. Returns {mode: {
    "mean_error_mm", "jitter_mm_per_frame2" (models.metrics.jitter), "accel_error_mm_per_frame2"
    (models.metrics.acceleration_error, against the labels), "ms_per_frame" (the refiner's mean
    time)}}, plus "labels": {"jitter_mm_per_frame2"}. Accelerations are per frame², i.e. they
    assume a steady frame rate.
    """
    from models.metrics import acceleration_error, jitter, joint_errors, summarize

    pred = np.asarray(pred_seq, dtype=np.float64)
    label = np.asarray(label_seq, dtype=np.float64)
    stamps = np.asarray(timestamps_ms, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1:] != (NUM_JOINTS, 3) or pred.shape[0] < 3 or label.shape != pred.shape:
        raise ValueError(f"expected pred_seq and label_seq of the same shape (T >= 3, 21, 3), "
                         f"got {pred.shape} and {label.shape}")
    if len(depth_seq) != len(pred) or stamps.shape != (len(pred),):
        raise ValueError(f"expected {len(pred)} depth images and timestamps, got {len(depth_seq)} and {stamps.shape}")
    gmm = gmm if gmm is not None else load_bone_gmm()
    results: dict[str, dict[str, float]] = {"labels": {"jitter_mm_per_frame2": jitter(label)}}
    for mode, (ref, filt) in EVAL_MODES.items():
        refiner = TemporalRefiner(dataclasses.replace(cfg, refine_enabled=ref, filter_enabled=filt), gmm)
        out = np.empty_like(pred)
        t0 = time.perf_counter()
        for i in range(len(pred)):
            out[i] = refiner(pred[i], depth_seq[i], intr, stamps[i])
        ms = 1e3 * (time.perf_counter() - t0) / len(pred)
        results[mode] = {
            "mean_error_mm": summarize(joint_errors(out, label)).mean_mm,
            "jitter_mm_per_frame2": jitter(out),
            "accel_error_mm_per_frame2": acceleration_error(out, label),
            "ms_per_frame": ms,
        }
    return results


class LabelledSequence(NamedTuple):
    """A rendered sequence: joints (T, 21, 3) float64 mm, depth (T, H, W) float32 mm,
    timestamps_ms (T,) float64, intr the camera."""

    joints: np.ndarray
    depth: np.ndarray
    timestamps_ms: np.ndarray
    intr: Intrinsics


def _tip_moved(joints: np.ndarray, depth_mm: np.ndarray, intr: Intrinsics, tip: int, offset_mm: float,
               sideways: bool) -> np.ndarray | None:
    """The joints with ``tip`` moved ``offset_mm`` past the finger's end along its bone, or sideways
    (perpendicular to the bone and the optical axis) onto a pixel with no depth (None if neither side has one)."""
    bone = joints[tip] - joints[PARENTS[tip]]
    if not sideways:
        moved = joints.copy()
        moved[tip] += offset_mm * bone / np.linalg.norm(bone)
        return moved
    side = np.cross(bone, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    for sign in (1.0, -1.0):
        moved = joints.copy()
        moved[tip] += sign * offset_mm * side
        u, v, _ = project(moved[tip], intr)
        col, row = int(round(u)), int(round(v))
        if not (0 <= col < depth_mm.shape[1] and 0 <= row < depth_mm.shape[0]) or not depth_mm[row, col] > 0:
            return moved
    return None


def refinement_checks(seq: LabelledSequence, gmm: BoneGMM, cfg: RefineConfig = RefineConfig(),
                      offset_mm: float = 15.0, every: int = 10) -> dict[str, float]:
    """What the refinement does to clean labels of a rendered sequence, mm.

    clean_*: how far :class:`HierarchicalRefiner` (temporal term on) moves the true joints, over
    all frames. outward_*, sideways_*: on every ``every``-th frame, each tip in turn is moved
    ``offset_mm`` past its finger's end along its bone, or sideways onto the background, and
    :func:`refine_joints` runs once; the tip's distance to the truth afterwards (from ``offset_mm``),
    and ``*_others_moved_mm`` the mean movement of the other joints.
    """
    refiner = HierarchicalRefiner(cfg, gmm)
    moved = np.array([np.linalg.norm(refiner(j, d, seq.intr, t) - j, axis=-1)
                      for j, d, t in zip(seq.joints, seq.depth, seq.timestamps_ms)])
    out: dict[str, float] = {"clean_mean_moved_mm": float(moved.mean()),
                             "clean_p95_moved_mm": float(np.percentile(moved, 95)),
                             "clean_max_moved_mm": float(moved.max())}
    for kind in ("outward", "sideways"):
        tip_err, others = [], []
        for i in range(0, len(seq.joints), every):
            truth = seq.joints[i]
            for tip in TIPS:
                start = _tip_moved(truth, seq.depth[i], seq.intr, tip, offset_mm, kind == "sideways")
                if start is None:
                    continue
                result = refine_joints(start, seq.depth[i], seq.intr, gmm, cfg).joints
                tip_err.append(np.linalg.norm(result[tip] - truth[tip]))
                others.append(np.linalg.norm(np.delete(result - truth, tip, 0), axis=-1).mean())
        out[f"{kind}_cases"] = float(len(tip_err))
        out[f"{kind}_mean_error_mm"] = float(np.mean(tip_err)) if tip_err else float("nan")
        out[f"{kind}_median_error_mm"] = float(np.median(tip_err)) if tip_err else float("nan")
        out[f"{kind}_others_moved_mm"] = float(np.mean(others)) if others else float("nan")
    return out


def synthetic_theta(frames: int, fps: float = 30.0,
                    poses: Sequence[str] = ("rest", "relaxed", "fist", "point", "victory", "pinch", "spread", "rest"),
                    seconds_per_pose: float = 1.2) -> np.ndarray:
    """(T, 26) θ of a hand that eases through named poses while it moves and turns in front of a
    camera (palm ~45 cm away, ±50 mm sideways, ±40 mm in depth, ±20° turns). Deterministic."""
    from models.poses import named_theta

    t = np.arange(frames) / fps
    keys = np.stack([named_theta(p) for p in poses])
    s = np.minimum(t / seconds_per_pose, len(poses) - 1 - 1e-9)
    k = s.astype(int)
    f = 0.5 - 0.5 * np.cos(np.pi * (s - k))                          # ease in and out
    theta = (1 - f)[:, None] * keys[k] + f[:, None] * keys[np.minimum(k + 1, len(poses) - 1)]
    theta[:, 3] += 50.0 * np.sin(2 * np.pi * 0.31 * t)
    theta[:, 4] += 30.0 * np.sin(2 * np.pi * 0.23 * t + 1.0)
    theta[:, 5] += 40.0 * np.sin(2 * np.pi * 0.17 * t)
    theta[:, 1] += np.radians(20.0) * np.sin(2 * np.pi * 0.2 * t)
    theta[:, 2] += np.radians(15.0) * np.sin(2 * np.pi * 0.13 * t + 0.5)
    return theta


def synthetic_sequence(frames: int = 300, fps: float = 30.0, camera: str = "d435_848x480",
                       beta: Sequence[float] | None = None, timestamp_jitter_ms: float = 3.0,
                       seed: int = 0) -> LabelledSequence:
    """Render :func:`synthetic_theta` with the hand model and ray casting (clean depth, no sensor
    noise) at ``fps`` with sensor timestamps jittered by ±``timestamp_jitter_ms`` (uniform)."""
    import torch

    from calib import get_preset
    from models.hand_layer import HandLayer
    from models.render import raycast

    intr = get_preset(camera).intrinsics
    layer = HandLayer().double().eval()
    theta = torch.as_tensor(synthetic_theta(frames, fps))
    b = None if beta is None else torch.as_tensor(np.asarray(beta, dtype=np.float64)[None].repeat(frames, 0))
    with torch.inference_mode():
        out = layer(theta, beta=b)
    faces = layer.faces.numpy()
    verts = out.vertices.numpy()
    depth = np.stack([raycast([(v, faces)], intr).depth for v in verts])
    rng = np.random.default_rng(seed)
    stamps = 1000.0 * np.arange(frames) / fps + rng.uniform(-timestamp_jitter_ms, timestamp_jitter_ms, frames)
    return LabelledSequence(out.joints.numpy().copy(), depth, stamps, intr)


# ============================================================================ command line

def _override(cfg: Any, assignments: Sequence[str]) -> Any:
    """Apply ``section.field=value`` (or ``field=value``) assignments to a nested config dataclass."""
    for text in assignments:
        key, _, value = text.partition("=")
        parts = key.split(".")
        target = [cfg]
        for p in parts[:-1]:
            target.append(getattr(target[-1], p))
        current = getattr(target[-1], parts[-1])
        new: Any = json.loads(value) if not isinstance(current, str) else value
        new = tuple(type(current[0])(v) for v in new) if isinstance(current, tuple) else type(current)(new)
        node = dataclasses.replace(target[-1], **{parts[-1]: new})
        for parent, name in zip(reversed(target[:-1]), reversed(parts[:-1])):
            node = dataclasses.replace(parent, **{name: node})
        cfg = node
    return cfg


def _cmd_fit(args: argparse.Namespace) -> int:
    joints, names = read_label_shards(args.shards_dir, args.shards)
    folder = Path(args.shards_dir).resolve()
    root = Path(__file__).resolve().parents[1]
    shown = folder.relative_to(root) if folder.is_relative_to(root) else folder
    source = json.dumps({
        "data": f"{shown}: {names[0]}..{names[-1]} ({len(names)} shards, {len(joints)} labelled "
                "hands of the synthetic training set, models/synth.py)",
        "feature": "bone length / hand scale (mean wrist-to-MCP length of index, middle, ring, little)",
        "fit": "EM, 5 Gaussians per bone, std floor 0.003; python -m app.refine --fit-gmm",
    })
    t0 = time.perf_counter()
    gmm = fit_bone_gmm(joints, source=source)
    path = save_bone_gmm(gmm, args.out)
    ratio = bone_lengths(joints) / hand_scale_mm(joints)[:, None]
    print(f"fitted {NUM_BONES} bone mixtures on {len(joints)} hands in {time.perf_counter() - t0:.1f} s -> {path}")
    for b, (p, c) in enumerate(CONNECTIONS):
        print(f"  bone {p:2d}-{c:2d}: ratio mean {ratio[:, b].mean():.3f} std {ratio[:, b].std():.3f}; "
              f"means {np.round(gmm.means[b], 3).tolist()} weights {np.round(gmm.weights[b], 2).tolist()}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _override(TemporalRefinerConfig(), args.set)
    t0 = time.perf_counter()
    seq = synthetic_sequence(args.frames, beta=None if args.beta is None else json.loads(args.beta))
    print(f"rendered {args.frames} frames in {time.perf_counter() - t0:.1f} s")
    gmm = load_bone_gmm()
    checks = refinement_checks(seq, gmm, cfg.refine)
    print("clean labels: " + ", ".join(f"{k} {v:.2f}" for k, v in checks.items()))
    for sigma in args.noise_mm:
        # The same standard-normal draws for every σ (seeded), so σ's rows are comparable.
        pred = seq.joints + sigma * np.random.default_rng(args.seed).standard_normal(seq.joints.shape)
        res = evaluate_refinement(pred, seq.joints, seq.depth, seq.intr, seq.timestamps_ms, cfg, gmm)
        print(f"noise sigma {sigma} mm per coordinate; label jitter {res['labels']['jitter_mm_per_frame2']:.2f} mm/frame^2")
        print("  mode      mean error mm   jitter mm/frame^2   accel error mm/frame^2   ms/frame")
        for mode in EVAL_MODES:
            r = res[mode]
            print(f"  {mode:9s} {r['mean_error_mm']:13.2f} {r['jitter_mm_per_frame2']:19.2f} "
                  f"{r['accel_error_mm_per_frame2']:24.2f} {r['ms_per_frame']:10.3f}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    cfg = _override(TemporalRefinerConfig(), args.set)
    seq = synthetic_sequence(args.frames)
    rng = np.random.default_rng(args.seed)
    pred = seq.joints + rng.normal(0.0, args.noise_mm[-1], seq.joints.shape)
    gmm = load_bone_gmm()
    refiner, smoother = HierarchicalRefiner(cfg.refine, gmm), OneEuroFilter(cfg.one_euro)
    refiner(pred[0], seq.depth[0], seq.intr, seq.timestamps_ms[0])            # warm-up
    times = {"refine": [], "one_euro": []}
    for _ in range(args.repeat):
        refiner.reset()
        smoother.reset()
        for i in range(len(pred)):
            for name, call in (("refine", lambda: refiner(pred[i], seq.depth[i], seq.intr, seq.timestamps_ms[i])),
                               ("one_euro", lambda: smoother(pred[i], seq.timestamps_ms[i]))):
                w, c = time.perf_counter(), time.process_time()
                call()
                times[name].append((time.perf_counter() - w, time.process_time() - c))
    x = np.zeros(1000)
    w = time.perf_counter()
    for _ in range(20000):
        x + 1.0
    print(f"machine load reference: {(time.perf_counter() - w) / 20000 * 1e6:.2f} us per numpy op on 1000 floats")
    for name, t in times.items():
        a = 1e3 * np.array(t)
        print(f"{name:9s} per frame: wall median {np.median(a[:, 0]):.3f} ms (p90 {np.percentile(a[:, 0], 90):.3f}), "
              f"CPU mean {a[:, 1].mean():.3f} ms; {len(a)} frames")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.refine", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--fit-gmm", action="store_true", help="refit the bone-length prior from training labels")
    what.add_argument("--evaluate", action="store_true", help="noise-model evaluation on a rendered sequence")
    what.add_argument("--bench", action="store_true", help="time per frame of each stage on a rendered sequence")
    parser.add_argument("--shards-dir", type=Path, default=DEFAULT_SHARDS, help="folder of shard_*.npz")
    parser.add_argument("--shards", type=int, default=10, help="how many shards to fit on (default 10)")
    parser.add_argument("--out", type=Path, default=ASSET_PATH, help="where to write the prior")
    parser.add_argument("--frames", type=int, default=300, help="frames to render for --evaluate")
    parser.add_argument("--beta", default=None, help="hand shape β as a JSON list of 7 (default neutral)")
    parser.add_argument("--noise-mm", type=float, nargs="+", default=[4.0, 8.0],
                        help="Gaussian noise σ per coordinate added to the true joints, mm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the sequence for --bench")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. refine.depth_weight=3 or one_euro.beta_per_mm=0.02")
    args = parser.parse_args(argv)
    if args.frames < 3:
        parser.error("--frames must be at least 3")
    return _cmd_fit(args) if args.fit_gmm else _cmd_bench(args) if args.bench else _cmd_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
