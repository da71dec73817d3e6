"""Projective TSDF volume of the hand cube (Hand3D's input), computed from the crop patch.

Hand3D (Deng et al. 2017) turns the depth around the hand's centre of mass into a truncated
signed distance function (TSDF) on a voxel grid and feeds it to a 3D CNN. Here the TSDF is
computed DIRECTLY from the normalised patch of :func:`models.crop.crop_depth`, in torch with
index_select (ONNX Gather), arithmetic, clamp and where only: no loops over voxels and no
data-dependent control flow, so it runs inside the network graph and exports to ONNX.

Frames and units (the ``calib`` / ``models.crop`` conventions):

* camera frame: x right, y down, z forward; millimetres;
* normalised cube coordinates: n = (xyz - com) / (cube_mm / 2), dimensionless, cube = [-1, 1]³;
* patch: (..., S, S) float, normalised depth (d - com_z) / (cube/2) in [-1, 1]; +1 is the
  background ("no depth", behind the cube, outside the image), -1 a depth clamped to the
  cube's front face (see ``models.crop``); row = v (down), column = u (right);
* TSDF values: dimensionless in [-1, 1], signed distance along z in units of the truncation.

Volume layout (..., D, H, W) = (..., z, y, x), the layout ``conv3d`` expects for (B, 1, D, H, W):
element [k, i, j] is the voxel whose centre is at normalised coordinates
x_n = (2j + 1)/G - 1, y_n = (2i + 1)/G - 1, z_n = (2k + 1)/G - 1 (G = ``grid``; k = 0 is the
cube's NEAR face, nearest the camera).

Values and sign (KinectFusion / Hand3D projective TSDF)::

    tsdf = clamp((d_surface - z_voxel) / truncation, -1, 1)

with d_surface and z_voxel relative to the COM in mm: POSITIVE in front of the surface (free
space between the camera and the surface), zero on it, NEGATIVE behind it (occupied or
unseen). A pixel with no surface (patch value +1, the background) makes its whole voxel column
free space, +1. A depth clamped to the front face (-1, an occluder) is a surface on the front
face: its whole column is behind it, negative, and -1 from 50 mm (the truncation) behind it.
A surface exactly on the back face (patch +1) cannot be told from the background (the crop's
contract) and is free space too.

Sizes (defaults ``GRID`` = 32, ``TRUNCATION_MM`` = 50, cube 250 mm):

* voxel edge cube / G = 250 / 32 = 7.8 mm (48³: 5.2 mm). Hand3D used 60³ voxels of 5 mm over
  a 300 mm cube; we size for a CPU (32³ = 32 768 voxels, 6.6 times fewer than 60³).
* truncation 50 mm is Hand3D's value kept in mm (the surface distance is metric), i.e. 0.4 in
  normalised cube units (cube/2 = 125 mm), 6.4 voxels of 7.8 mm, 1/5 of the cube's edge.
  Hand3D's 50 mm was 10 voxels and 1/6 of its 300 mm cube; the same fraction of our cube
  would be 41.7 mm.

The orthographic approximation (the only one made here). The crop window is the projection of
the cube's x/y extent at the COM's depth, so patch column j looks along the ray through
lateral position x_j at depth com_z. The approximation lets voxel column (i, j) read that
patch pixel at every depth::

    patch column = floor((x_n + 1) / 2 * S)     (row likewise from y_n)

i.e. voxel (x, y, z) is taken to lie on the ray through (x, y) at the COM's depth. In truth
that ray is at lateral position (com_xy + xy) * (com_z + z) / com_z at the voxel's depth, so
the voxel reads the depth of a ray passing

    offset = (com_xy + xy) * z / com_z   mm (at the voxel's depth; pinhole, see ray_offset_mm)

away from it. For a COM on the optical axis, at the cube's lateral edge |x| = cube/2 = 125 mm:

    COM depth   near face (z = -125 mm)   far face (z = +125 mm)
    300 mm      -52.1 mm (6.7 voxels)     +52.1 mm (6.7 voxels)
    800 mm      -19.5 mm (2.5 voxels)     +19.5 mm (2.5 voxels)

It is zero on the column through the COM and for any fronto-parallel surface (the TSDF of a
plane z = const is exact), grows linearly with |x| and |z|, and inside a hand's typical extent
(|x| <= 100 mm, |z| <= 50 mm) stays under 16.7 mm at 300 mm and 6.3 mm at 800 mm (per axis;
x and y both at 100 mm: times sqrt(2)). A COM off the optical axis adds a shear
com_x / com_z * z, independent of distance: 72 mm at the faces for a COM 30 degrees off axis.
Measured against :func:`tsdf_from_depth` on a 60 mm sphere around an on-axis COM (32³, see the
tests): mean |difference| 0.105 / 0.056 / 0.041 TSDF units and 5.4 / 2.8 / 1.9 % of the voxels
off by more than 0.5 (25 mm) at 300 / 500 / 800 mm; with the COM 17 degrees off axis
0.127 / 0.103 / 0.093 and 6.7 / 5.3 / 4.7 %. Equivalently: this volume is an EXACT projective TSDF in the crop's
(u', v', d) space (frustum voxels, the coordinates of ``models.crop.uvd_in_crop``); only
reading it as an axis-aligned metric cube carries the offset above. Sampling: the voxel reads
the patch pixel containing its centre (nearest neighbour, depth never interpolated across an
edge); when S / G is an odd integer (96 / 32 = 3) the pixel's centre is the voxel's centre,
otherwise they differ by up to half a patch pixel (96 / 48: 0.5 px = 1.3 mm).

:func:`tsdf_from_depth` (numpy) is the exact perspective TSDF of the metric cube from the full
depth image, to measure this approximation.

Everything here is pure (no IO, no state).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from calib import Intrinsics, check_depth_mm, project
from models.crop import BACKGROUND, FRONT, check_com_mm

__all__ = [
    "GRID",
    "TRUNCATION_MM",
    "TsdfLayer",
    "patch_indices",
    "ray_offset_mm",
    "tsdf_from_depth",
    "tsdf_from_patch",
    "voxel_centres",
]

#: Default voxels per cube edge: 250 mm / 32 = 7.8 mm voxels.
GRID = 32
#: Default truncation, mm (Hand3D's value; 0.4 in normalised units of a 250 mm cube).
TRUNCATION_MM = 50.0
_CUBE_MM = 250.0


# --------------------------------------------------------------------------- input checks


def _checked_positive(name: str, value: Any, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number ({unit}), got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name}: expected a finite positive value in {unit}, got {value}")
    return float(value)


def _checked_grid(grid: Any) -> int:
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral):
        raise TypeError(f"grid: expected an int (voxels per edge), got {type(grid).__name__}")
    if grid < 1:
        raise ValueError(f"grid: expected at least 1 voxel per edge, got {grid}")
    return int(grid)


def _checked_patch(patch: Any) -> torch.Tensor:
    if isinstance(patch, np.ndarray):
        if not np.issubdtype(patch.dtype, np.floating):
            raise TypeError(f"patch: expected a floating array (normalised depth), got {patch.dtype}")
        patch = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))
    elif not isinstance(patch, torch.Tensor):
        raise TypeError(f"patch: expected a numpy array or torch tensor (..., S, S), got {type(patch).__name__}")
    if not patch.is_floating_point():
        raise TypeError(f"patch: expected a floating tensor (normalised depth), got {patch.dtype}")
    if patch.ndim < 2 or patch.shape[-1] != patch.shape[-2] or patch.shape[-1] < 1:
        raise ValueError(f"patch: expected shape (..., S, S) with S >= 1, got {tuple(patch.shape)}")
    return patch


# --------------------------------------------------------------------------- the grid


def voxel_centres(grid: int = GRID) -> np.ndarray:
    """(grid,) float64: voxel centres along one axis, normalised cube coordinates (2k + 1)/G - 1."""
    g = _checked_grid(grid)
    return (2.0 * np.arange(g) + 1.0) / g - 1.0


def patch_indices(size: int, grid: int = GRID) -> np.ndarray:
    """(grid,) int64: the patch row (or column) each voxel row (or column) reads.

    The pixel containing the voxel centre, floor((n + 1) / 2 * size) = floor((2k + 1) size / (2 G)),
    exact in integers (a centre on a pixel edge reads the pixel after it).
    E.g. size 96: grid 32 -> 1, 4, 7, ... (3k + 1); grid 48 -> 1, 3, 5, ... (2k + 1).
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size: expected an int >= 1 (patch pixels), got {size!r}")
    g = _checked_grid(grid)
    return (2 * np.arange(g, dtype=np.int64) + 1) * int(size) // (2 * g)


