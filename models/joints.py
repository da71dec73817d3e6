"""The canonical 21-joint hand skeleton and its mappings to the benchmarks' layouts.

Joint order (MediaPipe ``HandLandmark`` order), right hand seen from the palm::

                  12
          8       |       16
          |      11       |      20
          7       |      15      |
          |      10       |      19
          6       |      14      |
    4     |       9       |      18
    |     5               13     |
    3                           17
     \\
      2
       \\
        1           0 (wrist)

    0 wrist
    1-4   thumb  CMC, MCP, IP, tip
    5-8   index  MCP, PIP, DIP, tip
    9-12  middle MCP, PIP, DIP, tip
    13-16 ring   MCP, PIP, DIP, tip
    17-20 little MCP, PIP, DIP, tip

This module is the single definition of the joint order: every other module, the
networks' outputs, the app's JSON output and the exported ONNX metadata use it.

Benchmark layouts (label files of NYU, ICVL, MSRA; see ``../shared/data/README.md``)
map onto the canonical joints with a (K, 21) matrix ``M``: ``layout_joints = M @ joints``.
Rows are one-hot where the benchmark's point is one of ours, and a fixed affine combination
of ours (weights summing to 1) where the benchmark defines a point we do not have (NYU's palm points); see
:data:`LAYOUTS` for the exact definitions and their known mismatches.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

NUM_JOINTS = 21


class Joint(IntEnum):
    WRIST = 0
    THUMB_CMC = 1
    THUMB_MCP = 2
    THUMB_IP = 3
    THUMB_TIP = 4
    INDEX_MCP = 5
    INDEX_PIP = 6
    INDEX_DIP = 7
    INDEX_TIP = 8
    MIDDLE_MCP = 9
    MIDDLE_PIP = 10
    MIDDLE_DIP = 11
    MIDDLE_TIP = 12
    RING_MCP = 13
    RING_PIP = 14
    RING_DIP = 15
    RING_TIP = 16
    LITTLE_MCP = 17
    LITTLE_PIP = 18
    LITTLE_DIP = 19
    LITTLE_TIP = 20


class Finger(IntEnum):
    THUMB = 0
    INDEX = 1
    MIDDLE = 2
    RING = 3
    LITTLE = 4


#: Joints of each finger, base to tip (4 each), indexed by :class:`Finger`.
FINGER_JOINTS: tuple[tuple[int, int, int, int], ...] = tuple(
    (1 + 4 * f, 2 + 4 * f, 3 + 4 * f, 4 + 4 * f) for f in range(5)
)

#: Parent of each joint in the kinematic tree (-1 for the root, the wrist).
PARENTS: tuple[int, ...] = (-1,) + tuple(
    0 if j % 4 == 1 else j - 1 for j in range(1, NUM_JOINTS)
)

#: Bones as (parent, child) joint pairs, in joint order of the child.
CONNECTIONS: tuple[tuple[int, int], ...] = tuple(
    (PARENTS[j], j) for j in range(1, NUM_JOINTS)
)

#: Which finger each joint belongs to (-1 for the wrist).
JOINT_FINGER: tuple[int, ...] = (-1,) + tuple((j - 1) // 4 for j in range(1, NUM_JOINTS))

JOINT_NAMES: tuple[str, ...] = tuple(j.name.lower() for j in Joint)

#: Tips, the joints without children.
TIPS: tuple[int, ...] = tuple(f[-1] for f in FINGER_JOINTS)


#: Joints whose mean is the palm centre, the point the hand finder and the crop aim at:
#: the wrist and the four finger MCPs.
PALM_CENTRE_JOINTS: tuple[int, ...] = (Joint.WRIST, Joint.INDEX_MCP, Joint.MIDDLE_MCP, Joint.RING_MCP,
                                       Joint.LITTLE_MCP)


_PALM_INDEX: list[int] = [int(j) for j in PALM_CENTRE_JOINTS]


def palm_centre(joints):
    """(..., 21, 3) joints -> (..., 3) palm centre, same units; numpy arrays or torch tensors."""
    if tuple(joints.shape[-2:]) != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints of shape (..., 21, 3), got {tuple(joints.shape)}")
    return joints[..., _PALM_INDEX, :].mean(-2)


@dataclass(frozen=True)
class Layout:
    """A benchmark's joint layout expressed in canonical joints.

    ``matrix``: (K, 21) float64, each row sums to 1 (weights may be negative); ``layout = matrix @ canonical``.
    ``names``: the benchmark's joint names in its file order.
    ``notes``: where the benchmark's definition differs from ours.
    """

    name: str
    names: tuple[str, ...]
    matrix: np.ndarray
    notes: str

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def from_canonical(self, joints: np.ndarray) -> np.ndarray:
        """(..., 21, 3) canonical joints -> (..., K, 3) joints of this layout."""
        joints = np.asarray(joints)
        if joints.shape[-2:] != (NUM_JOINTS, 3):
            raise ValueError(f"expected joints of shape (..., 21, 3), got {joints.shape}")
        return np.einsum("kj,...jc->...kc", self.matrix, joints)


def _rows(spec: list[dict[int, float]]) -> np.ndarray:
    m = np.zeros((len(spec), NUM_JOINTS), dtype=np.float64)
    for k, row in enumerate(spec):
        for j, w in row.items():
            m[k, j] = w
    return m


def _one(j: int) -> dict[int, float]:
    return {int(j): 1.0}


J = Joint

# NYU 14 (the benchmark subset of NYU's 36 points), file order.
_NYU_NAMES = (
    "little_tip", "little_mid", "ring_tip", "ring_mid", "middle_tip", "middle_mid",
    "index_tip", "index_mid", "thumb_tip", "thumb_mid", "thumb_base",
    "palm_1", "palm_2", "palm_centre",
)
_NYU_SPEC = [
    _one(J.LITTLE_TIP), _one(J.LITTLE_PIP), _one(J.RING_TIP), _one(J.RING_PIP),
    _one(J.MIDDLE_TIP), _one(J.MIDDLE_PIP), _one(J.INDEX_TIP), _one(J.INDEX_PIP),
    # NYU's thumb "mid" and "base" are the IP and MCP: on NYU test frame 1 they lie
    # 25 mm and 72 mm from the tip, where a CMC would be about 115 mm away.
    _one(J.THUMB_TIP), _one(J.THUMB_IP), _one(J.THUMB_MCP),
    # NYU's palm points 1 and 2 lie on the wrist line, on the little-finger and thumb
    # sides, 35 mm apart on frame 1. The canonical set has one wrist point in the middle
    # of that line, so they are the wrist moved sideways by 0.3 x (index MCP - little MCP),
    # about 16 mm for an adult hand.
    {J.WRIST: 1.0, J.LITTLE_MCP: 0.3, J.INDEX_MCP: -0.3},
    {J.WRIST: 1.0, J.INDEX_MCP: 0.3, J.LITTLE_MCP: -0.3},
    # NYU's palm centre lies about 0.65 of the way from the wrist to the MCP row on frame 1.
    {J.WRIST: 0.35, J.INDEX_MCP: 0.1625, J.MIDDLE_MCP: 0.1625, J.RING_MCP: 0.1625, J.LITTLE_MCP: 0.1625},
]

# ICVL 16: palm; thumb root, mid, tip; index root, mid, tip; middle; ring; little.
_ICVL_NAMES = ("palm",) + tuple(
    f"{finger}_{part}"
    for finger in ("thumb", "index", "middle", "ring", "little")
    for part in ("root", "mid", "tip")
)
_ICVL_SPEC = [
    # ICVL's palm point is the centre of the palm, between the wrist and the MCP row.
    {J.WRIST: 0.5, J.INDEX_MCP: 0.125, J.MIDDLE_MCP: 0.125, J.RING_MCP: 0.125, J.LITTLE_MCP: 0.125},
    _one(J.THUMB_MCP), _one(J.THUMB_IP), _one(J.THUMB_TIP),
] + [
    spec
    for finger in (Finger.INDEX, Finger.MIDDLE, Finger.RING, Finger.LITTLE)
    for spec in (
        _one(FINGER_JOINTS[finger][0]),
        # ICVL has one "mid" point per finger; the PIP is the closest of ours.
        _one(FINGER_JOINTS[finger][1]),
        _one(FINGER_JOINTS[finger][3]),
    )
]

# MSRA 21: wrist; index MCP, PIP, DIP, TIP; middle x4; ring x4; little x4; thumb x4.
_MSRA_NAMES = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger in ("index", "middle", "ring", "little", "thumb")
    for part in ("mcp", "pip", "dip", "tip")
)
_MSRA_SPEC = [_one(J.WRIST)] + [
    _one(j)
    for finger in (Finger.INDEX, Finger.MIDDLE, Finger.RING, Finger.LITTLE, Finger.THUMB)
    for j in FINGER_JOINTS[finger]
]

LAYOUTS: dict[str, Layout] = {
    "canonical": Layout("canonical", JOINT_NAMES, np.eye(NUM_JOINTS), "identity"),
    "nyu14": Layout(
        "nyu14", _NYU_NAMES, _rows(_NYU_SPEC),
        "NYU 'mid' points are our PIPs; NYU's thumb mid/base are our thumb IP/MCP. "
        "NYU's two wrist-line palm points and palm centre have no canonical joint: they "
        "are fixed weighted averages of wrist and MCPs (few-mm systematic offsets).",
    ),
    "icvl16": Layout(
        "icvl16", _ICVL_NAMES, _rows(_ICVL_SPEC),
        "ICVL has no wrist and no DIPs; its thumb chain starts at the MCP; its palm point "
        "is the palm centre, a weighted average of wrist and MCPs here.",
    ),
    "msra21": Layout(
        "msra21", _MSRA_NAMES, _rows(_MSRA_SPEC),
        "Same 21 points as ours, in another order (thumb last); MSRA's thumb base is our CMC.",
    ),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown joint layout {name!r}; expected one of {sorted(LAYOUTS)}") from None
