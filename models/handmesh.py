"""Procedural hand mesh: the generator behind the hand model's template and morph targets.

Hand frame as in ``models/skeleton.py``: wrist at the origin, x radial, y distal, z palmar;
millimetres; right hand; rest pose = flat open hand.

The generator turns a :class:`HandSpec` (anthropometric measurements) into the rest-pose
skeleton (21 joints) and a closed-tube triangle mesh: a palm, five fingers with knuckle
bulges and rounded tips, and a forearm stub. Every vertex is written as

    vertex = anchors @ rest_joints + offset                                    (1)

where ``anchors`` (V, 21) is an affine combination of rest joints (rows sum to 1: a
finger vertex interpolates the two joints of its segment, a palm vertex the wrist and the
outer MCPs, a forearm vertex the wrist) and ``offset`` (V, 3) is its displacement from
that point in the hand frame. The hand layer uses (1) so that bone scales α stretch the
surface along the bones.

Shape β (DeepHPS's seven morph targets): :func:`spec_from_beta` changes the measurements
by one unit of each parameter; :func:`build_model_asset` renders the neutral hand b0 and
the seven targets b_t = generator(β = e_t) and stores joints and offsets of each, so that
the layer's Ψ(β) = b0 + Σ β_t (b_t − b0) is linear exactly as in the paper. One unit:

    length         bones of palm and fingers +12 %
    mass           girth (finger and palm thickness, palm overhang, forearm) +20 %
    size           everything +25 % (a child's 120 mm hand is about β_size = −1.4,
                   a 230 mm adult hand about +1; neutral hand length is about 186 mm)
    palm_length    wrist-to-MCP and wrist-to-CMC bones +15 %
    finger_spread  distance between the MCPs across the palm +20 %
    finger_length  phalanges of all five fingers +15 %
    tip_size       radius of the distal phalanges and fingertips +25 %

Neutral measurements: adult hand length ~186 mm and breadth ~84 mm, between the male and
female means of US Army anthropometry (ANSUR II, Gordon et al. 2014: hand length 193.8 /
181.6 mm, breadth 89.6 / 79.1 mm); phalanx proportions after Buryanov & Kotiuk,
"Proportions of hand segments", Int. J. Morphol. 28(3), 2010.

``python -m models.handmesh`` rebuilds ``models/assets/hand_model.npz`` and prints its size.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.joints import FINGER_JOINTS, NUM_JOINTS, PARENTS, Finger, Joint
from models.skeleton import BETA_DIM, BETA_NAMES

ASSET_PATH = Path(__file__).resolve().parent / "assets" / "hand_model.npz"
ASSET_VERSION = 1

#: Skinning bones: the 21 joint frames (tips carry no weight) and the forearm.
FOREARM_BONE = NUM_JOINTS
NUM_BONES = NUM_JOINTS + 1

_AROUND_FINGER = 12
_AROUND_PALM = 28
_AROUND_ARM = 16


@dataclass(frozen=True)
class FingerSpec:
    base_xyz: tuple[float, float, float]  # mm, CMC (thumb) or MCP position
    lengths: tuple[float, float, float]   # mm, joint-to-joint phalanx lengths, base to tip
    radii: tuple[float, float, float, float]  # mm, half-width at base, middle, distal joint, tip
    splay_deg: float                       # in the palm plane, + towards the thumb
    elevation_deg: float = 0.0             # towards the palm (+z)
    pronation_deg: float = 0.0             # twist about the finger axis


def _default_fingers() -> tuple[FingerSpec, ...]:
    return (
        FingerSpec((18.0, 22.0, 6.0), (55.0, 32.0, 25.0), (13.0, 10.0, 9.5, 8.5), 36.0, 14.0, 90.0),
        FingerSpec((26.0, 86.0, 0.0), (40.0, 24.0, 20.0), (10.0, 9.0, 8.2, 7.2), 6.0),
        FingerSpec((7.0, 90.0, 0.0), (45.0, 28.0, 21.0), (10.5, 9.4, 8.5, 7.4), 0.0),
        FingerSpec((-11.0, 86.0, 0.0), (42.0, 27.0, 21.0), (10.0, 9.0, 8.2, 7.1), -6.0),
        FingerSpec((-27.0, 76.0, 0.0), (33.0, 19.0, 19.0), (8.8, 7.8, 7.2, 6.4), -14.0),
    )


@dataclass(frozen=True)
class HandSpec:
    """Measurements of one hand, mm. Defaults: the neutral adult hand b0."""

    fingers: tuple[FingerSpec, ...] = field(default_factory=_default_fingers)
    thickness_ratio: float = 0.88        # finger half-thickness / half-width
    palm_half_thickness: float = 14.0    # at the middle of the palm
    palm_overhang: float = 11.0          # palm edge beyond the outer MCP centres
    wrist_half_width: float = 27.0
    forearm_length: float = 220.0
    forearm_radii: tuple[float, float] = (28.0, 34.0)  # half-width at the wrist and far end
    forearm_thickness_ratio: float = 0.68
    tip_overhang: float = 3.0            # fingertip surface beyond the tip joint


def spec_from_beta(beta: np.ndarray | list[float], base: HandSpec | None = None) -> HandSpec:
    """Measurements for shape parameters β (7,), applied multiplicatively to ``base``."""
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (BETA_DIM,):
        raise ValueError(f"expected β of shape ({BETA_DIM},), got {beta.shape}")
    b = dict(zip(BETA_NAMES, beta.tolist()))
    base = base or HandSpec()
    size = 1.0 + 0.25 * b["size"]
    length = 1.0 + 0.12 * b["length"]
    mass = 1.0 + 0.20 * b["mass"]
    palm = 1.0 + 0.15 * b["palm_length"]
    spread = 1.0 + 0.20 * b["finger_spread"]
    flen = 1.0 + 0.15 * b["finger_length"]
    tip = 1.0 + 0.25 * b["tip_size"]
    fingers = []
    for i, f in enumerate(base.fingers):
        x, y, z = f.base_xyz
        if i != Finger.THUMB:
            x = x * spread  # MCP spacing across the palm (x = 0 is the palm's middle)
        base_xyz = (x * size, y * size * length * palm, z * size)
        lengths = tuple(v * size * length * flen for v in f.lengths)
        r0, r1, r2, r3 = (v * size * mass for v in f.radii)
        fingers.append(dataclasses.replace(
            f, base_xyz=base_xyz, lengths=lengths, radii=(r0, r1, r2 * tip, r3 * tip)))
    return dataclasses.replace(
        base,
        fingers=tuple(fingers),
        palm_half_thickness=base.palm_half_thickness * size * mass,
        palm_overhang=base.palm_overhang * size * mass,
        wrist_half_width=base.wrist_half_width * size * mass,
        forearm_length=base.forearm_length * size,
        forearm_radii=tuple(r * size * mass for r in base.forearm_radii),
        tip_overhang=base.tip_overhang * size * tip,
    )


def _finger_frame(f: FingerSpec) -> np.ndarray:
    """Rest rotation (3, 3) of a finger's joints: columns x (flexion axis), y (along), z (pad)."""
    s, e = math.radians(f.splay_deg), math.radians(f.elevation_deg)
    y = np.array([math.sin(s) * math.cos(e), math.cos(s) * math.cos(e), math.sin(e)])
    z0 = np.array([0.0, 0.0, 1.0]) - y[2] * y
    z0 /= np.linalg.norm(z0)
    x0 = np.cross(y, z0)
    p = math.radians(f.pronation_deg)
    z = math.cos(p) * z0 - math.sin(p) * x0
    x = np.cross(y, z)
    return np.stack((x, y, z), 1)