def ray_offset_mm(voxel_norm: Any, com_mm: Any, cube_mm: float = _CUBE_MM) -> np.ndarray:
    """Lateral error of the orthographic approximation, mm, at each voxel's depth (pinhole).

    voxel_norm: (..., 3) normalised cube coordinates of voxels; com_mm: (3,) mm, camera frame.
    returns (..., 2) float64 mm: (x, y) of the ray the approximation reads, minus the voxel's
    (x, y), both at the voxel's depth: (com_xy + xy) * z / com_z with xy, z in mm from the COM.
    """
    com = check_com_mm(com_mm)
    half = 0.5 * _checked_positive("cube_mm", cube_mm, "mm")
    n = np.asarray(voxel_norm, dtype=np.float64)
    if n.ndim < 1 or n.shape[-1] != 3:
        raise ValueError(f"voxel_norm: expected shape (..., 3), got {n.shape}")
    xy, z = n[..., :2] * half, n[..., 2:] * half
    return (com[:2] + xy) * z / com[2]


# --------------------------------------------------------------------------- from the patch


def _sample_columns(patch: torch.Tensor, grid: int) -> torch.Tensor:
    """(..., S, S) -> (..., G, G): the patch pixel each voxel column reads (nearest)."""
    size = patch.shape[-1]
    k = torch.arange(grid, device=patch.device)
    index = (2 * k + 1) * size // (2 * grid)  # = patch_indices(size, grid), as graph constants
    return patch.index_select(-2, index).index_select(-1, index)


