"""Pose bank: 2336 natural hand poses in our θ, converted from Intel's hand-tracking samples.

Source (Apache-2.0, Copyright Intel Corporation; ``../shared/data/intel_hand_model/assets``):
  ``model_hand.json``  17 rigid bones: 0 forearm, 1 palm, 2-4 thumb (metacarpal, proximal,
                       distal), 5-7 index, 8-10 middle, 11-13 ring, 14-16 little. 16 joints
                       ``{rbi0: parent, rbi1: child, p0: the joint in the parent's bone frame,
                       p1 = 0: the joint is the child's bone-frame origin}``; ``controlcages``:
                       quad hulls in the bone frame. Metres; every bone runs along its +z.
  ``animbank.pose``    one pose per line: 17 bones x (x y z in metres, quaternion x y z w),
                       the world pose of each rigid body.

What the data turned out to be (``python -m models.posebank`` re-checks and prints it):
  * metres, in a camera-like frame about 0.5 m away;
  * the stored position is each rigid body's centre of mass, not its bone-frame origin:
    taken as the origin, the joint constraints ``origin_child = origin_parent + R_parent p0``
    are off by 4-90 mm. Offsets c_b (bone frame) solved by linear least squares from the
    joint constraints over all poses (origin = position - R c_b) make them hold to about
    0.1 mm (max about 1.3 mm); c_b lies within 1 mm of each finger cage's centroid;
  * a right hand: with n = (index MCP - little MCP) x (middle MCP - wrist), which points
    palmar for a right hand, every flexed fingertip lies on the +n side (the palm is the
    bone frame's -y side). Nothing is mirrored; a left-handed source would be mirrored in x.

Canonical joints (``models/joints.py``) from the bones, mm, in the source's camera frame:
  wrist = the forearm-palm joint (origin of bone 1); thumb CMC, MCP, IP = origins of bones
  2, 3, 4; finger MCP, PIP, DIP = origins of bones 5-7, 8-10, 11-13, 14-16 (each joint the
  mean of its parent-side and child-side positions); tips = the distal bone's point
  (0, 0, L), L = the centre of its cage's far face along +z minus ``TIP_INSET_MM`` (our tip
  joint sits 3 mm inside the fingertip surface, ``HandSpec.tip_overhang``).

Fit: :func:`models.ik.fit` on all 21 joints with α free (weak prior towards 1) and β = 0.
β stays 0 because the bank is meant to hold poses, not shapes: the Intel hand is one
hand, its palm differs from ours in ways β cannot express (wrist 6 mm further towards
the little finger relative to the MCP row, thumb CMC 9 mm from the wrist), and freeing
β (7 more parameters per pose) lowers the mean residual by only about 0.15 mm. The
residual is dominated by these fixed differences between the two skeletons, not by the
poses; see the module's printout and ``tests/test_posebank.py``.

Measured (this model): mean 3.85 mm per pose (median 3.91, p90 4.10, p99 4.44, max 4.61);
per finger thumb 7.5, index 3.8, middle 2.3, ring 1.7, little 3.0, wrist 7.3 mm. The thumb
is worst because of its geometry, not its limits (widening the four thumb ranges to
±90° changes the mean by < 0.03 mm): Intel's thumb pivots 9 mm from the wrist on a 64 mm
"metacarpal", and its thumb MCPs lie 54.7 ± 1.1 mm from our CMC (18, 22, 6) while our
CMC-MCP bone is 44 mm (α_thumb cannot stretch it alone: it also scales the phalanges,
which match). Thumb lengths (55, 32, 25) with pronation 90° give 3.52 mm (thumb 5.7 mm).

Output ``models/assets/posebank.npz``: ``theta`` (N, 26) float32 (limits hold in float64),
``alpha`` (N, 6) float32, ``residual_mm`` (N,) float32 (mean over the 21 joints),
``source_joints_mm`` (N, 21, 3) float32 and ``note`` (str).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from models import ik
from models.hand_layer import HandLayer
from models.joints import FINGER_JOINTS, NUM_JOINTS, Finger, Joint
from models.skeleton import ARTICULATION, THETA_NAMES, theta_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "intel_hand_model" / "assets"
POSEBANK_PATH = Path(__file__).resolve().parent / "assets" / "posebank.npz"

NUM_BONES = 17
PALM_BONE = 1
#: Intel bones of each finger (thumb first), base to distal, indexed by :class:`Finger`.
FINGER_BONES: tuple[tuple[int, int, int], ...] = ((2, 3, 4), (5, 6, 7), (8, 9, 10), (11, 12, 13), (14, 15, 16))
TIP_INSET_MM = 3.0
_FAR_FACE_MM = 3.0  # cage vertices within this of the cage's largest z form its far face

NOTE = ("Derived from animbank.pose of the Intel RealSense hand-tracking samples (Apache-2.0, "
        "Copyright Intel Corporation; see LICENSE-intel-hand-model and NOTICE). theta/alpha: "
        "models.ik fit (alpha free, beta = 0) of the 21 canonical joints computed from the 17 "
        "Intel bones; source_joints_mm: those joints, mm, in the source's camera frame; "
        "residual_mm: mean joint distance of the fit. Rebuild: python -m models.posebank.")


@dataclass(frozen=True)
class IntelHandModel:
    """What the conversion needs from ``model_hand.json``. Metres, bone frames."""

    joint_offsets: dict[tuple[int, int], np.ndarray]  # (parent, child) -> p0 (3,), parent frame
    tip_lengths: tuple[float, ...]                     # (5,) L of each finger's distal bone

    @property
    def parent(self) -> dict[int, int]:
        return {child: parent for parent, child in self.joint_offsets}


class PoseBank(NamedTuple):
    """The shipped bank; see the module docstring for units and frames."""

    theta: np.ndarray             # (N, 26) float32
    alpha: np.ndarray             # (N, 6) float32
    residual_mm: np.ndarray       # (N,) float32
    source_joints_mm: np.ndarray  # (N, 21, 3) float32
    note: str


class BankSummary(NamedTuple):
    """Fit residuals (mm) and limit contacts of a converted bank."""

    mean: float
    median: float
    p90: float
    p99: float
    max: float
    per_finger: dict[str, float]   # mean over each finger's 4 joints, and the wrist
    per_joint: np.ndarray          # (21,) mean over the poses
    poses_on_limits: int           # poses with at least one articulation on a limit
    limit_counts: dict[str, int]   # "<dof> lo|hi" -> number of poses


# ---------------------------------------------------------------------------------------
# Pure conversion
# ---------------------------------------------------------------------------------------

def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (x, y, z, w) -> (..., 3, 3) rotations (column vectors)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def split_poses(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 119) animbank rows -> positions (N, 17, 3) m and rotations (N, 17, 3, 3)."""
    if raw.ndim != 2 or raw.shape[1] != NUM_BONES * 7:
        raise ValueError(f"expected animbank rows of shape (N, {NUM_BONES * 7}), got {raw.shape}")
    bones = raw.reshape(-1, NUM_BONES, 7)
    return bones[..., :3], quaternion_to_matrix(bones[..., 3:])


