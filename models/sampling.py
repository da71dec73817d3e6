"""Sampler of the synthetic data generator: hand poses, hand shapes and viewpoints.

Units and frames
----------------
* Angles: radians in every array (θ, wrist bend); degrees only in config fields and
  constants whose name ends in ``_deg`` and in printed reports.
* Lengths: millimetres.
* Hand frame (``models/skeleton.py``): wrist joint at the origin, x radial (thumb side),
  y distal, z palmar; right hand.
* Camera frame (``calib``): x right, y down, z forward. Pixels (u, v) with (0, 0) the
  centre of the top-left pixel; the image spans u in [-0.5, W - 0.5], v in [-0.5, H - 0.5].
* θ (26): θ[0:3] axis-angle camera_from_hand, θ[3:6] the wrist in the camera frame,
  θ[6:26] the 20 articulations in the order of ``ARTICULATIONS``.
* Wrist bend (2): flexion about the hand's x, deviation about its z (``HandLayer``'s
  ``wrist``); it bends the forearm stub only: camera_from_forearm = camera_from_hand ·
  Rx(flexion) · Rz(deviation).

Public API
----------
``sample_hands(rng, n, intr, split, cfg) -> HandBatch`` (or ``HandSampler(cfg).sample``),
``make_subjects(seed, n) -> (alpha, beta)``, ``subject_pool(split)``, ``bank_indices(split, N)``,
``hand_length_mm(layer, alpha, beta)``, the stages ``sample_articulations`` /
``sample_synergy`` / ``solve_contacts`` / ``place_hands``, the configs ``SamplerConfig``
(``PoseConfig``, ``ShapeConfig``, ``ViewConfig``, ``SplitConfig``) and the coverage report
``python -m models.sampling --coverage [--n 100000] [--out docs/pose_coverage.png]``.

What one sample is
------------------
1. A *subject* (a hand shape α, β) from the split's own pool (:func:`subject_pool`); the
   train (4000), val (300) and test (300) pools have their own seeds and disjoint ids.
2. Articulations from a mixture (:class:`PoseConfig`; weights 0.40 / 0.50 / 0.10, label
   ``HandBatch.pose_source``): (a) *bank*: a pose of the Intel pose bank
   (``models/posebank.py``) from the split's own indices (:func:`bank_indices`: blocks of 48
   consecutive poses, 80/10/10 %, guard poses between train and held-out blocks) plus
   N(0, 4°) per angle, clipped to the limits (``HandBatch.posebank_index``, -1 otherwise);
   (b) *synergy*: :func:`sample_synergy` below (``HandBatch.family``); (c) *uniform*:
   independent U(lo, hi) per angle.
3. A view (third-person 65 %, egocentric 35 %), an orientation, a wrist bend and a wrist
   position that put the hand in front of the camera and inside the image (:func:`place_hands`).

Synergy model (:func:`sample_synergy`)
--------------------------------------
A hand-level grasp latent u ~ U(0, 1) and correlated per-finger deviations give each of
index..little a curl c_f = lo_f + (hi_f − lo_f) · clip(u + ε_f, 0, 1), ε ~ N(0, 0.15² C),
where C correlates neighbouring fingers (index-middle 0.5, middle-ring 0.7, ring-little
0.8, ...): the ring finger moves with its neighbours and the index most independently
(Häger-Ross & Schieber, "Quantifying the independence of human finger movements",
J. Neurosci. 20(22), 2000). The family sets [lo_f, hi_f]. From the curl:

    MCP flex = 90° · c (1 + 0.3 s) − h (1 − c)²     (s: table-top vs. hook style, h: hyperextension)
    PIP flex = 105° · c (1 − 0.3 s)
    DIP flex = 2/3 · PIP flex                        (+ N(0, 3°) jitter on every angle)

The DIP-PIP coupling θ_DIP = 2/3 θ_PIP is the classic intra-finger constraint (Rijpkema &
Girard, "Computer animation of knowledge-based human grasping", SIGGRAPH 1991; also Lee &
Kunii 1995 and Lin, Wu & Huang, "Modeling the constraints of human hand motion", IEEE HUMO
2000). Abduction follows extension: abd_f = T_f + w_f (S_f − T_f) with fingers together
T = (−5, 0, 5, 10)° and spread S = (20, 4, −12, −25)° (index..little; + towards the thumb),
w_f = spread latent · (1 − c_f)^1.5: spread when open, together when closed.

The thumb takes one of five states: adducted, extended (radial abduction), relaxed,
opposed, or *contact*. A contact is solved with the layer's forward kinematics for the
subject's own shape (:func:`solve_contacts`: damped Gauss-Newton on the thumb, and for the
pad contact the index MCP/PIP with the DIP coupled, priors towards the drawn angles,
projected onto the limits): the thumb tip joint goes to the index pad, 5-11 mm from the
index tip joint along its pad normal (pinch, OK sign; the tip joints sit 3 mm inside the
fingertips), or 14 mm (× hand size) above the PIP knuckles of curled fingers: index and
middle (fist), middle (pointing), ring (victory). About 5-10 % of drawn finger poses put
the target out of the thumb's reach; those samples are replaced by the first of 4 fresh
draws of the same family that reaches it. Families (weights in :class:`PoseConfig`): flat
hand, spread hand, relaxed curl (cascade index → little), closed fist (25 % with the
thumb out: thumbs-up, hitch-hiker), pointing, victory, pinch, OK sign, cylinder grasp, and
a free continuum (u over [0, 1], any thumb state). Nothing checks collisions: fingers may overlap by a few mm.

Shapes (:func:`make_subjects`, :class:`ShapeConfig`)
----------------------------------------------------
Hand length L = distance from the wrist joint to the middle fingertip's surface (its apex
vertex) in the rest pose, measured with the layer (:func:`hand_length_mm`); the neutral hand
(β = 0, α = 1) measures 187 mm. L is drawn from a mixture: 40 % uniform on [118, 232] mm
(flat coverage of the whole range), 40 % adults N(187, 12) mm, 20 % children N(135, 10) mm,
clipped to [118, 232]. Then α ~ N(1, 0.05) clipped to [0.85, 1.15], the six β other than
size ~ N(0, 0.5) clipped to ±1.5, and β_size is solved (secant steps on the layer) so that
the hand measures L. Ranges used:
  * adults: ANSUR II (Gordon et al., "2012 Anthropometric Survey of U.S. Army Personnel",
    NATICK/TR-15/007, 2014): mean hand length 193.8 mm (men) and 181.6 mm (women); the
    men's p99 is about 215 mm. The upper end, 230 mm, is the product brief's large adult;
  * children: hand length grows from about 110 mm at 3-4 years to about 130 mm at 6 years
    (sizes of the Chinese minors' hand sizing standard GB/T 26159-2010) and to 140-160 mm
    at 10-12 years (Snyder et al., "Anthropometry of infants, children and youths to age 18
    for product safety design", UM-HSRI-77-17, 1977; Ran et al., "Anthropometric
    measurement of the hands of Chinese children", 2009); the brief's child is 120 mm.
Sensor depth-scale and intrinsics errors are applied elsewhere (``models.synth``).

Views (:func:`place_hands`, :class:`ViewConfig`)
------------------------------------------------
Orientation first. The forearm direction d (camera frame, wrist → elbow) is drawn, then the
roll ρ of the forearm about itself (ρ = 0: back of the hand towards the camera, 180°: palm
towards it, ±90°: sideways), then the wrist bend; camera_from_hand = F · (Rx Rz)ᵀ where F
is the forearm frame (:func:`forearm_frame`).
  * Third-person: d points away from the camera by an elevation in [−10°, 75°] (never at
    the camera); its image direction is "down" ± N(0, 45°) for 60 % and any direction for
    40 % (fingers up, sideways, down); ρ uniform (palm, back or side towards the camera).
  * Egocentric (head-mounted, looking down at the hand from behind): d points towards the
    camera by 5-60° and down in the image (N(15°, 30°) from image-down, clipped to ±75°:
    a right arm comes from the bottom right); ρ ~ N(0, 35°) for 80 % (back of the hand
    towards the camera) and N(180°, 35°) for 20 % (palm); fingers point up and away.
  * Wrist bend: flexion and deviation 30 % uniform on ±(60°, 25°), 70 % N(0, (25°, 10°))
    clipped to that range.
Then the palm centre P (mean of joints 0, 5, 9, 13, 17) is placed. Its depth Z is drawn
(third-person: 60 % U(300, 700) + 40 % U(200, 1000) mm, i.e. 4x denser in 300-700;
egocentric: 60 % U(250, 550) + 40 % U(200, 700) mm) and raised to the least depth at which
all 21 joints fit inside the image shrunk by ``margin_frac`` (2 %) and lie ``near_mm``
(100 mm) in front of the camera (closed form: for a fixed depth the image box is linear in
the palm's x and y); P's x and y are then drawn uniformly in the range that keeps every
joint inside, and for egocentric views also brings the forearm's far end (220 mm × size
from the wrist) within 10 % of the bottom (else the left/right) image border or beyond it,
so the arm enters from the border. The wrist translation is P − R p_hand. Every placement
is checked with ``calib.project`` (lens distortion included); failures and depths pushed
past the range are redrawn (up to ``max_rounds``; in practice none remain).

Speed (2-core laptop CPU, one torch thread, batches of 10 000): about 15-19 k samples/s,
most of it in the contact solve; about 4-5 k/s in batches of 256 (per-call overhead).
Everything is deterministic given the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from calib import Intrinsics, backproject, get_preset, project
from models import ik
from models.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from models.hand_layer import (
    HandLayer, HandModelConstants, articulation_rotations, forward_kinematics, scaled_rest, shaped_rest,
)
from models.handmesh import ASSET_PATH
from models.joints import PALM_CENTRE_JOINTS, Finger, Joint
from models.posebank import load_posebank, within_limits_float32
from models.skeleton import (
    ALPHA_DIM, ARTICULATION, ARTICULATIONS, BETA_DIM, BETA_NAMES, NUM_ARTICULATIONS, theta_limits,
)
from models.threads import torch_threads

__all__ = [
    "SPLITS", "PALM_CENTRE_JOINTS", "PoseSource", "View", "Family", "ThumbState", "Contact",
    "PoseConfig", "ShapeConfig", "ViewConfig", "SplitConfig", "SamplerConfig",
    "HandBatch", "Articulations", "SubjectPool", "Placement", "FamilySpec", "FAMILIES",
    "sample_uniform", "sample_bank", "solve_contacts", "sample_synergy", "bank_indices", "sample_articulations",
    "rest_points", "hand_length_mm", "make_subjects", "subject_pool",
    "forearm_frame", "image_box", "sample_orientations", "forearm_enters_from_below", "forearm_at_border",
    "place_hands", "HandSampler", "HandBodies", "hand_sampler", "sample_hands",
    "DofCoverage", "Coverage", "coverage", "format_coverage", "draw_coverage", "camera_joints", "main",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Joints whose mean is the palm centre (wrist and the four finger MCPs).
#: Mesh part of the forearm stub in ``hand_model.npz``.
FOREARM_PART = 6
MIDDLE_PART = 1 + Finger.MIDDLE
SIZE_BETA = BETA_NAMES.index("size")


class PoseSource(IntEnum):
    """Which mixture component a sample's articulations came from."""

    BANK = 0
    SYNERGY = 1
    UNIFORM = 2