def _signed_distance(surface: torch.Tensor, grid: int, truncation_mm: float, half_mm: float) -> torch.Tensor:
    """(..., G, G) normalised surface depth -> (..., G, G, G) clamped TSDF; background +1."""
    k = torch.arange(grid, device=surface.device, dtype=surface.dtype)
    z_mm = ((2.0 * k + 1.0) / grid - 1.0) * half_mm  # voxel centres, mm from the COM
    d_mm = surface * half_mm
    tsdf = ((d_mm[..., None, :, :] - z_mm[:, None, None]) / truncation_mm).clamp(-1.0, 1.0)
    no_surface = (surface >= BACKGROUND)[..., None, :, :]
    return torch.where(no_surface, torch.ones_like(tsdf), tsdf)


def tsdf_from_patch(patch: Any, grid: int = GRID, truncation_mm: float = TRUNCATION_MM,
                    cube_mm: float = _CUBE_MM) -> Any:
    """Projective TSDF of the cube around the COM, from the normalised crop patch.

    patch: (..., S, S) normalised depth (``models.crop.Crop.patch``, [-1, 1], +1 background),
        numpy float array or torch floating tensor; any leading batch dims.
    grid: G voxels per cube edge (int >= 1); truncation_mm: mm (> 0); cube_mm: the crop's
        cube edge, mm (> 0).
    returns (..., G, G, G) TSDF in [-1, 1], layout (z, y, x) (see the module docstring):
        numpy in -> numpy float32; torch in -> torch, same dtype and device (float32 for
        the network; float64 kept for gradcheck). Differentiable w.r.t. the patch.
    Uses the orthographic approximation of the crop (module docstring: error 52 mm at the
    cube's corners for a COM at 300 mm, 20 mm at 800 mm; exact for fronto-parallel surfaces).
    Raises TypeError / ValueError for the wrong types, a non-square patch or bad parameters.
    """
    is_numpy = isinstance(patch, np.ndarray)
    p = _checked_patch(patch)
    g = _checked_grid(grid)
    truncation = _checked_positive("truncation_mm", truncation_mm, "mm")
    half = 0.5 * _checked_positive("cube_mm", cube_mm, "mm")
    tsdf = _signed_distance(_sample_columns(p, g), g, truncation, half)
    return tsdf.numpy() if is_numpy else tsdf