def centre_of_mass_offsets(positions: np.ndarray, rotations: np.ndarray,
                           model: IntelHandModel) -> np.ndarray:
    """(17, 3) m: each body's stored position minus its bone-frame origin, in the bone frame.

    Least squares over all poses of the joint constraints
    ``(p_a - R_a c_a) + R_a p0 = p_b - R_b c_b``, linear in c (51 unknowns).
    """
    n = positions.shape[0]
    rows, rhs = [], []
    for (a, b), p0 in model.joint_offsets.items():
        block = np.zeros((n, 3, NUM_BONES * 3))
        block[:, :, 3 * a:3 * a + 3] = rotations[:, a]
        block[:, :, 3 * b:3 * b + 3] = -rotations[:, b]
        rows.append(block.reshape(-1, NUM_BONES * 3))
        rhs.append((positions[:, a] - positions[:, b] + rotations[:, a] @ p0).reshape(-1))
    solution, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    return solution.reshape(NUM_BONES, 3)


def bone_origins(positions: np.ndarray, rotations: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N, 17, 3) m: bone-frame origins from centre-of-mass positions and offsets (17, 3)."""
    return positions - np.einsum("nbij,bj->nbi", rotations, offsets)


def joint_errors_mm(origins: np.ndarray, rotations: np.ndarray, model: IntelHandModel) -> np.ndarray:
    """(N, 16) mm: |origin_parent + R_parent p0 - origin_child| per joint constraint."""
    out = [np.linalg.norm(origins[:, a] + rotations[:, a] @ p0 - origins[:, b], axis=-1)
           for (a, b), p0 in model.joint_offsets.items()]
    return 1e3 * np.stack(out, 1)


def canonical_joints(origins: np.ndarray, rotations: np.ndarray, model: IntelHandModel) -> np.ndarray:
    """(N, 21, 3) mm canonical joints (source frame) from bone origins (N, 17, 3) m."""
    parent = model.parent

    def joint(child: int) -> np.ndarray:
        a = parent[child]
        from_parent = origins[:, a] + rotations[:, a] @ model.joint_offsets[(a, child)]
        return 0.5 * (from_parent + origins[:, child])

    out = np.zeros((origins.shape[0], NUM_JOINTS, 3))
    out[:, Joint.WRIST] = joint(PALM_BONE)
    for finger, bones in enumerate(FINGER_BONES):
        chain = FINGER_JOINTS[finger]
        for k, bone in enumerate(bones):
            out[:, chain[k]] = joint(bone)
        distal = bones[-1]
        out[:, chain[3]] = origins[:, distal] + rotations[:, distal][..., 2] * model.tip_lengths[finger]
    return 1e3 * out


def palmar_side_fraction(joints: np.ndarray) -> float:
    """Fraction of fingertips (index..little) on the +n side of the MCP row, with
    n = (index MCP - little MCP) x (middle MCP - wrist): palmar for a right hand. Near 1 for
    a right hand in natural (mostly flexed) poses, near 0 for a left hand."""
    n = np.cross(joints[:, Joint.INDEX_MCP] - joints[:, Joint.LITTLE_MCP],
                 joints[:, Joint.MIDDLE_MCP] - joints[:, Joint.WRIST])
    sides = [np.einsum("ni,ni->n", joints[:, FINGER_JOINTS[f][3]] - joints[:, FINGER_JOINTS[f][0]], n) > 0
             for f in (Finger.INDEX, Finger.MIDDLE, Finger.RING, Finger.LITTLE)]
    return float(np.mean(sides))


def to_right_hand(joints: np.ndarray) -> tuple[np.ndarray, bool]:
    """Mirror x if the joints are a left hand; returns (joints, mirrored)."""
    if palmar_side_fraction(joints) >= 0.5:
        return joints, False
    return joints * np.array([-1.0, 1.0, 1.0]), True


def summarize(theta: np.ndarray, residual_per_joint_mm: np.ndarray) -> BankSummary:
    """Residual distribution and limit contacts. theta (N, 26) rad; residuals (N, 21) mm."""
    per_pose = residual_per_joint_mm.mean(1)
    per_finger = {f.name.lower(): float(residual_per_joint_mm[:, list(FINGER_JOINTS[f])].mean()) for f in Finger}
    per_finger["wrist"] = float(residual_per_joint_mm[:, Joint.WRIST].mean())
    lo, hi = theta_limits()
    arts = theta[:, ARTICULATION].astype(np.float64)
    tol = 1e-6  # rad: float32 storage of a value on the limit
    on_lo = np.abs(arts - lo[ARTICULATION]) < tol
    on_hi = np.abs(arts - hi[ARTICULATION]) < tol
    counts = {}
    for i in range(arts.shape[1]):
        name = THETA_NAMES[ARTICULATION][i]
        for side, hits in (("lo", on_lo[:, i]), ("hi", on_hi[:, i])):
            if hits.any():
                counts[f"{name} {side}"] = int(hits.sum())
    return BankSummary(float(per_pose.mean()), float(np.median(per_pose)), float(np.percentile(per_pose, 90)),
                       float(np.percentile(per_pose, 99)), float(per_pose.max()), per_finger,
                       residual_per_joint_mm.mean(0), int((on_lo | on_hi).any(1).sum()), counts)


def within_limits_float32(theta: np.ndarray) -> np.ndarray:
    """θ (N, 26) float64 -> float32 whose articulations satisfy the float64 limits exactly."""
    lo, hi = theta_limits()
    out = theta.astype(np.float32)
    art = out[:, ARTICULATION]
    lo32 = np.float32(lo[ARTICULATION])
    hi32 = np.float32(hi[ARTICULATION])
    lo32 = np.where(lo32.astype(np.float64) < lo[ARTICULATION], np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = np.where(hi32.astype(np.float64) > hi[ARTICULATION], np.nextafter(hi32, np.float32(-np.inf)), hi32)
    out[:, ARTICULATION] = np.clip(art, lo32, hi32)
    return out


# ---------------------------------------------------------------------------------------
# IO at the edges
# ---------------------------------------------------------------------------------------

def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"Intel hand model file not found: {path}. Pass --source with the folder holding "
            f"model_hand.json and animbank.pose (default {DEFAULT_SOURCE}).")
    return path


def load_intel_model(source: Path) -> IntelHandModel:
    """Joint offsets and fingertip lengths from ``source/model_hand.json``."""
    data = json.loads(_require(source / "model_hand.json").read_text())
    if len(data["controlcages"]) != NUM_BONES or len(data["joints"]) != NUM_BONES - 1:
        raise ValueError(f"expected {NUM_BONES} control cages and {NUM_BONES - 1} joints, got "
                         f"{len(data['controlcages'])} and {len(data['joints'])}")
    offsets = {(int(j["rbi0"]), int(j["rbi1"])): np.asarray(j["p0"], dtype=np.float64) for j in data["joints"]}
    lengths = []
    for bones in FINGER_BONES:
        z = np.asarray(data["controlcages"][bones[-1]]["verts"], dtype=np.float64)[:, 2]
        far = z[z > z.max() - _FAR_FACE_MM * 1e-3]
        lengths.append(float(far.mean()) - TIP_INSET_MM * 1e-3)
    return IntelHandModel(offsets, tuple(lengths))


def read_animbank(source: Path) -> np.ndarray:
    """(N, 119) float64 rows of ``source/animbank.pose``."""
    raw = np.loadtxt(_require(source / "animbank.pose"), dtype=np.float64, ndmin=2)
    split_poses(raw)  # shape check
    return raw


def load_posebank(path: str | Path = POSEBANK_PATH) -> PoseBank:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose bank not found: {path} (rebuild it with `python -m models.posebank`)")
    with np.load(path) as z:
        return PoseBank(z["theta"], z["alpha"], z["residual_mm"], z["source_joints_mm"], str(z["note"]))


# ---------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------

class Conversion(NamedTuple):
    joints_mm: np.ndarray          # (N, 21, 3) canonical joints, source frame
    constraint_error_mm: np.ndarray  # (N, 16) joint-constraint error after the offsets
    raw_constraint_error_mm: np.ndarray  # (N, 16) the same with the stored positions as origins
    offsets: np.ndarray            # (17, 3) m centre-of-mass offsets
    palmar_fraction: float         # see palmar_side_fraction, before any mirroring
    mirrored: bool


def convert(raw: np.ndarray, model: IntelHandModel) -> Conversion:
    """animbank rows (N, 119) -> canonical joints; pure."""
    positions, rotations = split_poses(raw)
    offsets = centre_of_mass_offsets(positions, rotations, model)
    origins = bone_origins(positions, rotations, offsets)
    joints = canonical_joints(origins, rotations, model)
    palmar = palmar_side_fraction(joints)
    joints, mirrored = to_right_hand(joints)
    return Conversion(joints, joint_errors_mm(origins, rotations, model),
                      joint_errors_mm(positions, rotations, model), offsets, palmar, mirrored)


def fit_bank(joints_mm: np.ndarray, layer: HandLayer | None = None,
             config: ik.IKConfig | None = None) -> ik.IKResult:
    """IK of every pose: α free, β = 0, all 21 joints weighted equally."""
    layer = layer or HandLayer(dtype=torch.float64)
    return ik.fit(torch.as_tensor(joints_mm, dtype=torch.float64), layer, fit_alpha=True, config=config)


def format_summary(s: BankSummary) -> str:
    fingers = ", ".join(f"{k} {v:.2f}" for k, v in s.per_finger.items())
    joints = " ".join(f"{v:.1f}" for v in s.per_joint)
    limits = ", ".join(f"{k}: {v}" for k, v in sorted(s.limit_counts.items(), key=lambda kv: -kv[1])) or "none"
    return (f"fit residual (mean joint distance per pose, mm): mean {s.mean:.2f}, median {s.median:.2f}, "
            f"p90 {s.p90:.2f}, p99 {s.p99:.2f}, max {s.max:.2f}\n"
            f"per finger (mean over its 4 joints, mm): {fingers}\n"
            f"per joint (mm, canonical order): {joints}\n"
            f"poses touching a limit: {s.poses_on_limits} ({limits})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild models/assets/posebank.npz from Intel's animbank.pose.")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="folder with model_hand.json and animbank.pose")
    parser.add_argument("--out", type=Path, default=POSEBANK_PATH)
    args = parser.parse_args(argv)
    try:
        model = load_intel_model(args.source)
        raw = read_animbank(args.source)
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    conv = convert(raw, model)
    wrist_m = np.linalg.norm(conv.joints_mm[:, Joint.WRIST], axis=-1) / 1e3
    index_mm = np.linalg.norm(conv.joints_mm[:, Joint.INDEX_PIP] - conv.joints_mm[:, Joint.INDEX_MCP], axis=-1)
    print(f"read {raw.shape[0]} poses from {args.source}: metres (wrist {wrist_m.min():.2f}-{wrist_m.max():.2f} m "
          f"from the source origin, index proximal phalanx {index_mm.mean():.1f} mm)")
    print(f"joint constraints with the stored positions as bone origins: mean "
          f"{conv.raw_constraint_error_mm.mean():.1f} mm; after the centre-of-mass offsets: mean "
          f"{conv.constraint_error_mm.mean():.3f} mm, max {conv.constraint_error_mm.max():.2f} mm")
    print(f"handedness: {'left, mirrored in x' if conv.mirrored else 'right (not mirrored)'} "
          f"(fingertips on the palmar side for a right hand: {100 * conv.palmar_fraction:.1f} %); "
          f"tip lengths {', '.join(f'{1e3 * v:.1f}' for v in model.tip_lengths)} mm")
    start = time.perf_counter()
    result = fit_bank(conv.joints_mm)
    elapsed = time.perf_counter() - start
    theta = within_limits_float32(result.theta.numpy())
    alpha = result.alpha.numpy().astype(np.float32)
    # Residuals of what is stored (float32 θ, α), so the file is self-consistent.
    layer = HandLayer(dtype=torch.float64)
    with torch.no_grad():
        fk = layer(torch.as_tensor(theta, dtype=torch.float64), torch.as_tensor(alpha, dtype=torch.float64)).joints
    source = conv.joints_mm.astype(np.float32)
    per_joint = np.linalg.norm(fk.numpy() - source.astype(np.float64), axis=-1)
    summary = summarize(theta, per_joint)
    print(f"IK: {elapsed:.1f} s ({1e3 * elapsed / len(theta):.1f} ms per pose); "
          f"alpha mean {np.round(alpha.mean(0, dtype=np.float64), 3).tolist()} "
          "(palm, thumb, index, middle, ring, little)")
    print(format_summary(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, theta=theta, alpha=alpha, residual_mm=per_joint.mean(1).astype(np.float32),
                        source_joints_mm=source, note=np.array(NOTE))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