class View(IntEnum):
    THIRD_PERSON = 0
    EGOCENTRIC = 1


class Family(IntEnum):
    """Synergy pose families (``HandBatch.family``; -1 for bank and uniform samples)."""

    FLAT = 0
    SPREAD = 1
    RELAXED = 2
    FIST = 3
    POINT = 4
    VICTORY = 5
    PINCH = 6
    OK = 7
    CYLINDER = 8
    FREE = 9


class ThumbState(IntEnum):
    ADDUCTED = 0
    EXTENDED = 1
    RELAXED = 2
    OPPOSED = 3
    CONTACT = 4


class Contact(IntEnum):
    """Where a thumb in the CONTACT state puts its tip."""

    NONE = 0
    INDEX_PAD = 1     # pinch, OK sign
    FIST_WRAP = 2     # over the middle phalanges of index and middle
    TUCK_MIDDLE = 3   # holding the middle finger down (pointing)
    TUCK_RING = 4     # holding the ring finger down (victory)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def _check_weights(name: str, weights: Sequence[float], count: int) -> None:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (count,):
        raise ValueError(f"{name}: expected {count} weights, got {w.shape[0] if w.ndim == 1 else w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{name}: expected non-negative weights with a positive sum, got {tuple(weights)}")


def _check_range(name: str, value: tuple[float, float], lo: float = -math.inf, hi: float = math.inf) -> None:
    a, b = value
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}: expected {lo} <= lo <= hi <= {hi}, got {value}")


@dataclass(frozen=True)
class PoseConfig:
    """Articulation mixture. Weights are normalised; angles in degrees."""

    bank_weight: float = 0.40
    synergy_weight: float = 0.50
    uniform_weight: float = 0.10
    bank_noise_deg: float = 4.0          # σ of the Gaussian added to pose-bank angles
    #: Synergy families in :class:`Family` order: flat, spread, relaxed, fist, point,
    #: victory, pinch, OK, cylinder, free.
    family_weights: tuple[float, ...] = (0.08, 0.08, 0.13, 0.10, 0.08, 0.06, 0.11, 0.08, 0.10, 0.18)
    jitter_deg: float = 3.0              # σ of independent noise on every synergy angle
    dip_pip_ratio: float = 2.0 / 3.0     # θ_DIP = ratio · θ_PIP (Rijpkema & Girard 1991)
    pad_gap_mm: tuple[float, float] = (5.0, 11.0)   # thumb tip to index tip joint, pinch and OK
    contact_iterations: int = 6
    contact_tolerance_mm: float = 3.0    # contacts worse than this are redrawn
    contact_candidates: int = 4          # fresh draws per missed contact

    def __post_init__(self) -> None:
        _check_weights("PoseConfig mixture (bank, synergy, uniform)",
                       (self.bank_weight, self.synergy_weight, self.uniform_weight), 3)
        _check_weights("PoseConfig.family_weights", self.family_weights, len(Family))
        _check_range("PoseConfig.pad_gap_mm", self.pad_gap_mm, 0.0)
        if not (0.0 <= self.bank_noise_deg and 0.0 <= self.jitter_deg and self.contact_iterations >= 1
                and self.contact_tolerance_mm > 0.0 and self.contact_candidates >= 1):
            raise ValueError(f"PoseConfig: expected non-negative noise, contact_iterations >= 1, a positive "
                             f"tolerance and contact_candidates >= 1, got {self.bank_noise_deg}, {self.jitter_deg}, "
                             f"{self.contact_iterations}, {self.contact_tolerance_mm}, {self.contact_candidates}")

    @property
    def mixture(self) -> np.ndarray:
        """(3,) probabilities of bank, synergy, uniform."""
        w = np.array([self.bank_weight, self.synergy_weight, self.uniform_weight])
        return w / w.sum()


@dataclass(frozen=True)
class ShapeConfig:
    """Hand shapes. Lengths in mm (hand length as :func:`hand_length_mm` measures it)."""

    length_clip_mm: tuple[float, float] = (118.0, 232.0)   # also the uniform component's range
    uniform_weight: float = 0.4
    adult_weight: float = 0.4
    child_weight: float = 0.2
    adult_mm: tuple[float, float] = (187.0, 12.0)           # mean, σ
    child_mm: tuple[float, float] = (135.0, 10.0)
    beta_sigma: float = 0.5                                 # every β but size
    beta_clip: float = 1.5
    alpha_sigma: float = 0.05
    alpha_clip: tuple[float, float] = (0.85, 1.15)
    size_clip: tuple[float, float] = (-2.5, 2.5)            # β_size after solving for the length

    def __post_init__(self) -> None:
        _check_weights("ShapeConfig (uniform, adult, child)", (self.uniform_weight, self.adult_weight,
                                                               self.child_weight), 3)
        _check_range("ShapeConfig.length_clip_mm", self.length_clip_mm, 50.0, 400.0)
        _check_range("ShapeConfig.alpha_clip", self.alpha_clip, 0.5, 2.0)
        _check_range("ShapeConfig.size_clip", self.size_clip, -3.9, 4.0)
        if self.beta_sigma < 0 or self.beta_clip < 0 or self.alpha_sigma < 0:
            raise ValueError(f"ShapeConfig: expected non-negative spreads, got beta_sigma {self.beta_sigma}, "
                             f"beta_clip {self.beta_clip}, alpha_sigma {self.alpha_sigma}")


@dataclass(frozen=True)
class ViewConfig:
    """Viewpoints. Depths in mm (palm centre z), angles in degrees."""

    egocentric_fraction: float = 0.35
    third_depth_mm: tuple[float, float] = (200.0, 1000.0)
    third_core_mm: tuple[float, float] = (300.0, 700.0)
    third_core_weight: float = 0.6
    ego_depth_mm: tuple[float, float] = (200.0, 700.0)
    ego_core_mm: tuple[float, float] = (250.0, 550.0)
    ego_core_weight: float = 0.6
    margin_frac: float = 0.02            # image border kept free of joints, fraction of W and H
    near_mm: float = 100.0               # every joint at least this far in front of the camera
    # third-person forearm: elevation away from the camera, image direction around "down"
    third_elevation_deg: tuple[float, float] = (-10.0, 75.0)
    third_down_weight: float = 0.6
    third_down_sigma_deg: float = 45.0
    # egocentric forearm: elevation towards the camera, image direction around "down"
    ego_elevation_deg: tuple[float, float] = (5.0, 60.0)
    ego_direction_deg: tuple[float, float] = (15.0, 30.0)    # mean (+: to the right), σ
    ego_direction_clip_deg: float = 75.0
    ego_back_fraction: float = 0.8
    ego_roll_sigma_deg: float = 35.0
    ego_border_frac: float = 0.1         # forearm's far end within this of the bottom/side border, or beyond
    wrist_limits_deg: tuple[float, float] = (60.0, 25.0)     # |flexion|, |deviation|
    wrist_sigma_deg: tuple[float, float] = (25.0, 10.0)
    wrist_uniform_weight: float = 0.3
    max_rounds: int = 8

    def __post_init__(self) -> None:
        for name in ("egocentric_fraction", "third_core_weight", "ego_core_weight", "third_down_weight",
                     "ego_back_fraction", "wrist_uniform_weight"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"ViewConfig.{name}: expected a fraction in [0, 1], got {v}")
        _check_range("ViewConfig.third_depth_mm", self.third_depth_mm, 1.0)
        _check_range("ViewConfig.ego_depth_mm", self.ego_depth_mm, 1.0)
        _check_range("ViewConfig.third_core_mm", self.third_core_mm, *self.third_depth_mm)
        _check_range("ViewConfig.ego_core_mm", self.ego_core_mm, *self.ego_depth_mm)
        _check_range("ViewConfig.third_elevation_deg", self.third_elevation_deg, -30.0, 85.0)
        _check_range("ViewConfig.ego_elevation_deg", self.ego_elevation_deg, -30.0, 85.0)
        if not 0.0 <= self.ego_border_frac < 0.5:
            raise ValueError(f"ViewConfig.ego_border_frac: expected a fraction in [0, 0.5), got {self.ego_border_frac}")
        if not 0.0 <= self.margin_frac < 0.25 or self.near_mm <= 0 or self.max_rounds < 1:
            raise ValueError(f"ViewConfig: expected margin_frac in [0, 0.25), near_mm > 0, max_rounds >= 1, got "
                             f"{self.margin_frac}, {self.near_mm}, {self.max_rounds}")


@dataclass(frozen=True)
class SplitConfig:
    """Disjoint train/val/test pools of pose-bank poses and of subjects."""

    seed: int = 0
    bank_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    bank_block: int = 48      # consecutive bank poses (one recording) go to one split together
    bank_guard: int = 4       # poses at both ends of val/test blocks belong to no split
    subjects: tuple[int, int, int] = (4000, 300, 300)

    def __post_init__(self) -> None:
        _check_weights("SplitConfig.bank_fractions", self.bank_fractions, 3)
        if self.bank_block < 1 or not 0 <= 2 * self.bank_guard < self.bank_block:
            raise ValueError(f"SplitConfig: expected bank_block >= 1 and 0 <= 2 * bank_guard < bank_block, got "
                             f"{self.bank_block}, {self.bank_guard}")
        if len(self.subjects) != 3 or min(self.subjects) < 1:
            raise ValueError(f"SplitConfig.subjects: expected three positive pool sizes, got {self.subjects}")