class TsdfLayer(nn.Module):
    """Stateless graph layer: patch (B, 1, S, S) -> TSDF (B, 1, G, G, G), see :func:`tsdf_from_patch`.

    Any leading dims work; (B, 1, S, S) gives the (B, C, D, H, W) input of ``conv3d``.
    Runs on the caller's thread; holds no buffers or parameters.
    """

    def __init__(self, grid: int = GRID, truncation_mm: float = TRUNCATION_MM, cube_mm: float = _CUBE_MM) -> None:
        super().__init__()
        self.grid = _checked_grid(grid)
        self.truncation_mm = _checked_positive("truncation_mm", truncation_mm, "mm")
        self.cube_mm = _checked_positive("cube_mm", cube_mm, "mm")

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return tsdf_from_patch(patch, self.grid, self.truncation_mm, self.cube_mm)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, truncation_mm={self.truncation_mm}, cube_mm={self.cube_mm}"


# --------------------------------------------------------------------------- exact, from the image


def tsdf_from_depth(depth_mm: np.ndarray, intr: Intrinsics, com_mm: Any, grid: int = GRID,
                    truncation_mm: float = TRUNCATION_MM, cube_mm: float = _CUBE_MM) -> np.ndarray:
    """Exact perspective projective TSDF of the metric cube around ``com_mm`` (reference, numpy).

    depth_mm: (H, W) float32 mm, (H, W) = (intr.height, intr.width); com_mm: (3,) mm, z > 0.
    returns (G, G, G) float32 in [-1, 1], the layout and sign of :func:`tsdf_from_patch`, but
    each voxel centre com + n * cube/2 (mm, camera frame) is projected with ``calib.project``
    (lens model included) and reads the image pixel containing it (nearest). Depth values are
    read with the crop's rules, so that only the geometry differs from the patch version:
    no depth (0, NaN, inf, negative), behind the cube or outside the image -> no surface (+1);
    in front of the cube -> clamped to the front face.
    """
    depth = check_depth_mm(depth_mm, intr)
    com = check_com_mm(com_mm)
    g = _checked_grid(grid)
    truncation = _checked_positive("truncation_mm", truncation_mm, "mm")
    half = 0.5 * _checked_positive("cube_mm", cube_mm, "mm")
    n = voxel_centres(g)
    nz, ny, nx = np.meshgrid(n, n, n, indexing="ij")
    voxels = com + np.stack([nx, ny, nz], -1) * half  # (G, G, G, 3) mm, [k, i, j] -> (x_j, y_i, z_k)
    uvd = project(voxels, intr)
    col = np.floor(uvd[..., 0] + 0.5)
    row = np.floor(uvd[..., 1] + 0.5)
    inside = (col >= 0) & (col < intr.width) & (row >= 0) & (row < intr.height)
    col = np.where(inside, col, 0).astype(np.int64)
    row = np.where(inside, row, 0).astype(np.int64)
    d = depth[row, col].astype(np.float64)
    surface = inside & np.isfinite(d) & (d > 0.0) & ((d - com[2]) / half <= BACKGROUND)
    d = np.maximum(d, com[2] + FRONT * half)
    with np.errstate(invalid="ignore"):
        tsdf = np.clip((d - voxels[..., 2]) / truncation, -1.0, 1.0)
    return np.where(surface, tsdf, 1.0).astype(np.float32)
