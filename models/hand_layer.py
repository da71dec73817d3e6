"""The hand pose-and-shape layer (DeepModel's forward kinematics grown into DeepHPS's HPSL).

    (θ, α, β) -> joints (B, 21, 3), vertices (B, V, 3), transforms (B, 21, 4, 4)

Frames and units: the output is in the frame that θ's global part maps the hand into
(the camera frame in the app: x right, y down, z forward), millimetres. The hand frame,
θ, α and β are defined in ``models/skeleton.py``; the template in ``models/handmesh.py``.

Stages, each a pure function of tensors (no IO, no state):
  1. :func:`shaped_rest` — morph targets: rest joints J*(β) and surface offsets r(β),
     both linear in β (Ψ(β) = b0 + Σ β_t (b_t − b0) of DeepHPS);
  2. :func:`scaled_rest` — bone scales α stretch the rest bones: J*(α, β);
  3. :func:`forward_kinematics` — θ -> world_from_joint transforms G (B, 21, 4, 4);
  4. :func:`skin` — linear blend skinning v = Σ_i w_i G_i G*_i⁻¹ v*(α, β).
:class:`HandLayer` is the thin module around them: it loads the asset once and keeps the
constants as buffers, so it moves between devices and dtypes and exports to ONNX.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.geometry import axis_angle_to_matrix, invert_rigid, make_transform, rotation_about_axes
from models.handmesh import ASSET_PATH, FOREARM_BONE
from models.joints import NUM_JOINTS, PARENTS
from models.skeleton import (
    ALPHA_DIM, ALPHA_OF_JOINT, ARTICULATED_JOINTS, BETA_DIM, NUM_ARTICULATIONS, THETA_DIM,
    articulation_tables,
)

# Kinematic levels: joints whose parents are all in earlier levels (wrist; bases; ...).
_LEVELS: tuple[tuple[int, ...], ...] = (
    (0,), (1, 5, 9, 13, 17), (2, 6, 10, 14, 18), (3, 7, 11, 15, 19), (4, 8, 12, 16, 20),
)


class HandOutput(NamedTuple):
    """Output of the layer. All float, same dtype as the input, millimetres.

    joints:     (B, 21, 3) canonical joint order (``models/joints.py``)
    vertices:   (B, V, 3) skinned mesh; faces are ``HandLayer.faces``
    transforms: (B, 21, 4, 4) out_from_joint: each joint's posed frame
    """

    joints: torch.Tensor
    vertices: torch.Tensor
    transforms: torch.Tensor


class RestShape(NamedTuple):
    """Rest pose (θ = 0) of one hand shape, in the hand frame. (B, ...) float, mm."""

    joints: torch.Tensor    # (B, 21, 3)
    vertices: torch.Tensor  # (B, V, 3)


@dataclass(frozen=True)
class HandModelConstants:
    """The template, as numpy arrays, loaded from ``models/assets/hand_model.npz``."""

    rest_joints: np.ndarray     # (21, 3) mm, neutral hand (β = 0, α = 1)
    rest_rotations: np.ndarray  # (21, 3, 3) hand_from_joint at rest
    joint_morphs: np.ndarray    # (7, 21, 3) mm per unit β
    rest_offsets: np.ndarray    # (V, 3) mm
    offset_morphs: np.ndarray   # (7, V, 3) mm per unit β
    anchors: np.ndarray         # (V, 21)
    weights: np.ndarray         # (V, 22): 21 joint frames and the forearm
    faces: np.ndarray           # (F, 3) int

    @classmethod
    def load(cls, path: str | Path = ASSET_PATH) -> "HandModelConstants":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"hand model asset not found: {path} (rebuild it with `python -m models.handmesh`)")
        with np.load(path) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__})


def _check_batch(name: str, x: torch.Tensor, dim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected {name} of shape (B, {dim}), got {tuple(x.shape)}")


def shaped_rest(beta: torch.Tensor, rest_joints: torch.Tensor, joint_morphs: torch.Tensor,
                rest_offsets: torch.Tensor, offset_morphs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """β (B, 7) -> rest joints (B, 21, 3) and surface offsets (B, V, 3), linear in β."""
    batch = beta.shape[0]
    joints = rest_joints + (beta @ joint_morphs.reshape(joint_morphs.shape[0], -1)).reshape(batch, -1, 3)
    offsets = rest_offsets + (beta @ offset_morphs.reshape(offset_morphs.shape[0], -1)).reshape(batch, -1, 3)
    return joints, offsets


def scaled_rest(alpha: torch.Tensor, joints: torch.Tensor, alpha_of_joint: torch.Tensor) -> torch.Tensor:
    """Stretch each rest bone by its α: (B, 6), (B, 21, 3) -> (B, 21, 3) rest joints.

    ``alpha_of_joint`` (21,) long: which α scales the bone ending at each joint (the
    wrist's entry is ignored).
    """
    parents = torch.tensor([max(p, 0) for p in PARENTS], device=joints.device)
    bones = joints - joints[:, parents]                          # (B, 21, 3), wrist: 0
    scale = alpha[:, alpha_of_joint.clamp(min=0)][..., None]     # (B, 21, 1)
    scaled = bones * scale
    out = [joints[:, 0]]
    for j in range(1, NUM_JOINTS):  # parents precede children in the joint order
        out.append(out[PARENTS[j]] + scaled[:, j])
    return torch.stack(out, 1)


def articulation_rotations(theta: torch.Tensor, first_index: torch.Tensor, first_axis: torch.Tensor,
                           second_index: torch.Tensor, second_axis: torch.Tensor) -> torch.Tensor:
    """θ (B, 26) -> rotations (B, 15, 3, 3) of the articulated joints, in their rest frames."""
    angles = torch.cat((theta[:, 6:], torch.zeros_like(theta[:, :1])), 1)   # (B, 21)
    first = rotation_about_axes(first_axis, angles[:, first_index])
    second = rotation_about_axes(second_axis, angles[:, second_index])
    return first @ second


def forward_kinematics(theta: torch.Tensor, rest_joints: torch.Tensor, rest_rotations: torch.Tensor,
                       articulations: torch.Tensor,
                       root_rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed and rest frames of the 21 joints.

    theta (B, 26); rest_joints (B, 21, 3) hand frame; rest_rotations (21, 3, 3)
    hand_from_joint; articulations (B, 15, 3, 3) from :func:`articulation_rotations`.
    Returns (posed out_from_joint, rest hand_from_joint), each (B, 21, 4, 4):
    G_j = G_parent · [Q_j A_j | t_j] with Q_j = R*_parent⁻¹ R*_j and t_j the rest bone in
    the parent's frame, and G_0 = [Rodrigues(θ[0:3]) | θ[3:6]], or [root_rotation | θ[3:6]]
    when root_rotation (B, 3, 3) is given (θ[0:3] is then ignored; networks that predict a
    continuous rotation representation pass the matrix here).
    """
    batch = theta.shape[0]
    rest_frames = make_transform(rest_rotations.expand(batch, -1, -1, -1), rest_joints)
    art = {j: k for k, j in enumerate(ARTICULATED_JOINTS)}
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device).expand(batch, 3, 3)
    rot = axis_angle_to_matrix(theta[:, 0:3]) if root_rotation is None else root_rotation
    root = make_transform(rot, theta[:, 3:6])
    posed: list[torch.Tensor | None] = [None] * NUM_JOINTS
    posed[0] = root
    for level in _LEVELS[1:]:
        idx = list(level)
        par = [PARENTS[j] for j in idx]
        rest_p_inv = invert_rigid(rest_frames[:, par])                      # (B, 5, 4, 4)
        local_rest = rest_p_inv @ rest_frames[:, idx]                       # parent_from_joint at rest
        a = torch.stack([articulations[:, art[j]] if j in art else eye for j in idx], 1)
        local = make_transform(local_rest[..., :3, :3] @ a, local_rest[..., :3, 3])
        parent_posed = torch.stack([posed[p] for p in par], 1)
        out = parent_posed @ local
        for k, j in enumerate(idx):
            posed[j] = out[:, k]
    return torch.stack(posed, 1), rest_frames  # type: ignore[arg-type]