def rest_skeleton(spec: HandSpec) -> tuple[np.ndarray, np.ndarray]:
    """Rest joints (21, 3) mm and rest rotations hand_from_joint (21, 3, 3)."""
    joints = np.zeros((NUM_JOINTS, 3))
    rotations = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for fi, f in enumerate(spec.fingers):
        frame = _finger_frame(f)
        chain = FINGER_JOINTS[fi]
        joints[chain[0]] = f.base_xyz
        for k in range(1, 4):
            joints[chain[k]] = joints[chain[k - 1]] + f.lengths[k - 1] * frame[:, 1]
        rotations[list(chain)] = frame
    return joints, rotations


@dataclass(frozen=True)
class MeshTopology:
    """What the generator decides once, from the neutral hand: faces, anchors, weights."""

    faces: np.ndarray    # (F, 3) int32, counter-clockwise seen from outside
    anchors: np.ndarray  # (V, 21) float64, rows sum to 1
    weights: np.ndarray  # (V, 22) float64, skinning weights, rows sum to 1
    part: np.ndarray     # (V,) int8: 0 palm, 1-5 thumb..little, 6 forearm


class _MeshBuilder:
    """Collects rings of vertices (with anchors, weights) and stitches them into tubes."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.anchors: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.part: list[int] = []
        self.faces: list[tuple[int, int, int]] = []

    def add(self, xyz: np.ndarray, anchor: np.ndarray, weight: np.ndarray, part: int) -> int:
        self.verts.append(np.asarray(xyz, dtype=np.float64))
        self.anchors.append(anchor)
        self.weights.append(weight)
        self.part.append(part)
        return len(self.verts) - 1

    def stitch(self, ring_a: list[int], ring_b: list[int]) -> None:
        n = len(ring_a)
        for k in range(n):
            a0, a1, b0, b1 = ring_a[k], ring_a[(k + 1) % n], ring_b[k], ring_b[(k + 1) % n]
            self.faces += [(a0, b0, a1), (a1, b0, b1)]

    def fan(self, ring: list[int], apex: int, outward: bool) -> None:
        n = len(ring)
        for k in range(n):
            a0, a1 = ring[k], ring[(k + 1) % n]
            self.faces.append((a0, apex, a1) if outward else (a0, a1, apex))

    def zip_close(self, ring: list[int], outward: bool) -> None:
        """Close a ring whose vertex k mirrors vertex n-k (a flattened end) with a strip
        between its two halves, both running from vertex 0 to vertex n/2."""
        n = len(ring)
        upper = [ring[k] for k in range(n // 2 + 1)]
        lower = [ring[(n - k) % n] for k in range(n // 2 + 1)]
        for k in range(n // 2):
            for t in ((upper[k], upper[k + 1], lower[k + 1]), (upper[k], lower[k + 1], lower[k])):
                if len(set(t)) == 3:
                    self.faces.append((t[0], t[2], t[1]) if outward else t)


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _one_hot(n: int, idx: int) -> np.ndarray:
    v = np.zeros(n)
    v[idx] = 1.0
    return v


_BLEND_MM = 7.0  # half-width of the skinning blend around each joint


def generate(spec: HandSpec) -> tuple[np.ndarray, np.ndarray, MeshTopology]:
    """Rest joints (21, 3), rest vertices (V, 3) and the topology of the hand ``spec``."""
    joints, rotations = rest_skeleton(spec)
    mb = _MeshBuilder()
    _palm(mb, spec, joints)
    for fi, f in enumerate(spec.fingers):
        _finger(mb, spec, fi, f, joints, rotations[FINGER_JOINTS[fi][0]])
    _forearm(mb, spec)
    topo = MeshTopology(
        faces=np.asarray(mb.faces, dtype=np.int32),
        anchors=np.stack(mb.anchors),
        weights=np.stack(mb.weights),
        part=np.asarray(mb.part, dtype=np.int8),
    )
    return joints, np.stack(mb.verts), topo


def _finger(mb: _MeshBuilder, spec: HandSpec, fi: int, f: FingerSpec, joints: np.ndarray,
            frame: np.ndarray) -> None:
    chain = FINGER_JOINTS[fi]
    x_axis, y_axis, z_axis = frame[:, 0], frame[:, 1], frame[:, 2]
    ratio = spec.thickness_ratio
    # Stations: (segment k in 0..2, t along it, half-width, knuckle bulge).
    r = f.radii
    start_t = -0.45 if fi == Finger.THUMB else -0.25
    stations = [
        (0, start_t, r[0] * 1.05, 0.0), (0, 0.0, r[0], 1.0), (0, 0.3, 0.5 * (r[0] + r[1]) * 0.97, 0.0),
        (0, 0.65, r[1] * 0.97, 0.0), (1, 0.0, r[1], 1.0), (1, 0.35, 0.5 * (r[1] + r[2]) * 0.96, 0.0),
        (1, 0.7, r[2] * 0.98, 0.0), (2, 0.0, r[2], 1.0), (2, 0.4, 0.5 * (r[2] + r[3]) * 1.02, 0.0),
        (2, 0.75, r[3] * 1.03, 0.0),
    ]
    n = _AROUND_FINGER
    phis = 2.0 * np.pi * np.arange(n) / n
    prev: list[int] | None = None

    def weight_at(seg: int, dist: float, seg_len: float) -> np.ndarray:
        bone = chain[seg]
        parent_bone = PARENTS[bone]  # wrist (palm) for the base segment
        w = np.zeros(22)
        a = float(_smoothstep(0.5 + 0.5 * dist / _BLEND_MM))  # share of this bone vs the parent
        w[bone] += a
        w[parent_bone] += 1.0 - a
        if seg < 2:  # blend into the next segment near the far joint
            c = float(_smoothstep(0.5 + 0.5 * (dist - seg_len) / _BLEND_MM))
            w *= 1.0 - c
            w[chain[seg + 1]] += c
        return w

    for seg, t, half_w, bulge in stations:
        p, c = chain[seg], chain[seg + 1]
        seg_len = f.lengths[seg]
        centre = (1.0 - t) * joints[p] + t * joints[c]
        anchor = np.zeros(NUM_JOINTS)
        anchor[p], anchor[c] = 1.0 - t, t
        w = weight_at(seg, t * seg_len, seg_len)
        ring = []
        for phi in phis:
            # Ellipse in the finger's x/z plane; knuckles bulge on the back (-z) side.
            back = max(0.0, -math.sin(phi))
            hw = half_w * (1.0 + 0.07 * bulge * back)
            off = hw * math.cos(phi) * x_axis + hw * ratio * math.sin(phi) * z_axis
            off += 0.6 * (1.0 - back) * z_axis * (half_w / 9.0)  # fleshier pad side
            ring.append(mb.add(centre + off, anchor, w, fi + 1))
        if prev is not None:
            mb.stitch(prev, ring)
        else:
            start_ring = ring
        prev = ring
    # Rounded tip: rings shrinking onto a hemisphere around the distal end.
    tip = joints[chain[3]]
    r_tip = f.radii[3] * 1.03
    centre = tip - (r_tip - spec.tip_overhang) * y_axis
    anchor = _one_hot(NUM_JOINTS, chain[3])
    w = _one_hot(22, chain[2])
    assert prev is not None
    for ang in (25.0, 50.0, 72.0):
        a = math.radians(ang)
        ring = []
        for phi in phis:
            hw = r_tip * math.cos(a)
            off = hw * math.cos(phi) * x_axis + hw * ratio * math.sin(phi) * z_axis
            off += r_tip * math.sin(a) * y_axis + (centre - tip)
            ring.append(mb.add(tip + off, anchor, w, fi + 1))
        mb.stitch(prev, ring)
        prev = ring
    apex = mb.add(tip + (centre - tip) + r_tip * y_axis, anchor, w, fi + 1)
    mb.fan(prev, apex, outward=True)
    # Close the base (inside the palm) with a fan so the tube is watertight.
    base_centre = (1.0 - start_t) * joints[chain[0]] + start_t * joints[chain[1]]
    base_anchor = np.zeros(NUM_JOINTS)
    base_anchor[chain[0]], base_anchor[chain[1]] = 1.0 - start_t, start_t
    base = mb.add(base_centre - 0.5 * f.radii[0] * y_axis, base_anchor,
                  weight_at(0, start_t * f.lengths[0], f.lengths[0]), fi + 1)
    mb.fan(start_ring, base, outward=False)


def _palm(mb: _MeshBuilder, spec: HandSpec, joints: np.ndarray) -> None:
    """Rounded-box palm from below the wrist to the knuckles, anchored to wrist, index and little MCP."""
    mcp = [joints[FINGER_JOINTS[f][0]] for f in (Finger.INDEX, Finger.MIDDLE, Finger.RING, Finger.LITTLE)]
    ix, lx = mcp[0][0], mcp[3][0]
    # Affine palm coordinates: point = wrist + a (index - wrist) + b (little - wrist).
    basis = np.stack((joints[Joint.INDEX_MCP][:2], joints[Joint.LITTLE_MCP][:2]), 1)
    basis_inv = np.linalg.inv(basis)
    mcp_x = np.array([m[0] for m in mcp])[::-1]
    mcp_y = np.array([m[1] for m in mcp])[::-1]
    n = _AROUND_PALM
    phis = 2.0 * np.pi * np.arange(n) / n
    # Superellipse cross-section (exponent 2/p with p = 4: a rounded box).
    cos_p = np.sign(np.cos(phis)) * np.abs(np.cos(phis)) ** 0.5
    sin_p = np.sign(np.sin(phis)) * np.abs(np.sin(phis)) ** 0.5
    # Stations: the first is 8 mm below the wrist (a y, in mm), the others fractions of the
    # way from the wrist to the knuckle line.
    stations = np.array([-8.0, 0.0, 0.12, 0.25, 0.4, 0.55, 0.7, 0.82, 0.92, 1.0])
    prev = None
    rings = []
    for s in stations:
        ring = []
        for cp, sp in zip(cos_p, sin_p):
            # Width grows from the wrist to the MCP row; the top follows the MCP arch.
            side_l = lx - spec.palm_overhang
            side_i = ix + spec.palm_overhang
            u = 0.5 * (1.0 + cp)  # 0: little side, 1: index side
            frac = max(float(s), 0.0)  # 0 at the wrist (and the station below it), 1 at the knuckles
            wrist_l, wrist_i = -spec.wrist_half_width, spec.wrist_half_width
            xl = wrist_l + (side_l - wrist_l) * min(1.0, frac * 1.6)
            xi = wrist_i + (side_i - wrist_i) * min(1.0, frac * 1.5)
            x = xl + (xi - xl) * u
            y_top = float(np.interp(np.clip(x, lx, ix), mcp_x, mcp_y)) + 4.0
            y = s if s < 0 else frac * y_top
            half_t = spec.palm_half_thickness * (0.85 + 0.15 * math.sin(math.pi * min(frac, 1.0)))
            if frac > 0.92:  # taper into the knuckle ridge
                half_t *= 1.0 - 2.5 * (frac - 0.92)
            z = half_t * sp + 1.5 * max(sp, 0.0)  # fleshier palmar side
            xyz = np.array([x, y, z])
            # Anchor inside the MCP span; what is outside (the overhang) stays an offset.
            x_in = float(np.clip(x, lx, ix))
            ab = basis_inv @ np.array([x_in, y])
            anchor = np.zeros(NUM_JOINTS)
            anchor[Joint.WRIST] = 1.0 - ab.sum()
            anchor[Joint.INDEX_MCP], anchor[Joint.LITTLE_MCP] = ab
            w = np.zeros(22)
            arm = float(_smoothstep(0.5 - 0.5 * y / _BLEND_MM))
            w[FOREARM_BONE] = arm
            w[Joint.WRIST] = 1.0 - arm
            # Knuckle region follows the proximal phalanges a little.
            k = 0.5 * float(_smoothstep((y - (y_top - 14.0)) / 14.0))
            if k > 0:
                near = np.exp(-0.5 * ((x - mcp_x) / 9.0) ** 2)
                near /= near.sum()
                for fj, share in zip((Joint.LITTLE_MCP, Joint.RING_MCP, Joint.MIDDLE_MCP, Joint.INDEX_MCP), near):
                    w[fj] += k * share
                w[Joint.WRIST] -= k
            ring.append(mb.add(xyz, anchor, w, 0))
        if prev is not None:
            mb.stitch(prev, ring)
        rings.append(ring)
        prev = ring
    # The palm is oriented with increasing y, so the rings' winding points outwards when
    # phi runs x -> z; close the wrist end with a fan and the knuckle end with a zip.
    first = rings[0]
    centre = np.mean([mb.verts[i] for i in first], 0)
    anchor = np.zeros(NUM_JOINTS)
    anchor[Joint.WRIST] = 1.0
    w = np.zeros(22)
    w[FOREARM_BONE] = 0.5
    w[Joint.WRIST] = 0.5
    mb.fan(first, mb.add(centre, anchor, w, 0), outward=False)
    mb.zip_close(rings[-1], outward=True)


def _forearm(mb: _MeshBuilder, spec: HandSpec) -> None:
    n = _AROUND_ARM
    phis = 2.0 * np.pi * np.arange(n) / n
    anchor = _one_hot(NUM_JOINTS, Joint.WRIST)
    prev = None
    first = None
    for s in (0.0, 0.04, 0.12, 0.25, 0.45, 0.7, 1.0):
        y = 6.0 - s * spec.forearm_length
        half_w = spec.forearm_radii[0] + (spec.forearm_radii[1] - spec.forearm_radii[0]) * min(1.0, 2.0 * s)
        half_t = half_w * spec.forearm_thickness_ratio
        w = np.zeros(22)
        hand = float(_smoothstep(0.5 + 0.5 * y / _BLEND_MM))
        w[Joint.WRIST] = hand
        w[FOREARM_BONE] = 1.0 - hand
        ring = [
            mb.add(np.array([half_w * math.cos(p), y, half_t * math.sin(p) + 1.0]), anchor, w, 6)
            for p in phis
        ]
        if prev is not None:
            mb.stitch(ring, prev)  # y decreases along this tube: reverse the winding
        else:
            first = ring
        prev = ring
    end = mb.add(np.array([0.0, 6.0 - spec.forearm_length, 1.0]), anchor, _one_hot(22, FOREARM_BONE), 6)
    mb.fan(prev, end, outward=False)
    centre = mb.add(np.array([0.0, 6.0, 1.0]), anchor, _one_hot(22, Joint.WRIST), 6)
    mb.fan(first, centre, outward=True)


def build_model_asset() -> dict[str, np.ndarray]:
    """Everything the hand layer needs: neutral skeleton and surface, seven morph targets."""
    neutral_joints, neutral_verts, topo = generate(HandSpec())
    _, rotations = rest_skeleton(HandSpec())
    joints_t, offsets_t = [], []
    for t in range(BETA_DIM):
        j, v, topo_t = generate(spec_from_beta(np.eye(BETA_DIM)[t]))
        if topo_t.faces.shape != topo.faces.shape:
            raise RuntimeError("a morph target changed the mesh topology")
        joints_t.append(j)
        offsets_t.append(v - topo.anchors @ j)
    neutral_offsets = neutral_verts - topo.anchors @ neutral_joints
    return {
        "version": np.array(ASSET_VERSION),
        "rest_joints": neutral_joints,                                # (21, 3) mm
        "rest_rotations": rotations,                                  # (21, 3, 3)
        "joint_morphs": np.stack(joints_t) - neutral_joints,          # (7, 21, 3) mm
        "rest_offsets": neutral_offsets,                              # (V, 3) mm
        "offset_morphs": np.stack(offsets_t) - neutral_offsets,       # (7, V, 3) mm
        "anchors": topo.anchors,                                      # (V, 21)
        "weights": topo.weights,                                      # (V, 22)
        "faces": topo.faces,                                          # (F, 3)
        "part": topo.part,                                            # (V,)
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the hand model asset.")
    parser.add_argument("--out", type=Path, default=ASSET_PATH)
    args = parser.parse_args(argv)
    asset = build_model_asset()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **asset)
    v, f = asset["rest_offsets"].shape[0], asset["faces"].shape[0]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): {v} vertices, {f} faces")


if __name__ == "__main__":
    main()
