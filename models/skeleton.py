"""The kinematic parameters of the hand model: pose θ (26 DoF), bone scales α (6), shape β (7).

Hand frame (the root joint's frame, right hand): origin at the wrist joint, x radial
(towards the thumb), y distal (wrist towards the middle finger), z palmar (out of the
palm); millimetres. Left hands are handled by mirroring the input (app), not here.

Pose θ: (..., 26) float, as in DeepHPS (Malik et al. 2018):
    θ[0:3]   global rotation, axis-angle (radians), camera_from_hand rotation
    θ[3:6]   global translation (mm): the wrist position in the camera frame
    θ[6:26]  20 articulations (radians), four per finger, thumb first:
             thumb  CMC flexion, CMC abduction, MCP flexion, IP flexion
             finger MCP flexion, MCP abduction, PIP flexion, DIP flexion
Flexion is a rotation about the joint's local +x: positive curls the finger towards the
palm (+z). Abduction is a rotation about the joint's local -z: positive moves the finger
towards the thumb side (+x) for every finger. A base joint applies abduction first, then
flexion about the abducted axis.

Bone scales α: (..., 6), multiplicative, 1 = template; palm, thumb, index, middle, ring,
little. The palm scale stretches the wrist-to-CMC/MCP bones, a finger's scale its three
phalanges.

Shape β: (..., 7), the weights of DeepHPS's morph targets Ψ(β) = b0 + Σ β_t (b_t − b0),
0 = neutral adult hand. See ``models/handmesh.py`` for what one unit of each does.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from models.joints import FINGER_JOINTS, NUM_JOINTS, Finger

THETA_DIM = 26
NUM_ARTICULATIONS = 20
GLOBAL_ROT = slice(0, 3)
GLOBAL_TRANS = slice(3, 6)
ARTICULATION = slice(6, 26)

ALPHA_NAMES: tuple[str, ...] = ("palm", "thumb", "index", "middle", "ring", "little")
BETA_NAMES: tuple[str, ...] = (
    "length", "mass", "size", "palm_length", "finger_spread", "finger_length", "tip_size",
)
ALPHA_DIM = len(ALPHA_NAMES)
BETA_DIM = len(BETA_NAMES)

AAOS = ("AAOS, Joint Motion: Method of Measuring and Recording (1965), average active "
        "range of motion")
INTEL = "Intel RealSense hand model, ../shared/data/intel_hand_model/assets/model_hand.json"


class DoF(NamedTuple):
    """One articulation: a rotation of ``joint`` about a local axis, within [lo, hi] degrees."""

    name: str
    joint: int
    kind: str  # "flex" (about local +x) or "abd" (about local -z)
    lo_deg: float
    hi_deg: float
    source: str


def _finger_dofs(finger: Finger, abd_lo: float, abd_hi: float) -> tuple[DoF, ...]:
    mcp, pip, dip, _ = FINGER_JOINTS[finger]
    n = finger.name.lower()
    return (
        DoF(f"{n}_mcp_flex", mcp, "flex", -30.0, 100.0,
            f"{AAOS}: 90 flexion, hyperextension up to 45; flexion widened to 100 as in {INTEL}; "
            "hyperextension limited to 30 as seen in natural poses"),
        DoF(f"{n}_mcp_abd", mcp, "abd", abd_lo, abd_hi,
            f"{AAOS}: about 20 each way for the index and little finger, less for middle and "
            f"ring; cf. {INTEL} (-10..20, -10..10, -30..10)"),
        DoF(f"{n}_pip_flex", pip, "flex", -10.0, 110.0,
            f"{AAOS}: 100 flexion ({INTEL}: 100); 10 more for a tight fist; 10 hyperextension"),
        DoF(f"{n}_dip_flex", dip, "flex", -20.0, 90.0,
            f"{AAOS}: 90 flexion, 10-20 hyperextension ({INTEL}: -5..90)"),
    )


_THUMB = FINGER_JOINTS[Finger.THUMB]

#: The 20 articulations in θ[6:26] order.
ARTICULATIONS: tuple[DoF, ...] = (
    DoF("thumb_cmc_flex", _THUMB[0], "flex", -30.0, 60.0,
        f"{AAOS}: CMC flexion 15 / extension 20 measured from a different zero; widened to "
        "cover opposition and the Intel pose bank"),
    DoF("thumb_cmc_abd", _THUMB[0], "abd", -30.0, 45.0,
        f"{AAOS}: CMC abduction up to 70 from the adducted thumb; our zero is a relaxed, "
        "partly abducted thumb"),
    DoF("thumb_mcp_flex", _THUMB[1], "flex", -20.0, 70.0,
        f"{AAOS}: thumb MCP flexion 50, hyperextension up to 20; flexion widened to 70 "
        "because the Intel pose bank reaches it"),
    DoF("thumb_ip_flex", _THUMB[2], "flex", -25.0, 90.0,
        f"{AAOS}: thumb IP flexion 80, hyperextension 20 ({INTEL}: 0..80)"),
    *_finger_dofs(Finger.INDEX, -20.0, 25.0),
    *_finger_dofs(Finger.MIDDLE, -20.0, 15.0),
    *_finger_dofs(Finger.RING, -20.0, 15.0),
    *_finger_dofs(Finger.LITTLE, -30.0, 15.0),
)
assert len(ARTICULATIONS) == NUM_ARTICULATIONS

THETA_NAMES: tuple[str, ...] = (
    "rot_x", "rot_y", "rot_z", "trans_x", "trans_y", "trans_z",
) + tuple(d.name for d in ARTICULATIONS)


def theta_limits() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of θ, (26,) float64 each, radians (±inf for the global part)."""
    lo = np.full(THETA_DIM, -np.inf)
    hi = np.full(THETA_DIM, np.inf)
    lo[ARTICULATION] = [math.radians(d.lo_deg) for d in ARTICULATIONS]
    hi[ARTICULATION] = [math.radians(d.hi_deg) for d in ARTICULATIONS]
    return lo, hi


#: Which α scales the bone that ends at each joint (-1: the wrist has no bone).
ALPHA_OF_JOINT: tuple[int, ...] = tuple(
    -1 if j == 0 else (0 if (j - 1) % 4 == 0 else 1 + (j - 1) // 4) for j in range(NUM_JOINTS)
)

#: The joints that rotate (each moves the segment to its child), in joint order.
ARTICULATED_JOINTS: tuple[int, ...] = tuple(
    j for f in FINGER_JOINTS for j in f[:3]
)


def articulation_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index and axis tables that turn θ[6:26] into two rotations per articulated joint.

    Returns ``(first_index, first_axis, second_index, second_axis)``: for each of the 15
    articulated joints, the index into θ[6:26] of its first and second rotation (20 means
    "none": a zero angle appended to θ) and their unit axes (15, 3) in the joint's frame.
    A joint's articulation is ``rot(first) @ rot(second)``: abduction then flexion for
    base joints, flexion alone otherwise.
    """
    axes = {"flex": (1.0, 0.0, 0.0), "abd": (0.0, 0.0, -1.0)}
    first_index, first_axis, second_index, second_axis = [], [], [], []
    for j in ARTICULATED_JOINTS:
        dofs = {d.kind: i for i, d in enumerate(ARTICULATIONS) if d.joint == j}
        first_index.append(dofs.get("abd", NUM_ARTICULATIONS))
        first_axis.append(axes["abd"])
        second_index.append(dofs["flex"])
        second_axis.append(axes["flex"])
    return (np.asarray(first_index), np.asarray(first_axis, dtype=np.float64),
            np.asarray(second_index), np.asarray(second_axis, dtype=np.float64))