@dataclass(frozen=True)
class SamplerConfig:
    """Everything :func:`sample_hands` draws from; hashable (samplers are cached per config)."""

    pose: PoseConfig = field(default_factory=PoseConfig)
    shape: ShapeConfig = field(default_factory=ShapeConfig)
    view: ViewConfig = field(default_factory=ViewConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------

class HandBatch(NamedTuple):
    """One batch of sampled hands (n samples).

    theta:       (n, 26) float32, θ in the camera frame of the intrinsics used; θ[6:26]
                 within ``theta_limits`` exactly (float64 comparison)
    alpha:       (n, 6) float32 bone scales
    beta:        (n, 7) float32 shape
    wrist:       (n, 2) float32 radians, forearm bend (flexion about hand x, deviation about z)
    view:        (n,) int8 :class:`View`
    pose_source: (n,) int8 :class:`PoseSource`
    subject:     (n,) int32 subject id (disjoint between splits)
    posebank_index: (n,) int32 pose-bank index, -1 when not from the bank
    family:      (n,) int8 :class:`Family`, -1 when not from the synergy model
    """

    theta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    wrist: np.ndarray
    view: np.ndarray
    pose_source: np.ndarray
    subject: np.ndarray
    posebank_index: np.ndarray
    family: np.ndarray


class Articulations(NamedTuple):
    """angles (n, 20) float64 rad within the limits; source int8; posebank_index int32; family int8."""

    angles: np.ndarray
    source: np.ndarray
    posebank_index: np.ndarray
    family: np.ndarray


class HandBodies(NamedTuple):
    """Hands before placement (:meth:`HandSampler.bodies`), n of them; ``take`` selects some.

    joints, palm and forearm_end are in the hand frame, mm: the posed joints (n, 21, 3), the
    palm centre and the far end of the forearm at rest (n, 3), float64.
    """

    alpha: np.ndarray
    beta: np.ndarray
    articulations: Articulations
    view: np.ndarray
    subject: np.ndarray
    joints: np.ndarray
    palm: np.ndarray
    forearm_end: np.ndarray

    def take(self, index: slice | np.ndarray) -> "HandBodies":
        arts = Articulations(*(np.asarray(f)[index] for f in self.articulations))
        return HandBodies(self.alpha[index], self.beta[index], arts, self.view[index], self.subject[index],
                          self.joints[index], self.palm[index], self.forearm_end[index])


class SubjectPool(NamedTuple):
    """A split's hands. ids (m,) int32; alpha (m, 6), beta (m, 7) float64; hand_length_mm (m,);
    palm_centre_mm (m, 3) and forearm_end_mm (m, 3): rest-pose points in the hand frame."""

    ids: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    hand_length_mm: np.ndarray
    palm_centre_mm: np.ndarray
    forearm_end_mm: np.ndarray


class Placement(NamedTuple):
    """rotation (n, 3, 3) camera_from_hand; translation (n, 3) mm wrist; wrist (n, 2) rad bend;
    palm_centre (n, 3) mm camera frame; in_view (n,) bool (joints inside, forearm rule held)."""

    rotation: np.ndarray
    translation: np.ndarray
    wrist: np.ndarray
    palm_centre: np.ndarray
    in_view: np.ndarray


# ---------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------

def _limits() -> tuple[np.ndarray, np.ndarray]:
    lo, hi = theta_limits()
    return lo[ARTICULATION], hi[ARTICULATION]


def _deg(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.radians(np.asarray(values, dtype=np.float64))


_THUMB = np.arange(4)
_MCP = np.array([4, 8, 12, 16])
_ABD = _MCP + 1
_PIP = _MCP + 2
_DIP = _MCP + 3

#: Thumb states: mean and σ (degrees) of CMC flexion, CMC abduction, MCP flexion, IP flexion
#: (CONTACT starts from :data:`CONTACT_START_DEG` instead). Checked on rendered samples:
#: adducted lies along the index side of the palm, extended points radially (an "L"),
#: opposed faces the finger pads.
THUMB_STATE_DEG: dict[ThumbState, tuple[tuple[float, ...], tuple[float, ...]]] = {
    ThumbState.ADDUCTED: ((5.0, -15.0, 5.0, 5.0), (6.0, 5.0, 8.0, 8.0)),
    ThumbState.EXTENDED: ((-18.0, -8.0, -5.0, 0.0), (8.0, 10.0, 8.0, 10.0)),
    ThumbState.RELAXED: ((10.0, 5.0, 15.0, 15.0), (8.0, 8.0, 10.0, 10.0)),
    ThumbState.OPPOSED: ((22.0, 30.0, 15.0, 20.0), (12.0, 8.0, 10.0, 12.0)),
}
#: Start (and prior) of the thumb for each contact, degrees: mean and σ; the medians of
#: solved contacts from a generic start, so the solve mostly refines.
CONTACT_START_DEG: dict[Contact, tuple[tuple[float, ...], tuple[float, ...]]] = {
    Contact.INDEX_PAD: ((-8.0, 26.0, 44.0, 45.0), (8.0, 5.0, 8.0, 8.0)),
    Contact.FIST_WRAP: ((-4.0, 27.0, 49.0, 49.0), (6.0, 5.0, 6.0, 6.0)),
    Contact.TUCK_MIDDLE: ((5.0, 29.0, 44.0, 43.0), (6.0, 5.0, 6.0, 6.0)),
    Contact.TUCK_RING: ((15.0, 35.0, 44.0, 43.0), (6.0, 5.0, 6.0, 6.0)),
}

_TOGETHER_DEG = np.array([-5.0, 0.0, 5.0, 10.0])   # index..little MCP abduction, fingers together
_SPREAD_DEG = np.array([20.0, 4.0, -12.0, -25.0])  # fully spread (cf. NAMED_POSES_DEG["spread"])
_MCP_MAX_DEG = 90.0
_PIP_MAX_DEG = 105.0
_STYLE_GAIN = 0.3
_CURL_SIGMA = 0.15
#: Correlation of the per-finger curl deviations, index..little (Häger-Ross & Schieber 2000:
#: the ring finger is the least independent, the index the most).
FINGER_CORRELATION = np.array([
    [1.0, 0.5, 0.3, 0.2],
    [0.5, 1.0, 0.7, 0.5],
    [0.3, 0.7, 1.0, 0.8],
    [0.2, 0.5, 0.8, 1.0],
])


@dataclass(frozen=True)
class FamilySpec:
    """A synergy family: per-finger curl ranges (index..little), spread latent range, MCP
    hyperextension of open fingers (degrees), thumb-state probabilities (ThumbState order)
    and where a CONTACT thumb goes."""

    curl_lo: tuple[float, float, float, float]
    curl_hi: tuple[float, float, float, float]
    spread: tuple[float, float]
    hyperextension_deg: tuple[float, float]
    thumb: tuple[float, float, float, float, float]
    contact: Contact = Contact.NONE


FAMILIES: dict[Family, FamilySpec] = {
    Family.FLAT: FamilySpec((0.0,) * 4, (0.12,) * 4, (0.0, 0.35), (0.0, 20.0), (0.6, 0.25, 0.15, 0.0, 0.0)),
    Family.SPREAD: FamilySpec((0.0,) * 4, (0.15,) * 4, (0.7, 1.0), (0.0, 25.0), (0.0, 0.8, 0.2, 0.0, 0.0)),
    Family.RELAXED: FamilySpec((0.1, 0.15, 0.2, 0.25), (0.4, 0.45, 0.5, 0.55), (0.1, 0.5), (0.0, 0.0),
                               (0.0, 0.0, 0.8, 0.2, 0.0)),
    Family.FIST: FamilySpec((0.85,) * 4, (1.0,) * 4, (0.0, 0.2), (0.0, 0.0), (0.15, 0.1, 0.0, 0.0, 0.75),
                            Contact.FIST_WRAP),
    Family.POINT: FamilySpec((0.0, 0.8, 0.8, 0.8), (0.15, 1.0, 1.0, 1.0), (0.0, 0.3), (0.0, 10.0),
                             (0.0, 0.35, 0.0, 0.0, 0.65), Contact.TUCK_MIDDLE),
    Family.VICTORY: FamilySpec((0.0, 0.0, 0.8, 0.8), (0.15, 0.15, 1.0, 1.0), (0.6, 1.0), (0.0, 10.0),
                               (0.0, 0.0, 0.15, 0.0, 0.85), Contact.TUCK_RING),
    Family.PINCH: FamilySpec((0.3, 0.1, 0.1, 0.1), (0.65, 0.9, 0.9, 0.9), (0.0, 0.4), (0.0, 0.0),
                             (0.0, 0.0, 0.0, 0.0, 1.0), Contact.INDEX_PAD),
    Family.OK: FamilySpec((0.45, 0.0, 0.0, 0.0), (0.8, 0.25, 0.25, 0.25), (0.4, 0.9), (0.0, 10.0),
                          (0.0, 0.0, 0.0, 0.0, 1.0), Contact.INDEX_PAD),
    Family.CYLINDER: FamilySpec((0.45,) * 4, (0.8,) * 4, (0.0, 0.25), (0.0, 0.0), (0.0, 0.0, 0.0, 1.0, 0.0)),
    Family.FREE: FamilySpec((0.0,) * 4, (1.0,) * 4, (0.0, 1.0), (0.0, 15.0), (0.25, 0.25, 0.25, 0.25, 0.0)),
}


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of probs (n, k) (rows need not be normalised) -> (n,) int."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(1), probs.shape[1] - 1)


def _couple_dips(angles: np.ndarray, ratio: float, noise: np.ndarray | None = None) -> np.ndarray:
    out = angles.copy()
    out[:, _DIP] = ratio * out[:, _PIP] + (0.0 if noise is None else noise)
    return out


def sample_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 20) float64 rad, independent U(lo, hi) per articulation."""
    lo, hi = _limits()
    return lo + (hi - lo) * rng.random((n, NUM_ARTICULATIONS))


def sample_bank(rng: np.random.Generator, n: int, bank_angles: np.ndarray, indices: np.ndarray,
                noise_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Pose-bank poses plus N(0, noise) per angle, clipped to the limits.

    bank_angles: (N_bank, 20) rad; indices: (k,) the allowed bank indices (k >= 1).
    Returns angles (n, 20) float64 rad and the bank index of each sample (n,) int32.
    """
    if indices.size == 0:
        raise ValueError("sample_bank: expected at least one allowed pose-bank index, got none")
    pick = indices[rng.integers(0, indices.size, n)].astype(np.int32)
    lo, hi = _limits()
    noise = math.radians(noise_deg) * rng.standard_normal((n, NUM_ARTICULATIONS))
    angles = bank_angles[pick].astype(np.float64) + noise
    return np.clip(angles, lo, hi), pick


class _Synergy(NamedTuple):
    angles: np.ndarray    # (n, 20) rad, within the limits
    family: np.ndarray    # (n,) int8
    contact: np.ndarray   # (n,) int8 Contact of the samples whose thumb must be solved, else NONE
    pad_gap: np.ndarray   # (n,) mm


def _synergy_draw(rng: np.random.Generator, fam: np.ndarray, cfg: PoseConfig,
                  force_contact: bool = False) -> _Synergy:
    """The synergy model for families ``fam`` (n,), before contacts are solved (module
    docstring); ``force_contact`` puts every thumb of a family with a contact in CONTACT."""
    n = fam.shape[0]
    specs = [FAMILIES[f] for f in Family]
    curl_lo = np.array([s.curl_lo for s in specs])[fam]
    curl_hi = np.array([s.curl_hi for s in specs])[fam]
    spread = np.array([s.spread for s in specs])[fam]
    hyper = np.array([s.hyperextension_deg for s in specs])[fam]
    thumb_p = np.array([s.thumb for s in specs])[fam]
    contact_kind = np.array([s.contact for s in specs])[fam]

    u = rng.random(n)
    eps = _CURL_SIGMA * rng.standard_normal((n, 4)) @ np.linalg.cholesky(FINGER_CORRELATION).T
    curl = curl_lo + (curl_hi - curl_lo) * np.clip(u[:, None] + eps, 0.0, 1.0)
    style = np.clip(0.5 * rng.standard_normal(n), -1.0, 1.0)[:, None] + 0.15 * rng.standard_normal((n, 4))
    h = hyper[:, 0] + (hyper[:, 1] - hyper[:, 0]) * rng.random(n)
    deg = np.zeros((n, NUM_ARTICULATIONS))
    deg[:, _MCP] = _MCP_MAX_DEG * curl * (1.0 + _STYLE_GAIN * style) - h[:, None] * (1.0 - curl) ** 2
    deg[:, _PIP] = _PIP_MAX_DEG * curl * (1.0 - _STYLE_GAIN * style)
    s = spread[:, 0] + (spread[:, 1] - spread[:, 0]) * rng.random(n)
    w = s[:, None] * (1.0 - curl) ** 1.5
    deg[:, _ABD] = _TOGETHER_DEG + w * (_SPREAD_DEG - _TOGETHER_DEG)

    state = _categorical(rng, thumb_p)
    if force_contact:
        state = np.where(contact_kind != Contact.NONE, ThumbState.CONTACT, state)
    contact = np.where(state == ThumbState.CONTACT, contact_kind, Contact.NONE).astype(np.int8)
    rows = [THUMB_STATE_DEG.get(t, ((0.0,) * 4, (0.0,) * 4)) for t in ThumbState]
    means = np.array([r[0] for r in rows])[state]
    sigmas = np.array([r[1] for r in rows])[state]
    for c, (mean, sigma) in CONTACT_START_DEG.items():
        sel = contact == c
        means[sel], sigmas[sel] = mean, sigma
    deg[:, _THUMB] = means + sigmas * rng.standard_normal((n, 4))

    jitter = cfg.jitter_deg * rng.standard_normal((n, NUM_ARTICULATIONS))
    angles = np.radians(deg + jitter)
    angles = _couple_dips(angles, cfg.dip_pip_ratio, math.radians(cfg.jitter_deg) * rng.standard_normal((n, 4)))
    lo, hi = _limits()
    angles = np.clip(angles, lo, hi)
    gap = cfg.pad_gap_mm[0] + (cfg.pad_gap_mm[1] - cfg.pad_gap_mm[0]) * rng.random(n)
    return _Synergy(angles, fam.astype(np.int8), contact, gap)


# ---------------------------------------------------------------------------------------
# Thumb contacts (pure torch on the layer's stages)
# ---------------------------------------------------------------------------------------

#: Fingers whose PIP knuckles a dorsal contact targets (the thumb lies across them).
_TUCK_FINGERS: dict[Contact, tuple[int, ...]] = {
    Contact.FIST_WRAP: (Finger.INDEX, Finger.MIDDLE),
    Contact.TUCK_MIDDLE: (Finger.MIDDLE,),
    Contact.TUCK_RING: (Finger.RING,),
}
#: Thumb tip joint above a curled finger's PIP knuckle, neutral hand (scaled with the hand).
#: Surfaces just touching would need about 17 mm; 14 mm (a few mm of soft-tissue overlap)
#: keeps the target within the thumb's limits for about 95 % of the drawn finger poses
#: (at the middle of the middle phalanx 18 mm failed for 10-45 %).
_DORSAL_OFFSET_MM = 14.0
_NEUTRAL_LENGTH_MM = 187.0
_THUMB_PRIOR_DEG = 30.0
_INDEX_PRIOR_DEG = 12.0


def _posed_frames(layer: HandLayer, angles: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """hand_from_joint frames (B, 21, 4, 4) of the posed hand: the layer's stages without skinning."""
    shaped, _ = shaped_rest(beta, layer.rest_joints, layer.joint_morphs, layer.rest_offsets[:0],
                            layer.offset_morphs[:, :0])
    rest = scaled_rest(alpha, shaped, layer.alpha_of_joint)
    theta = torch.cat((angles.new_zeros(angles.shape[0], 6), angles), 1)
    arts = articulation_rotations(theta, layer.first_index, layer.first_axis, layer.second_index, layer.second_axis)
    return forward_kinematics(theta, rest, layer.rest_rotations, arts)[0]


def _contact_target(frames: torch.Tensor, kind: torch.Tensor, gap: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """Target point (B, 3), hand frame, mm, of each thumb contact ``kind`` (B,).

    INDEX_PAD: the index tip joint moved ``gap`` (B,) mm along its distal phalanx's palmar
    axis (local z of the DIP frame). Dorsal contacts: the mean of the PIP knuckles of
    :data:`_TUCK_FINGERS` moved ``_DORSAL_OFFSET_MM · scale`` (B,) along the middle
    phalanx's dorsal axis (−z of the PIP frame).
    """
    joints = frames[..., :3, 3]
    pad = joints[:, Joint.INDEX_TIP] + gap[:, None] * frames[:, Joint.INDEX_DIP, :3, 2]
    target = torch.where((kind == Contact.INDEX_PAD)[:, None], pad, torch.zeros_like(pad))
    for c, fingers in _TUCK_FINGERS.items():
        point = torch.zeros_like(pad)
        for f in fingers:
            pip = 4 * f + 2
            point = point + (joints[:, pip] - _DORSAL_OFFSET_MM * scale[:, None] * frames[:, pip, :3, 2]) / len(fingers)
        target = torch.where((kind == c)[:, None], point, target)
    return target


#: Free parameters of the contact solve (indices into the 20 articulations) and the joint
#: each rotates: thumb CMC abd/flex, MCP, IP; index MCP abd/flex, PIP (its DIP follows).
_CONTACT_DOFS = (1, 0, 2, 3, 5, 4, 6)
_CONTACT_JOINTS = (Joint.THUMB_CMC, Joint.THUMB_CMC, Joint.THUMB_MCP, Joint.THUMB_IP,
                   Joint.INDEX_MCP, Joint.INDEX_MCP, Joint.INDEX_PIP)
_CONTACT_ABD = (True, False, False, False, True, False, False)


def _rotation_axes(frames: torch.Tensor, rest_rotations: torch.Tensor) -> torch.Tensor:
    """World (hand-frame) axes (B, 7, 3) of the contact DoFs, from posed frames (B, 21, 4, 4).

    Flexion turns about the joint's posed x; abduction, applied before flexion, about −z of
    the joint's frame before its own articulation: parent posed · (rest parent⁻¹ rest joint).
    """
    axes = []
    for j, abd in zip(_CONTACT_JOINTS, _CONTACT_ABD):
        if abd:
            local = rest_rotations[0].T @ rest_rotations[j]     # both base joints hang off the wrist
            axes.append(-(frames[:, 0, :3, :3] @ local)[..., 2])
        else:
            axes.append(frames[:, j, :3, 0])
    return torch.stack(axes, 1)


def solve_contacts(layer: HandLayer, angles: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
                   kind: np.ndarray, gap_mm: np.ndarray, hand_scale: np.ndarray,
                   cfg: PoseConfig = PoseConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Move the thumb (and for INDEX_PAD the index) so the thumb tip reaches its contact target.

    angles (m, 20) rad; alpha (m, 6); beta (m, 7); kind (m,) :class:`Contact` (not NONE);
    gap_mm (m,) thumb tip to index tip for INDEX_PAD; hand_scale (m,) hand length / 187 mm
    (scales the dorsal offsets). Damped Gauss-Newton with priors towards the given angles
    (thumb σ 30°, index σ 12°; the index stays fixed for dorsal targets), DIP = ratio · PIP
    kept, projected onto the limits after each step. Jacobian: ω × (p − p_joint) for the
    thumb tip and, with the opposite sign, for the index-pad target (rigid on the distal
    phalanx). Runs in the layer's dtype. Returns the angles (m, 20) float64 rad and the
    thumb tip's distance to its target (m,) mm.
    """
    m = np.shape(angles)[0]
    shapes = [np.shape(a) for a in (angles, alpha, beta, kind, gap_mm, hand_scale)]
    if shapes != [(m, NUM_ARTICULATIONS), (m, ALPHA_DIM), (m, BETA_DIM), (m,), (m,), (m,)]:
        raise ValueError(f"solve_contacts: expected angles (m, 20), alpha (m, 6), beta (m, 7) and kind, gap, "
                         f"scale (m,), got {shapes}")
    dtype = layer.rest_joints.dtype
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    x = t(angles).clone()
    prior = x.clone()
    al, be, g, sc = t(alpha), t(beta), t(gap_mm), t(hand_scale)
    kd = torch.as_tensor(np.asarray(kind, dtype=np.int64))
    lo, hi = (t(v) for v in _limits())
    ratio = cfg.dip_pip_ratio
    cols = list(_CONTACT_DOFS)
    sigma = torch.tensor([_THUMB_PRIOR_DEG] * 4 + [_INDEX_PRIOR_DEG] * 3, dtype=dtype)
    precision = (1.0 / torch.deg2rad(sigma) ** 2).expand(m, -1).clone()
    pad = kd == Contact.INDEX_PAD
    precision[~pad, 4:] = 1e12  # the index stays where it is for the dorsal targets
    joint_idx = list(_CONTACT_JOINTS)
    dip_offset = x[:, 7] - ratio * x[:, 6]   # the drawn DIP's deviation from the coupling, kept
    residual = torch.zeros(m, dtype=dtype)
    with torch.no_grad():
        for it in range(cfg.contact_iterations + 1):
            frames = _posed_frames(layer, x, al, be)
            target = _contact_target(frames, kd, g, sc)
            tip = frames[:, Joint.THUMB_TIP, :3, 3]
            err = tip - target                                                    # (m, 3) mm
            residual = err.norm(dim=-1)
            if it == cfg.contact_iterations:
                break
            axes = _rotation_axes(frames, layer.rest_rotations)                   # (m, 7, 3)
            pivots = frames[:, joint_idx, :3, 3]                                  # (m, 7, 3)
            moved = torch.where(torch.arange(7)[None, :, None] < 4, tip[:, None], target[:, None])
            sign = torch.tensor([1.0] * 4 + [-1.0] * 3, dtype=dtype)[None, :, None]
            jac = sign * torch.linalg.cross(axes, moved - pivots, dim=-1)         # (m, 7, 3)
            dip_axis = frames[:, Joint.INDEX_DIP, :3, 0]
            jac[:, 6] = jac[:, 6] - ratio * torch.linalg.cross(dip_axis, target - frames[:, Joint.INDEX_DIP, :3, 3],
                                                                dim=-1)
            jac = jac.transpose(1, 2)                                             # (m, 3, 7)
            lhs = jac.transpose(1, 2) @ jac + torch.diag_embed(precision + 1e-3)
            rhs = -(jac.transpose(1, 2) @ err[..., None])[..., 0] - precision * (x[:, cols] - prior[:, cols])
            x[:, cols] = x[:, cols] + torch.linalg.solve(lhs, rhs)
            x[:, 7] = torch.where(pad, ratio * x[:, 6] + dip_offset, x[:, 7])
            x = torch.minimum(torch.maximum(x, lo), hi)
    return x.double().numpy(), residual.double().numpy()


def sample_synergy(rng: np.random.Generator, n: int, layer: HandLayer, alpha: np.ndarray, beta: np.ndarray,
                   hand_scale: np.ndarray, cfg: PoseConfig = PoseConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Synergy-model articulations for hands of shape (alpha (n, 6), beta (n, 7)).

    hand_scale (n,): hand length / 187 mm. A thumb contact that stays farther than
    ``cfg.contact_tolerance_mm`` from its target (about 5-10 %: the drawn fingers put it
    beyond the thumb's limits) is replaced by the first of ``cfg.contact_candidates`` fresh
    draws of the same family (solved in one batch) that reaches it, else by the closest.
    Returns angles (n, 20) float64 rad within the limits and the family (n,) int8.
    """
    fam = _categorical(rng, np.tile(np.asarray(cfg.family_weights, dtype=np.float64), (n, 1)))
    draw = _synergy_draw(rng, fam, cfg)
    angles = draw.angles.copy()
    todo = np.flatnonzero(draw.contact != Contact.NONE)
    if todo.size == 0:
        return angles, draw.family
    solved, res = solve_contacts(layer, angles[todo], alpha[todo], beta[todo], draw.contact[todo],
                                 draw.pad_gap[todo], hand_scale[todo], cfg)
    angles[todo] = solved
    bad = todo[res > cfg.contact_tolerance_mm]
    if bad.size == 0:
        return angles, draw.family
    k = cfg.contact_candidates
    owner = np.repeat(bad, k)
    cand = _synergy_draw(rng, fam[owner], cfg, force_contact=True)
    c_angles, c_res = solve_contacts(layer, cand.angles, alpha[owner], beta[owner], cand.contact, cand.pad_gap,
                                     hand_scale[owner], cfg)
    c_res = c_res.reshape(bad.size, k)
    reached = c_res <= cfg.contact_tolerance_mm
    pick = np.where(reached.any(1), reached.argmax(1), c_res.argmin(1))
    best = np.arange(bad.size) * k + pick
    worse = res[res > cfg.contact_tolerance_mm] > c_res[np.arange(bad.size), pick]
    angles[bad[worse]] = c_angles[best[worse]]
    return angles, draw.family


# ---------------------------------------------------------------------------------------
# Pose-bank splits and the articulation mixture
# ---------------------------------------------------------------------------------------

def bank_indices(split: str, num_poses: int, cfg: SplitConfig = SplitConfig()) -> np.ndarray:
    """Pose-bank indices (sorted, int64) of ``split``; the three splits are disjoint.

    The bank holds recordings (consecutive poses differ by a few degrees), so whole blocks
    of ``bank_block`` consecutive poses go to one split, in a random order fixed by
    ``cfg.seed``; ``bank_guard`` poses at both ends of every val/test block belong to no
    split, so that no held-out pose has a near-copy in train.
    """
    _check_split(split)
    num_blocks = -(-num_poses // cfg.bank_block)
    order = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7919])).permutation(num_blocks)
    frac = np.asarray(cfg.bank_fractions, dtype=np.float64)
    bounds = np.round(np.cumsum(frac / frac.sum()) * num_blocks).astype(int)
    k = SPLITS.index(split)
    blocks = np.sort(order[(0 if k == 0 else bounds[k - 1]):bounds[k]])
    out = []
    for b in blocks:
        start, stop = b * cfg.bank_block, min((b + 1) * cfg.bank_block, num_poses)
        if k > 0:
            start, stop = start + cfg.bank_guard, stop - cfg.bank_guard
        out.append(np.arange(start, max(start, stop)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def sample_articulations(rng: np.random.Generator, n: int, layer: HandLayer, bank_angles: np.ndarray,
                         allowed: np.ndarray, alpha: np.ndarray, beta: np.ndarray, hand_scale: np.ndarray,
                         cfg: PoseConfig = PoseConfig()) -> Articulations:
    """The articulation mixture for n hands of the given shapes (see :class:`PoseConfig`)."""
    source = rng.choice(3, size=n, p=cfg.mixture).astype(np.int8)
    angles = np.zeros((n, NUM_ARTICULATIONS))
    posebank_index = np.full(n, -1, dtype=np.int32)
    family = np.full(n, -1, dtype=np.int8)
    sel = np.flatnonzero(source == PoseSource.BANK)
    if sel.size:
        angles[sel], posebank_index[sel] = sample_bank(rng, sel.size, bank_angles, allowed, cfg.bank_noise_deg)
    sel = np.flatnonzero(source == PoseSource.SYNERGY)
    if sel.size:
        angles[sel], family[sel] = sample_synergy(rng, sel.size, layer, alpha[sel], beta[sel], hand_scale[sel], cfg)
    sel = np.flatnonzero(source == PoseSource.UNIFORM)
    if sel.size:
        angles[sel] = sample_uniform(rng, sel.size)
    return Articulations(angles, source, posebank_index, family)


# ---------------------------------------------------------------------------------------
# Shapes and subjects
# ---------------------------------------------------------------------------------------

class _ShapeVertices(NamedTuple):
    apex: int       # middle fingertip apex (hand length)
    far_end: int    # forearm far end


@functools.lru_cache(maxsize=1)
def _shape_vertices() -> _ShapeVertices:
    with np.load(ASSET_PATH) as z:
        part = z["part"]
    c = HandModelConstants.load()
    rest = c.anchors @ c.rest_joints + c.rest_offsets
    middle = np.flatnonzero(part == MIDDLE_PART)
    forearm = np.flatnonzero(part == FOREARM_PART)
    return _ShapeVertices(int(middle[np.argmax(rest[middle, 1])]), int(forearm[np.argmin(rest[forearm, 1])]))


def rest_points(layer: HandLayer, alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rest-pose points of hands (α (n, 6), β (n, 7)), hand frame, mm, float64:
    the middle fingertip apex (n, 3), the palm centre (n, 3), the forearm's far end (n, 3).

    The layer's own stages (:func:`shaped_rest`, :func:`scaled_rest`, vertex = anchors ·
    joints + offset) evaluated for the two vertices only.
    """
    idx = list(_shape_vertices())
    dtype = layer.rest_joints.dtype
    with torch.no_grad():
        shaped, offsets = shaped_rest(torch.as_tensor(beta, dtype=dtype), layer.rest_joints, layer.joint_morphs,
                                      layer.rest_offsets[idx], layer.offset_morphs[:, idx])
        joints = scaled_rest(torch.as_tensor(alpha, dtype=dtype), shaped, layer.alpha_of_joint)
        verts = (layer.anchors[idx] @ joints + offsets).double().numpy()
    palm = joints[:, list(PALM_CENTRE_JOINTS)].mean(1).double().numpy()
    return verts[:, 0], palm, verts[:, 1]


def hand_length_mm(layer: HandLayer, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(n,) mm: wrist joint to the middle fingertip's surface (apex vertex), rest pose."""
    apex, _, _ = rest_points(layer, alpha, beta)
    return np.linalg.norm(apex, axis=-1)


def _draw_lengths(rng: np.random.Generator, n: int, cfg: ShapeConfig) -> np.ndarray:
    lo, hi = cfg.length_clip_mm
    comp = rng.choice(3, size=n, p=np.array([cfg.uniform_weight, cfg.adult_weight, cfg.child_weight])
                      / (cfg.uniform_weight + cfg.adult_weight + cfg.child_weight))
    z = rng.standard_normal(n)
    adult = cfg.adult_mm[0] + cfg.adult_mm[1] * z
    child = cfg.child_mm[0] + cfg.child_mm[1] * z
    lengths = np.where(comp == 0, lo + (hi - lo) * rng.random(n), np.where(comp == 1, adult, child))
    return np.clip(lengths, lo, hi)


def make_subjects(seed: int | Sequence[int], n: int, cfg: ShapeConfig = ShapeConfig(),
                  layer: HandLayer | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n hand shapes: alpha (n, 6) and beta (n, 7), float64, deterministic in ``seed``.

    Hand lengths follow :class:`ShapeConfig` (module docstring); β_size is solved by secant
    steps so that each hand measures its drawn length (to 1e-9 mm unless ``size_clip`` binds).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"make_subjects: expected a positive number of subjects, got {n!r}")
    layer = layer or HandLayer(dtype=torch.float64)
    rng = np.random.default_rng(seed)
    target = _draw_lengths(rng, n, cfg)
    alpha = np.clip(1.0 + cfg.alpha_sigma * rng.standard_normal((n, ALPHA_DIM)), *cfg.alpha_clip)
    beta = np.clip(cfg.beta_sigma * rng.standard_normal((n, BETA_DIM)), -cfg.beta_clip, cfg.beta_clip)
    # Secant steps on β_size: the length is almost linear in it (three reach 1e-9 mm).
    b0, b1 = np.zeros(n), np.ones(n)
    beta[:, SIZE_BETA] = b0
    l0 = hand_length_mm(layer, alpha, beta)
    for _ in range(3):
        beta[:, SIZE_BETA] = b1
        l1 = hand_length_mm(layer, alpha, beta)
        moved = np.abs(b1 - b0) > 1e-12
        slope = np.where(moved, (l1 - l0) / np.where(moved, b1 - b0, 1.0), 1.0)
        b0, l0 = b1, l1
        b1 = np.clip(b1 + (target - l1) / slope, *cfg.size_clip)
    beta[:, SIZE_BETA] = b1
    return alpha, beta


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def subject_pool(split: str, cfg: SamplerConfig = SamplerConfig(), layer: HandLayer | None = None) -> SubjectPool:
    """The subjects of ``split``: ids are 0.. for train, then val, then test (disjoint);
    each pool has its own seed (``(split.seed, k)``), so the hands differ too."""
    _check_split(split)
    layer = layer or HandLayer(dtype=torch.float64)
    k = SPLITS.index(split)
    sizes = cfg.split.subjects
    first = int(sum(sizes[:k]))
    alpha, beta = make_subjects((cfg.split.seed, 1 + k), sizes[k], cfg.shape, layer)
    apex, palm, far_end = rest_points(layer, alpha, beta)
    ids = np.arange(first, first + sizes[k], dtype=np.int32)
    return SubjectPool(ids, alpha, beta, np.linalg.norm(apex, axis=-1), palm, far_end)


# ---------------------------------------------------------------------------------------
# Viewpoints (pure numpy)
# ---------------------------------------------------------------------------------------

def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def forearm_frame(direction: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """camera_from_forearm rotations (n, 3, 3) for forearm directions (n, 3) (wrist -> elbow,
    unit, camera frame) and rolls (n,) rad.

    The forearm frame is the hand frame of a straight wrist: y = −direction (distal), and
    at roll 0 its z (palmar) is the camera's forward axis made orthogonal to y, so the back
    of the hand faces the camera; roll turns z about y (π: palm towards the camera).
    """
    y = -direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    fwd = np.array([0.0, 0.0, 1.0])
    z0 = fwd - (y @ fwd)[:, None] * y
    z0 /= np.linalg.norm(z0, axis=-1, keepdims=True)
    x0 = np.cross(y, z0)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    z = c * z0 - s * x0
    x = np.cross(y, z)
    return np.stack([x, y, z], -1)


def image_box(intr: Intrinsics, margin_frac: float) -> tuple[float, float, float, float]:
    """(x_lo, x_hi, y_lo, y_hi): a box in ideal normalised coordinates (x/z, y/z) whose image
    lies inside the image shrunk by ``margin_frac`` of W and H (lens distortion included)."""
    mu, mv = margin_frac * intr.width, margin_frac * intr.height
    u0, u1 = -0.5 + mu, intr.width - 0.5 - mu
    v0, v1 = -0.5 + mv, intr.height - 0.5 - mv
    if not intr.has_distortion:
        return (u0 - intr.cx) / intr.fx, (u1 - intr.cx) / intr.fx, (v0 - intr.cy) / intr.fy, (v1 - intr.cy) / intr.fy
    t = np.linspace(0.0, 1.0, 65)
    us, vs = u0 + (u1 - u0) * t, v0 + (v1 - v0) * t

    def ideal(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        uvd = np.stack([u, v, np.ones_like(u)], -1)
        return backproject(uvd, intr)[:, :2]

    left = ideal(np.full_like(vs, u0), vs)
    right = ideal(np.full_like(vs, u1), vs)
    top = ideal(us, np.full_like(us, v0))
    bottom = ideal(us, np.full_like(us, v1))
    return float(left[:, 0].max()), float(right[:, 0].min()), float(top[:, 1].max()), float(bottom[:, 1].min())


def _uniform(rng: np.random.Generator, bounds: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * rng.random(n)


def _depth_draw(rng: np.random.Generator, n: int, full: tuple[float, float], core: tuple[float, float],
                core_weight: float) -> np.ndarray:
    in_core = rng.random(n) < core_weight
    lo = np.where(in_core, core[0], full[0])
    hi = np.where(in_core, core[1], full[1])
    return lo + (hi - lo) * rng.random(n)


def _clipped_normal_mix(rng: np.random.Generator, n: int, limit: float, sigma: float, uniform_weight: float) -> np.ndarray:
    uni = rng.random(n) < uniform_weight
    a = np.where(uni, limit * (2.0 * rng.random(n) - 1.0), np.clip(sigma * rng.standard_normal(n), -limit, limit))
    return a


def sample_orientations(rng: np.random.Generator, view: np.ndarray,
                        cfg: ViewConfig = ViewConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forearm frames (n, 3, 3) camera_from_forearm, wrist bends (n, 2) rad and
    camera_from_hand rotations (n, 3, 3) for views (n,) (module docstring)."""
    n = view.shape[0]
    ego = view == View.EGOCENTRIC
    # Forearm direction: elevation e (+: away from the camera) and image direction psi
    # (0: down in the image, +: to the right).
    e_third = _uniform(rng, _deg(cfg.third_elevation_deg), n)
    e_ego = -_uniform(rng, _deg(cfg.ego_elevation_deg), n)
    down = rng.random(n) < cfg.third_down_weight
    psi_third = np.where(down, _deg(cfg.third_down_sigma_deg) * rng.standard_normal(n),
                         _uniform(rng, (-np.pi, np.pi), n))
    clip = _deg(cfg.ego_direction_clip_deg)
    mean, sigma = _deg(cfg.ego_direction_deg)
    psi_ego = np.clip(mean + sigma * rng.standard_normal(n), -clip, clip)
    elev = np.where(ego, e_ego, e_third)
    psi = np.where(ego, psi_ego, psi_third)
    direction = np.stack([np.cos(elev) * np.sin(psi), np.cos(elev) * np.cos(psi), np.sin(elev)], -1)
    back = rng.random(n) < cfg.ego_back_fraction
    roll_ego = np.where(back, 0.0, np.pi) + _deg(cfg.ego_roll_sigma_deg) * rng.standard_normal(n)
    roll_third = np.pi * (2.0 * rng.random(n) - 1.0)
    roll = np.where(ego, roll_ego, roll_third)
    frame = forearm_frame(direction, roll)
    lim_f, lim_d = _deg(cfg.wrist_limits_deg)
    sig_f, sig_d = _deg(cfg.wrist_sigma_deg)
    wrist = np.stack([_clipped_normal_mix(rng, n, lim_f, sig_f, cfg.wrist_uniform_weight),
                      _clipped_normal_mix(rng, n, lim_d, sig_d, cfg.wrist_uniform_weight)], -1)
    bend = _rot_x(wrist[:, 0]) @ _rot_z(wrist[:, 1])
    rotation = frame @ bend.transpose(0, 2, 1)
    return frame, wrist, rotation


def _fit_depth(rel: np.ndarray, box: tuple[float, float, float, float], near: float) -> np.ndarray:
    """Least palm depth (n,) at which points rel (n, k, 3) (camera axes, relative to the palm
    centre) can all lie inside ``box`` (normalised) and at least ``near`` in front."""
    xlo, xhi, ylo, yhi = box
    x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
    zx = ((xlo * z - x).max(1) - (xhi * z - x).min(1)) / (xhi - xlo)
    zy = ((ylo * z - y).max(1) - (yhi * z - y).min(1)) / (yhi - ylo)
    return np.maximum(np.maximum(zx, zy), near - z.min(1))


def _joint_intervals(rel: np.ndarray, depth: np.ndarray, box: tuple[float, float, float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Palm-centre x and y ranges (n, 2, 2) [axis, lo/hi] keeping the points rel (n, k, 3)
    inside ``box`` at ``depth`` (n,); (lo > hi where impossible)."""
    xlo, xhi, ylo, yhi = box
    zz = depth[:, None] + rel[..., 2]
    lo = np.stack([(xlo * zz - rel[..., 0]).max(1), (ylo * zz - rel[..., 1]).max(1)], 1)
    hi = np.stack([(xhi * zz - rel[..., 0]).min(1), (yhi * zz - rel[..., 1]).min(1)], 1)
    return lo, hi


def _border_constraints(lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, forearm_rel: np.ndarray,
                        box: tuple[float, float, float, float], border_frac: float, near: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tighten the palm-centre ranges lo, hi (n, 2) so that the forearm's far end (relative
    position forearm_rel (n, 3)) projects within ``border_frac`` of the bottom border, or
    else of the left/right border, or beyond; a far end nearer than ``near`` needs nothing.
    Returns the new lo, hi and whether a range was found (n,) bool."""
    xlo, xhi, ylo, yhi = box
    fx, fy, fz = forearm_rel.T
    s = depth + fz
    free = s < near
    bottom = (yhi - border_frac * (yhi - ylo)) * s - fy          # y >= bottom
    right = (xhi - border_frac * (xhi - xlo)) * s - fx           # x >= right
    left = (xlo + border_frac * (xhi - xlo)) * s - fx            # x <= left
    ok_bottom = np.maximum(lo[:, 1], bottom) <= hi[:, 1]
    ok_right = np.maximum(lo[:, 0], right) <= hi[:, 0]
    ok_left = lo[:, 0] <= np.minimum(hi[:, 0], left)
    use_bottom = ~free & ok_bottom
    prefer_right = fx >= 0
    use_right = ~free & ~ok_bottom & ok_right & (prefer_right | ~ok_left)
    use_left = ~free & ~ok_bottom & ~use_right & ok_left
    lo, hi = lo.copy(), hi.copy()
    lo[:, 1] = np.where(use_bottom, np.maximum(lo[:, 1], bottom), lo[:, 1])
    lo[:, 0] = np.where(use_right, np.maximum(lo[:, 0], right), lo[:, 0])
    hi[:, 0] = np.where(use_left, np.minimum(hi[:, 0], left), hi[:, 0])
    return lo, hi, free | use_bottom | use_right | use_left


def _inside(uv: np.ndarray, intr: Intrinsics) -> np.ndarray:
    return ((uv[..., 0] >= -0.5) & (uv[..., 0] <= intr.width - 0.5)
            & (uv[..., 1] >= -0.5) & (uv[..., 1] <= intr.height - 0.5))


def _project_far(far_cam: np.ndarray, intr: Intrinsics, near_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(uv (n, 2), nearer-than-near (n,) bool) of points (n, 3); uv is NaN for the near ones."""
    near = far_cam[:, 2] < near_mm
    safe = np.where(near[:, None], np.array([0.0, 0.0, 1.0]), far_cam)
    uv = project(safe, intr)[:, :2]
    return np.where(near[:, None], np.nan, uv), near


def forearm_enters_from_below(wrist_cam: np.ndarray, far_cam: np.ndarray, intr: Intrinsics,
                              near_mm: float = 1.0) -> np.ndarray:
    """(n,) bool: the forearm's far end (n, 3) lies below the wrist (n, 3) in the image, or
    outside the image, or closer than ``near_mm`` (beyond the near plane)."""
    uv_far, near = _project_far(far_cam, intr, near_mm)
    uv_wrist = project(wrist_cam, intr)[:, :2]
    with np.errstate(invalid="ignore"):
        return near | ~_inside(uv_far, intr) | (uv_far[:, 1] > uv_wrist[:, 1])


def forearm_at_border(far_cam: np.ndarray, intr: Intrinsics, border_frac: float, near_mm: float) -> np.ndarray:
    """(n,) bool: the forearm's far end (n, 3) is nearer than ``near_mm``, or projects outside
    the image or within ``border_frac`` of W/H of its bottom, left or right border."""
    uv, near = _project_far(far_cam, intr, near_mm)
    with np.errstate(invalid="ignore"):
        edge = ((uv[:, 1] >= intr.height - 0.5 - border_frac * intr.height)
                | (uv[:, 0] <= -0.5 + border_frac * intr.width)
                | (uv[:, 0] >= intr.width - 0.5 - border_frac * intr.width))
        return near | ~_inside(uv, intr) | edge


def place_hands(rng: np.random.Generator, view: np.ndarray, joints_hand: np.ndarray, palm_hand: np.ndarray,
                forearm_end_hand: np.ndarray, intr: Intrinsics, cfg: ViewConfig = ViewConfig(),
                depth_range_mm: tuple[float, float] | None = None) -> Placement:
    """Orientation, wrist bend and wrist position of n hands (module docstring, "Views").

    view (n,) :class:`View`; joints_hand (n, 21, 3) posed joints, hand frame, mm;
    palm_hand (n, 3) palm centre, hand frame; forearm_end_hand (n, 3) the forearm's far end
    at rest (straight wrist), hand frame. ``depth_range_mm``: (near, far) palm depths the
    camera can see; placements outside are redrawn like any other failed draw (rejection:
    the accepted placements keep their distribution, conditioned on the range). Samples
    still failing after ``max_rounds`` keep their last draw with ``in_view`` False.
    """
    n = view.shape[0]
    if joints_hand.shape != (n, 21, 3) or palm_hand.shape != (n, 3) or forearm_end_hand.shape != (n, 3):
        raise ValueError(f"place_hands: expected joints (n, 21, 3), palm (n, 3), forearm end (n, 3) with n = {n}, "
                         f"got {joints_hand.shape}, {palm_hand.shape}, {forearm_end_hand.shape}")
    box = image_box(intr, cfg.margin_frac)
    rotation = np.zeros((n, 3, 3))
    wrist = np.zeros((n, 2))
    palm = np.zeros((n, 3))
    ok = np.zeros(n, dtype=bool)
    todo = np.arange(n)
    for _ in range(cfg.max_rounds):
        v = view[todo]
        ego = v == View.EGOCENTRIC
        frame, bend, rot = sample_orientations(rng, v, cfg)
        rel = np.einsum("nij,nkj->nki", rot, joints_hand[todo] - palm_hand[todo, None])
        forearm_rel = np.einsum("nij,nj->ni", frame, forearm_end_hand[todo]) - np.einsum("nij,nj->ni", rot,
                                                                                          palm_hand[todo])
        z_draw = np.where(ego, _depth_draw(rng, todo.size, cfg.ego_depth_mm, cfg.ego_core_mm, cfg.ego_core_weight),
                          _depth_draw(rng, todo.size, cfg.third_depth_mm, cfg.third_core_mm, cfg.third_core_weight))
        z_max = np.where(ego, cfg.ego_depth_mm[1], cfg.third_depth_mm[1])
        depth = np.maximum(z_draw, _fit_depth(rel, box, cfg.near_mm))
        lo, hi = _joint_intervals(rel, depth, box)
        b_lo, b_hi, b_ok = _border_constraints(lo, hi, depth, forearm_rel, box, cfg.ego_border_frac, cfg.near_mm)
        lo = np.where(ego[:, None], b_lo, lo)
        hi = np.where(ego[:, None], b_hi, hi)
        xy = lo + (np.maximum(hi, lo) - lo) * rng.random((todo.size, 2))
        centre = np.concatenate([xy, depth[:, None]], -1)
        joints_cam = rel + centre[:, None]
        good = (depth <= z_max) & (joints_cam[..., 2] > 0).all(1) & (~ego | b_ok)
        if depth_range_mm is not None:
            good &= (depth >= depth_range_mm[0]) & (depth <= depth_range_mm[1])
        uv = project(np.where(good[:, None, None], joints_cam, 1.0 + np.abs(joints_cam)), intr)[..., :2]
        good &= _inside(uv, intr).all(1)
        far = centre + forearm_rel
        good &= ~ego | forearm_at_border(far, intr, cfg.ego_border_frac, cfg.near_mm)
        rotation[todo], wrist[todo], palm[todo], ok[todo] = rot, bend, centre, good
        todo = todo[~good]
        if todo.size == 0:
            break
    translation = palm - np.einsum("nij,nj->ni", rotation, palm_hand)
    return Placement(rotation, translation, wrist, palm, ok)


# ---------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------

class HandSampler:
    """Holds what sampling needs (layers, pose bank, subject pools, built lazily per split);
    :meth:`sample` is deterministic given its ``rng``. Build one per process or worker (or
    use :func:`sample_hands`); call it from one thread at a time.

    ``torch_threads``: torch threads used inside :meth:`sample` (restored afterwards). The
    work is many small tensor operations: one thread gave 10-17 k samples/s on a busy
    2-core machine, where two threads ranged from 26 k/s (idle) to 1 k/s (another process
    busy: the thread pool oversubscribes). None leaves torch's setting alone.
    """

    def __init__(self, cfg: SamplerConfig = SamplerConfig(), bank_angles: np.ndarray | None = None,
                 torch_threads: int | None = 1) -> None:
        self.cfg = cfg
        self.torch_threads = torch_threads
        self.layer64 = HandLayer(dtype=torch.float64)
        self.layer32 = HandLayer(dtype=torch.float32)
        if bank_angles is None:
            bank_angles = load_posebank().theta[:, ARTICULATION].astype(np.float64)
        if bank_angles.ndim != 2 or bank_angles.shape[1] != NUM_ARTICULATIONS:
            raise ValueError(f"expected bank angles of shape (N, {NUM_ARTICULATIONS}), got {bank_angles.shape}")
        self.bank_angles = bank_angles
        self.bank_split = {s: bank_indices(s, bank_angles.shape[0], cfg.split) for s in SPLITS}
        self._pools: dict[str, SubjectPool] = {}

    def pool(self, split: str) -> SubjectPool:
        _check_split(split)
        if split not in self._pools:
            self._pools[split] = subject_pool(split, self.cfg, self.layer64)
        return self._pools[split]

    def sample(self, rng: np.random.Generator, n: int, intr: Intrinsics, split: str = "train",
               depth_range_mm: tuple[float, float] | None = None) -> HandBatch:
        """n hands of ``split`` seen by ``intr`` (see :func:`sample_hands`):
        ``place(rng, bodies(rng, n, split), intr, depth_range_mm)``."""
        return self.place(rng, self.bodies(rng, n, split), intr, depth_range_mm)

    def bodies(self, rng: np.random.Generator, n: int, split: str = "train") -> HandBodies:
        """n hands of ``split`` before placement: subject, articulations, view. Per hand the
        work is many small tensor operations, so large batches are cheaper per hand (0.72 ms
        at 64, 0.25 ms at 256 hands on this machine): draw many, place them in groups."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected a positive number of samples, got {n!r}")
        with torch_threads(self.torch_threads):
            pool = self.pool(split)
            pick = rng.integers(0, pool.ids.size, n)
            alpha, beta = pool.alpha[pick], pool.beta[pick]
            scale = pool.hand_length_mm[pick] / _NEUTRAL_LENGTH_MM
            arts = sample_articulations(rng, n, self.layer32, self.bank_angles, self.bank_split[split],
                                        alpha, beta, scale, self.cfg.pose)
            view = (rng.random(n) < self.cfg.view.egocentric_fraction).astype(np.int8)
            with torch.no_grad():
                joints = ik.hand_frame_joints(self.layer32, torch.as_tensor(arts.angles, dtype=torch.float32),
                                              torch.as_tensor(alpha, dtype=torch.float32),
                                              torch.as_tensor(beta, dtype=torch.float32)).double().numpy()
        return HandBodies(alpha, beta, arts, view, pool.ids[pick], joints, pool.palm_centre_mm[pick],
                          pool.forearm_end_mm[pick])

    def place(self, rng: np.random.Generator, bodies: HandBodies, intr: Intrinsics,
              depth_range_mm: tuple[float, float] | None = None) -> HandBatch:
        """The hands ``bodies`` seen by ``intr``: orientation, wrist bend and position
        (:func:`place_hands`), as a :class:`HandBatch`."""
        if not isinstance(intr, Intrinsics):
            raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
        place = place_hands(rng, bodies.view, bodies.joints, bodies.palm, bodies.forearm_end, intr,
                            self.cfg.view, depth_range_mm)
        with torch_threads(self.torch_threads), torch.no_grad():
            rotvec = matrix_to_axis_angle(torch.as_tensor(place.rotation)).numpy()
        arts = bodies.articulations
        theta = np.concatenate([rotvec, place.translation, arts.angles], 1)
        return HandBatch(
            theta=within_limits_float32(theta),
            alpha=bodies.alpha.astype(np.float32),
            beta=bodies.beta.astype(np.float32),
            wrist=place.wrist.astype(np.float32),
            view=bodies.view,
            pose_source=arts.source,
            subject=bodies.subject,
            posebank_index=arts.posebank_index,
            family=arts.family,
        )


@functools.lru_cache(maxsize=2)
def hand_sampler(cfg: SamplerConfig = SamplerConfig()) -> HandSampler:
    """The process's :class:`HandSampler` for ``cfg`` (built once per config)."""
    return HandSampler(cfg)


def sample_hands(rng: np.random.Generator, n: int, intr: Intrinsics, split: str = "train",
                 cfg: SamplerConfig = SamplerConfig(),
                 depth_range_mm: tuple[float, float] | None = None) -> HandBatch:
    """n hands for ``split`` seen by ``intr``; deterministic given ``rng``'s state.

    ``depth_range_mm``: (near, far) palm depths the camera can see (see :func:`place_hands`).
    Uses a :class:`HandSampler` built once per config (layers, pose bank, subject pools).
    """
    return hand_sampler(cfg).sample(rng, n, intr, split, depth_range_mm)


# ---------------------------------------------------------------------------------------
# Coverage report (statistics are pure; drawing returns an image; main does the IO)
# ---------------------------------------------------------------------------------------

COVERAGE_BINS = 20


class DofCoverage(NamedTuple):
    """How one articulation's samples fill its limit range [lo, hi] (degrees)."""

    name: str
    lo_deg: float
    hi_deg: float
    percentiles_deg: tuple[float, float, float]   # 5, 50, 95
    filled: float        # share of the 20 bins over [lo, hi] holding at least one sample
    balanced: float      # share of bins holding at least a quarter of the uniform share
    counts: np.ndarray   # (20,) int


class Coverage(NamedTuple):
    n: int
    dofs: tuple[DofCoverage, ...]
    hand_length_mm: np.ndarray      # (n,) per sample
    depth_mm: np.ndarray            # (n,) palm-centre z
    view: np.ndarray                # (n,) int8
    wrist_deg: np.ndarray           # (n, 2)
    source_fractions: np.ndarray    # (3,) bank, synergy, uniform
    family_fractions: np.ndarray    # (10,) among synergy samples
    view_fractions: np.ndarray      # (2,) third-person, egocentric
    joints_in_image: float          # share of samples whose 21 joints project inside the image
    palm_in_image: float            # share of samples whose palm centre projects inside


def coverage(batch: HandBatch, hand_length: np.ndarray, joints_cam: np.ndarray, intr: Intrinsics) -> Coverage:
    """Coverage statistics of a batch. hand_length (n,) mm; joints_cam (n, 21, 3) mm, the
    batch's joints in the camera frame (from the layer)."""
    n = batch.theta.shape[0]
    if joints_cam.shape != (n, 21, 3) or hand_length.shape != (n,):
        raise ValueError(f"coverage: expected joints (n, 21, 3) and lengths (n,) with n = {n}, got "
                         f"{joints_cam.shape} and {hand_length.shape}")
    deg = np.degrees(batch.theta[:, ARTICULATION].astype(np.float64))
    dofs = []
    for i, d in enumerate(ARTICULATIONS):
        counts, _ = np.histogram(deg[:, i], bins=COVERAGE_BINS, range=(d.lo_deg, d.hi_deg))
        p = np.percentile(deg[:, i], [5, 50, 95])
        dofs.append(DofCoverage(d.name, d.lo_deg, d.hi_deg, (float(p[0]), float(p[1]), float(p[2])),
                                float((counts > 0).mean()), float((counts >= 0.25 * n / COVERAGE_BINS).mean()),
                                counts))
    palm = joints_cam[:, list(PALM_CENTRE_JOINTS)].mean(1)
    uv = project(joints_cam.reshape(-1, 3), intr)[:, :2].reshape(n, 21, 2)
    syn = batch.family[batch.family >= 0]
    return Coverage(
        n=n, dofs=tuple(dofs), hand_length_mm=hand_length, depth_mm=palm[:, 2], view=batch.view,
        wrist_deg=np.degrees(batch.wrist.astype(np.float64)),
        source_fractions=np.bincount(batch.pose_source, minlength=3) / n,
        family_fractions=np.bincount(syn, minlength=len(Family)) / max(syn.size, 1),
        view_fractions=np.bincount(batch.view, minlength=2) / n,
        joints_in_image=float(_inside(uv, intr).all(1).mean()),
        palm_in_image=float(_inside(project(palm, intr)[:, :2], intr).mean()),
    )


def _pct(x: np.ndarray) -> str:
    p = np.percentile(x, [0, 5, 50, 95, 100])
    return f"min {p[0]:.0f}, p5 {p[1]:.0f}, p50 {p[2]:.0f}, p95 {p[3]:.0f}, max {p[4]:.0f}"


def format_coverage(c: Coverage) -> str:
    lines = [f"{c.n} samples; per articulation: limits [lo, hi] deg, p5/p50/p95 deg, share of the "
             f"{COVERAGE_BINS} bins over [lo, hi] that are non-empty / hold >= 1/4 of the uniform share"]
    for d in c.dofs:
        p5, p50, p95 = d.percentiles_deg
        lines.append(f"  {d.name:18s} [{d.lo_deg:6.1f}, {d.hi_deg:6.1f}]  p5 {p5:6.1f}  p50 {p50:6.1f}  "
                     f"p95 {p95:6.1f}  filled {100 * d.filled:5.1f} %  balanced {100 * d.balanced:5.1f} %")
    lines.append(f"hand length (mm): {_pct(c.hand_length_mm)}")
    for v in View:
        sel = c.view == v
        if sel.any():
            lines.append(f"palm-centre depth, {v.name.lower()} (mm): {_pct(c.depth_mm[sel])}")
    lines.append(f"wrist flexion (deg): {_pct(c.wrist_deg[:, 0])}; deviation: {_pct(c.wrist_deg[:, 1])}")
    lines.append("views: " + ", ".join(f"{v.name.lower()} {100 * f:.1f} %" for v, f in zip(View, c.view_fractions)))
    lines.append("pose sources: " + ", ".join(f"{s.name.lower()} {100 * f:.1f} %"
                                              for s, f in zip(PoseSource, c.source_fractions)))
    lines.append("synergy families: " + ", ".join(f"{f.name.lower()} {100 * v:.1f} %"
                                                  for f, v in zip(Family, c.family_fractions)))
    lines.append(f"all 21 joints inside the image: {100 * c.joints_in_image:.2f} %; palm centre inside: "
                 f"{100 * c.palm_in_image:.2f} %")
    return "\n".join(lines)


_PANEL = (300, 170)  # width, height, pixels


def _panel(title: str) -> np.ndarray:
    import cv2

    img = np.full((_PANEL[1], _PANEL[0], 3), 255, dtype=np.uint8)
    cv2.putText(img, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (0, 0), (_PANEL[0] - 1, _PANEL[1] - 1), (200, 200, 200), 1)
    return img


def _bars(img: np.ndarray, values: np.ndarray, color: tuple[int, int, int], labels: tuple[str, ...] = ()) -> None:
    import cv2

    left, right, top, bottom = 10, _PANEL[0] - 10, 26, _PANEL[1] - 22
    k = len(values)
    width = (right - left) / k
    peak = max(float(np.max(values)), 1e-12)
    for i, v in enumerate(values):
        h = int(round((bottom - top) * float(v) / peak))
        x0, x1 = int(left + i * width) + 1, int(left + (i + 1) * width) - 1
        cv2.rectangle(img, (x0, bottom - h), (max(x0, x1), bottom), color, -1)
    cv2.line(img, (left, bottom), (right, bottom), (0, 0, 0), 1)
    for i, lab in enumerate(labels):
        x = int(left + (i + 0.5) * width) - 4 * len(lab) // 2
        cv2.putText(img, lab, (max(2, x), _PANEL[1] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)


def _counts_panel(title: str, counts: np.ndarray, lo: float, hi: float, percentiles: Sequence[float],
                  color: tuple[int, int, int]) -> np.ndarray:
    """A histogram panel: bars of ``counts`` over [lo, hi], red lines at ``percentiles``."""
    import cv2

    img = _panel(title)
    _bars(img, counts.astype(np.float64), color)
    for x, text in ((10, f"{lo:g}"), (_PANEL[0] - 10 - 7 * len(f"{hi:g}"), f"{hi:g}")):
        cv2.putText(img, text, (x, _PANEL[1] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for q, grey in zip(percentiles, (120, 0, 120)):
        x = int(round(10 + (_PANEL[0] - 20) * (q - lo) / (hi - lo)))
        cv2.line(img, (x, 24), (x, _PANEL[1] - 22), (grey, grey, 255), 1)
    return img


def _histogram_panel(title: str, values: np.ndarray, lo: float, hi: float, color: tuple[int, int, int],
                     bins: int = COVERAGE_BINS) -> np.ndarray:
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    return _counts_panel(title, counts, lo, hi, np.percentile(values, [5, 50, 95]), color)


def draw_coverage(c: Coverage, columns: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 BGR picture: per-DoF histograms over the limits (red lines: p5, p50,
    p95), hand lengths, depths per view, wrist bends, and the view/source/family shares."""
    panels = [_counts_panel(f"{d.name} (deg)  filled {100 * d.filled:.0f}%", d.counts, d.lo_deg, d.hi_deg,
                            d.percentiles_deg, (170, 110, 40)) for d in c.dofs]
    panels.append(_histogram_panel("hand length (mm)", c.hand_length_mm, 110.0, 240.0, (60, 140, 60), bins=26))
    for v, (lo, hi) in zip(View, ((150.0, 1050.0), (150.0, 750.0))):
        sel = c.view == v
        if sel.any():
            panels.append(_histogram_panel(f"palm depth, {v.name.lower()} (mm)", c.depth_mm[sel], lo, hi,
                                           (40, 140, 200), bins=30))
    panels.append(_histogram_panel("wrist flexion (deg)", c.wrist_deg[:, 0], -60.0, 60.0, (140, 60, 140)))
    panels.append(_histogram_panel("wrist deviation (deg)", c.wrist_deg[:, 1], -25.0, 25.0, (140, 60, 140)))
    for title, shares, labels in (
            ("views: third-person / egocentric", c.view_fractions, None),
            ("pose source: bank / synergy / uniform", c.source_fractions, None),
            ("synergy families", c.family_fractions, tuple(f.name[:2].lower() for f in Family))):
        img = _panel(title)
        _bars(img, shares, (80, 80, 80), labels or tuple(f"{100 * f:.0f}%" for f in shares))
        panels.append(img)
    while len(panels) % columns:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.concatenate(panels[k:k + columns], 1) for k in range(0, len(panels), columns)]
    return np.concatenate(rows, 0)


def camera_joints(layer: HandLayer, batch: HandBatch) -> np.ndarray:
    """(n, 21, 3) float64 mm: the batch's joints in the camera frame (layer FK, no skinning)."""
    dtype = layer.rest_joints.dtype
    with torch.no_grad():
        theta = torch.as_tensor(batch.theta, dtype=dtype)
        hand = ik.hand_frame_joints(layer, theta[:, ARTICULATION], torch.as_tensor(batch.alpha, dtype=dtype),
                                    torch.as_tensor(batch.beta, dtype=dtype)).double()
        rot = axis_angle_to_matrix(theta[:, 0:3].double())
    return (hand @ rot.transpose(1, 2)).numpy() + batch.theta[:, None, 3:6].astype(np.float64)


def _coverage_main(args: argparse.Namespace) -> None:
    import cv2

    intr = get_preset(args.camera).intrinsics
    sampler = HandSampler(SamplerConfig())
    sampler.pool(args.split)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    batch = sampler.sample(rng, args.n, intr, args.split)
    elapsed = time.perf_counter() - start
    joints_cam = camera_joints(sampler.layer32, batch)
    lengths = hand_length_mm(sampler.layer64, batch.alpha.astype(np.float64), batch.beta.astype(np.float64))
    cov = coverage(batch, lengths, joints_cam, intr)
    print(f"camera {args.camera} ({intr.width}x{intr.height}), split {args.split}, seed {args.seed}")
    print(format_coverage(cov))
    print(f"sampling speed: {args.n / elapsed:.0f} samples/s ({elapsed:.2f} s for {args.n}, "
          f"{sampler.torch_threads or torch.get_num_threads()} torch thread(s))")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), draw_coverage(cov), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sampler of the synthetic data generator: coverage report.")
    parser.add_argument("--coverage", action="store_true", help="print and draw the coverage of a sample")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("docs/pose_coverage.png"))
    parser.add_argument("--camera", default="d435_848x480", help="intrinsics preset (python -m calib list)")
    parser.add_argument("--split", default="train", choices=SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.coverage:
        parser.print_help()
        sys.exit(2)
    if args.n < 1:
        sys.exit(f"error: --n must be positive, got {args.n}")
    _coverage_main(args)


if __name__ == "__main__":
    main()
