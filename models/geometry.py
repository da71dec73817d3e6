"""Rotations and rigid transforms, pure torch, batched over leading dimensions.

Rotation matrices act on column vectors: ``p' = R @ p``. A transform ``T`` is (..., 4, 4)
with ``T[..., :3, :3]`` a rotation and ``T[..., :3, 3]`` a translation; ``a_from_b @ b_from_c
= a_from_c``. Every function here is differentiable, works in float32 and float64, and
exports to ONNX with standard operators (no custom ops, no data-dependent control flow).
"""
from __future__ import annotations

import torch

_SMALL_ANGLE = 1e-4  # rad; below it Rodrigues' coefficients use their Taylor series


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix ``[v]_x`` with ``[v]_x @ w = v x w``."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        (
            torch.stack((zero, -z, y), -1),
            torch.stack((z, zero, -x), -1),
            torch.stack((-y, x, zero), -1),
        ),
        -2,
    )


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices.

    ``R = I + a(t) K + b(t) K²`` with ``K = [r]_x``, ``t = |r|``, ``a = sin t / t`` and
    ``b = (1 - cos t) / t²``; below 1e-4 rad the coefficients come from their Taylor series,
    so the value and the gradient are exact and finite at zero.
    """
    if rotvec.shape[-1] != 3:
        raise ValueError(f"expected axis-angle of shape (..., 3), got {tuple(rotvec.shape)}")
    t2 = (rotvec * rotvec).sum(-1, keepdim=True)
    small = t2 < _SMALL_ANGLE**2
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / t2_safe)
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def rotation_about_axes(axes: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotations by ``angles`` (..., K) radians about fixed unit ``axes`` (K, 3) -> (..., K, 3, 3)."""
    if axes.ndim != 2 or axes.shape[-1] != 3 or angles.shape[-1] != axes.shape[0]:
        raise ValueError(
            f"expected axes (K, 3) and angles (..., K), got {tuple(axes.shape)} and {tuple(angles.shape)}"
        )
    k = skew(axes)
    eye = torch.eye(3, dtype=angles.dtype, device=angles.device)
    s = torch.sin(angles)[..., None, None]
    c = torch.cos(angles)[..., None, None]
    return eye + s * k + (1.0 - c) * (k @ k)


def make_transform(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) and (..., 3) -> (..., 4, 4) rigid transforms."""
    top = torch.cat((rotation, translation[..., :, None]), -1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom = bottom + torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=top.dtype, device=top.device)
    return torch.cat((top, bottom), -2)


def invert_rigid(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid (..., 4, 4) transforms: ``[R^T | -R^T t]``."""
    rt = transform[..., :3, :3].transpose(-1, -2)
    return make_transform(rt, -(rt @ transform[..., :3, 3:4])[..., 0])


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 3) axis-angle, angle in [0, π]. Not for export.

    Uses the quaternion route, accurate near 0 and π.
    """
    m = matrix
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Quaternion (w, x, y, z) by Shepperd's method: choose the largest diagonal term.
    candidates = torch.stack(
        (
            1.0 + trace,
            1.0 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1.0 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1.0 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ),
        -1,
    )
    best = candidates.argmax(-1)
    q = torch.zeros(m.shape[:-2] + (4,), dtype=m.dtype, device=m.device)
    r = torch.sqrt(torch.clamp(candidates.gather(-1, best[..., None])[..., 0], min=1e-12))
    w_ = torch.stack(
        (r, (m[..., 2, 1] - m[..., 1, 2]) / r, (m[..., 0, 2] - m[..., 2, 0]) / r,
         (m[..., 1, 0] - m[..., 0, 1]) / r), -1) * 0.5
    x_ = torch.stack(
        ((m[..., 2, 1] - m[..., 1, 2]) / r, r, (m[..., 0, 1] + m[..., 1, 0]) / r,
         (m[..., 0, 2] + m[..., 2, 0]) / r), -1) * 0.5
    y_ = torch.stack(
        ((m[..., 0, 2] - m[..., 2, 0]) / r, (m[..., 0, 1] + m[..., 1, 0]) / r, r,
         (m[..., 1, 2] + m[..., 2, 1]) / r), -1) * 0.5
    z_ = torch.stack(
        ((m[..., 1, 0] - m[..., 0, 1]) / r, (m[..., 0, 2] + m[..., 2, 0]) / r,
         (m[..., 1, 2] + m[..., 2, 1]) / r, r), -1) * 0.5
    for i, cand in enumerate((w_, x_, y_, z_)):
        q = torch.where((best == i)[..., None], cand, q)
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0: angle in [0, π]
    vec = q[..., 1:]
    sin_half = vec.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, q[..., :1])
    scale = torch.where(sin_half > 1e-12, angle / sin_half.clamp(min=1e-12), torch.full_like(angle, 2.0))
    return vec * scale


def kabsch(source: torch.Tensor, target: torch.Tensor,
           weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid fit ``target ≈ R @ source + t`` minimising Σ w |.|² over (..., N, 3) point sets.

    ``weights`` (..., N) ≥ 0, default all ones; 0 ignores a point. Returns R (..., 3, 3),
    a proper rotation, and t (..., 3).
    """
    w = torch.ones_like(source[..., 0]) if weights is None else weights
    w = w[..., None]
    total = w.sum(-2, keepdim=True).clamp(min=1e-12)
    mu_s = (w * source).sum(-2, keepdim=True) / total
    mu_t = (w * target).sum(-2, keepdim=True) / total
    h = ((source - mu_s) * w).transpose(-1, -2) @ (target - mu_t)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.stack((torch.ones_like(d), torch.ones_like(d), d), -1)
    r = vt.transpose(-1, -2) @ torch.diag_embed(diag) @ u.transpose(-1, -2)
    t = mu_t[..., 0, :] - (r @ mu_s[..., 0, :, None])[..., 0]
    return r, t