def skin(posed: torch.Tensor, rest: torch.Tensor, forearm: torch.Tensor, rest_vertices: torch.Tensor,
         weights: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning.

    posed, rest: (B, 21, 4, 4) joint frames; forearm: (B, 4, 4) out_from_hand-rest transform
    of the forearm bone; rest_vertices: (B, V, 3); weights: (V, 22). Returns (B, V, 3).
    """
    bones = posed @ invert_rigid(rest)                                  # (B, 21, 4, 4)
    bones = torch.cat((bones, forearm[:, None]), 1)[..., :3, :]         # (B, 22, 3, 4)
    batch, num_vertices = rest_vertices.shape[0], weights.shape[0]
    # Vertex index last (contiguous) keeps every step a plain MatMul or a cheap broadcast.
    blended = (bones.reshape(batch, -1, 12).transpose(1, 2) @ weights.T)     # (B, 12, V)
    blended = blended.reshape(batch, 3, 4, num_vertices)
    rest_t = rest_vertices.transpose(1, 2)                              # (B, 3, V)
    posed = (blended[:, :, :3] * rest_t[:, None]).sum(2) + blended[:, :, 3]  # (B, 3, V)
    return posed.transpose(1, 2)


class HandLayer(nn.Module):
    """DeepHPS hand pose-and-shape layer: (θ, α, β[, wrist]) -> :class:`HandOutput`.

    Parameter-free. ``wrist`` (B, 2) optionally bends the forearm stub relative to the
    hand (flexion about the hand's x, deviation about its z; radians); it only moves
    forearm vertices and is not part of the 26-DoF pose. ``root_rotation`` (B, 3, 3)
    optionally replaces Rodrigues(θ[0:3]) (see :func:`forward_kinematics`).
    """

    def __init__(self, constants: HandModelConstants | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        c = constants or HandModelConstants.load()
        self.register_buffer("rest_joints", torch.as_tensor(c.rest_joints, dtype=dtype))
        self.register_buffer("rest_rotations", torch.as_tensor(c.rest_rotations, dtype=dtype))
        self.register_buffer("joint_morphs", torch.as_tensor(c.joint_morphs, dtype=dtype))
        self.register_buffer("rest_offsets", torch.as_tensor(c.rest_offsets, dtype=dtype))
        self.register_buffer("offset_morphs", torch.as_tensor(c.offset_morphs, dtype=dtype))
        self.register_buffer("anchors", torch.as_tensor(c.anchors, dtype=dtype))
        self.register_buffer("weights", torch.as_tensor(c.weights, dtype=dtype))
        self.register_buffer("faces", torch.as_tensor(c.faces, dtype=torch.long), persistent=False)
        self.register_buffer("alpha_of_joint", torch.tensor(ALPHA_OF_JOINT), persistent=False)
        fi, fa, si, sa = articulation_tables()
        self.register_buffer("first_index", torch.as_tensor(fi), persistent=False)
        self.register_buffer("second_index", torch.as_tensor(si), persistent=False)
        self.register_buffer("first_axis", torch.as_tensor(fa, dtype=dtype))
        self.register_buffer("second_axis", torch.as_tensor(sa, dtype=dtype))
        self.num_vertices = int(c.rest_offsets.shape[0])

    def rest_shape(self, alpha: torch.Tensor, beta: torch.Tensor) -> RestShape:
        """Rest joints and vertices of shape (α, β), hand frame."""
        joints, offsets = shaped_rest(beta, self.rest_joints, self.joint_morphs,
                                      self.rest_offsets, self.offset_morphs)
        joints = scaled_rest(alpha, joints, self.alpha_of_joint)
        vertices = self.anchors @ joints + offsets
        return RestShape(joints, vertices)

    def _frames(self, theta: torch.Tensor, rest_joints: torch.Tensor,
                root_rotation: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 3 from rest joints: (posed out_from_joint, rest hand_from_joint), (B, 21, 4, 4) each."""
        arts = articulation_rotations(theta, self.first_index, self.first_axis,
                                      self.second_index, self.second_axis)
        return forward_kinematics(theta, rest_joints, self.rest_rotations, arts, root_rotation)

    def frames(self, theta: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
               root_rotation: torch.Tensor | None = None) -> torch.Tensor:
        """The posed joint frames out_from_joint (B, 21, 4, 4) alone, without the mesh (the
        joints are their translations): for solvers that need the skeleton many times.
        θ (B, 26), α (B, 6), β (B, 7), root_rotation as in :meth:`forward`; unchecked."""
        joints, _ = shaped_rest(beta, self.rest_joints, self.joint_morphs, self.rest_offsets, self.offset_morphs)
        return self._frames(theta, scaled_rest(alpha, joints, self.alpha_of_joint), root_rotation)[0]

    def forward(self, theta: torch.Tensor, alpha: torch.Tensor | None = None,
                beta: torch.Tensor | None = None, wrist: torch.Tensor | None = None,
                root_rotation: torch.Tensor | None = None) -> HandOutput:
        _check_batch("theta", theta, THETA_DIM)
        if theta.dtype != self.rest_joints.dtype:
            raise TypeError(f"theta is {theta.dtype} but the layer is {self.rest_joints.dtype}; "
                            "convert one of them (layer.double() / layer.float())")
        batch = theta.shape[0]
        if alpha is None:
            alpha = theta.new_ones(batch, ALPHA_DIM)
        if beta is None:
            beta = theta.new_zeros(batch, BETA_DIM)
        _check_batch("alpha", alpha, ALPHA_DIM)
        _check_batch("beta", beta, BETA_DIM)
        if alpha.shape[0] != batch or beta.shape[0] != batch:
            raise ValueError(
                f"batch sizes differ: theta {batch}, alpha {alpha.shape[0]}, beta {beta.shape[0]}")
        rest = self.rest_shape(alpha, beta)
        if root_rotation is not None and root_rotation.shape != (batch, 3, 3):
            raise ValueError(f"root_rotation: expected ({batch}, 3, 3), got {tuple(root_rotation.shape)}")
        posed, rest_frames = self._frames(theta, rest.joints, root_rotation)
        forearm = posed[:, 0]
        if wrist is not None:
            _check_batch("wrist", wrist, 2)
            axes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=theta.dtype, device=theta.device)
            r = rotation_about_axes(axes, wrist)
            bend = make_transform(r[:, 0] @ r[:, 1], theta.new_zeros(batch, 3))
            forearm = forearm @ bend
        vertices = skin(posed, rest_frames, forearm, rest.vertices, self.weights)
        return HandOutput(posed[..., :3, 3], vertices, posed)


assert FOREARM_BONE == NUM_JOINTS and NUM_ARTICULATIONS == 20
