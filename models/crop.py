"""The hand crop: a fixed-size cube around the hand's centre, as a normalised depth patch.

This module is THE crop contract: the synthetic-data generator (network inputs) and the
live app call exactly these functions, so a network sees the same input in training and use.

Frames and units (the ``calib`` conventions):

* camera frame: x right, y down, z forward; millimetres;
* image pixels (u, v): (0, 0) is the centre of the top-left pixel; uvd = (u px, v px, z mm);
* patch pixels (u, v): same convention inside the ``size`` x ``size`` patch;
* normalised coordinates: (xyz - com) / (cube_mm / 2), dimensionless, the cube spans [-1, 1]³.

The crop (DeepPrior++ / DeepHPS style)::

    cube       edge ``cube_mm`` (fixed, in mm, never scaled by the hand's size, so the network
               can read the hand's size from the patch), centred on ``com_mm``;
    window     the projection of the cube's x/y extent at the COM depth: a rectangle centred
               on the COM's pixel with half-sizes cube/2 * fx / com_z (u) and cube/2 * fy / com_z (v);
    patch      the window resampled to size x size by NEAREST neighbour (depth is never
               interpolated across an edge), then d -> (d - com_z) / (cube/2).

Patch values (float32, always in [-1, 1]):

* a valid depth inside the cube's depth range: (d - com_z) / (cube/2);
* a valid depth IN FRONT of the cube (an occluder): -1, i.e. clamped to the cube's front face,
  so that whatever covers the hand stays visible as "near";
* no depth (0, NaN, inf, negative), a depth BEHIND the cube, or a window pixel outside the
  image: +1, the background value (far), as DeepPrior++ does.

Everything here is pure (no IO, no state). :func:`normalize_joints` / :func:`denormalize_joints`
work unchanged on numpy arrays and torch tensors, so the training loss and the app share them.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

from calib import Intrinsics, backproject, check_depth_mm, project

__all__ = [
    "BACKGROUND",
    "FRONT",
    "Crop",
    "CropConfig",
    "check_com_mm",
    "crop_depth",
    "crop_window",
    "denormalize_joints",
    "normalize_joints",
    "points_from_crop_uvd",
    "uvd_in_crop",
]

#: Patch value of "no depth", "behind the cube" and "outside the image" (far).
BACKGROUND = 1.0
#: Patch value of a depth in front of the cube (clamped to the cube's front face).
FRONT = -1.0


@dataclass(frozen=True)
class CropConfig:
    """How the hand crop is cut.

    cube_mm: edge of the cube centred on the hand's centre, mm (> 0). Fixed: never scaled
        by hand size, so hand size stays readable from the patch. 250 mm holds an adult hand
        (about 230 mm long) in any orientation around its palm centre.
    size: the patch is size x size pixels (int >= 2).
    """

    cube_mm: float = 250.0
    size: int = 96

    def __post_init__(self) -> None:
        if isinstance(self.cube_mm, bool) or not isinstance(self.cube_mm, numbers.Real):
            raise TypeError(f"CropConfig.cube_mm: expected a number (mm), got {type(self.cube_mm).__name__}")
        if not math.isfinite(self.cube_mm) or self.cube_mm <= 0.0:
            raise ValueError(f"CropConfig.cube_mm: expected a finite positive edge in mm, got {self.cube_mm}")
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral):
            raise TypeError(f"CropConfig.size: expected an int (pixels), got {type(self.size).__name__}")
        if self.size < 2:
            raise ValueError(f"CropConfig.size: expected at least 2 pixels, got {self.size}")
        object.__setattr__(self, "cube_mm", float(self.cube_mm))
        object.__setattr__(self, "size", int(self.size))


class Crop(NamedTuple):
    """One hand crop.

    patch: (size, size) float32 in [-1, 1], normalised depth (see the module docstring for
        background +1 and front -1).
    com_mm: (3,) float64, mm, camera frame: the cube's centre.
    crop_from_image: (3, 3) float64 affine map of homogeneous image pixels (u, v, 1) to patch
        pixels (u', v', 1); axis-aligned (scale and translation only).
    cube_mm: the cube's edge, mm.
    """

    patch: np.ndarray
    com_mm: np.ndarray
    crop_from_image: np.ndarray
    cube_mm: float


# --------------------------------------------------------------------------- input checks


def _checked_intrinsics(intr: Any) -> Intrinsics:
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    return intr


def _checked_depth(depth_mm: Any, intr: Intrinsics) -> np.ndarray:
    return check_depth_mm(depth_mm, intr)


def check_com_mm(com_mm: Any) -> np.ndarray:
    """The crop centre as (3,) float64 mm, camera frame, finite and in front of the camera."""
    com = np.asarray(com_mm, dtype=np.float64)
    if com.shape != (3,):
        raise ValueError(f"com_mm: expected shape (3,) mm, got {com.shape}")
    if not np.all(np.isfinite(com)):
        raise ValueError(f"com_mm: expected finite values, got {com.tolist()}")
    if com[2] <= 0.0:
        raise ValueError(f"com_mm: expected a depth z > 0 mm (in front of the camera), got z = {com[2]}")
    return com


def _checked_config(cfg: Any) -> CropConfig:
    if not isinstance(cfg, CropConfig):
        raise TypeError(f"cfg: expected CropConfig, got {type(cfg).__name__}")
    return cfg


# --------------------------------------------------------------------------- the window


def crop_window(com_mm: np.ndarray, intr: Intrinsics, cfg: CropConfig = CropConfig()) -> np.ndarray:
    """``crop_from_image`` (3, 3) float64 for a cube centred on ``com_mm`` (3,) mm.

    The window's edges are u0 -/+ hu and v0 -/+ hv with (u0, v0) the COM's pixel and
    hu = cube/2 * fx / z, hv = cube/2 * fy / z; they map to the patch's outer edges
    -0.5 and size - 0.5. The COM's own pixel maps to the patch centre (size - 1) / 2.
    Lens distortion moves the centre (``calib.project``) but the window stays a rectangle.
    """
    intr = _checked_intrinsics(intr)
    cfg = _checked_config(cfg)
    com = check_com_mm(com_mm)
    u0, v0, z = project(com, intr)
    half = 0.5 * cfg.cube_mm
    sx = cfg.size / (2.0 * half * intr.fx / z)
    sy = cfg.size / (2.0 * half * intr.fy / z)
    c = 0.5 * (cfg.size - 1)
    return np.array([[sx, 0.0, c - sx * u0], [0.0, sy, c - sy * v0], [0.0, 0.0, 1.0]], dtype=np.float64)


def crop_depth(depth_mm: np.ndarray, intr: Intrinsics, com_mm: np.ndarray,
               cfg: CropConfig = CropConfig()) -> Crop:
    """Cut the normalised size x size patch of the cube around ``com_mm``.

    depth_mm: (H, W) float32, mm, (H, W) = (intr.height, intr.width); 0, NaN, inf and
        negative values are "no depth".
    com_mm: (3,) mm, camera frame, z > 0.
    Raises TypeError / ValueError for the wrong types, shapes, dtype or a non-positive depth.
    """
    intr = _checked_intrinsics(intr)
    cfg = _checked_config(cfg)
    depth = _checked_depth(depth_mm, intr)
    com = check_com_mm(com_mm)
    crop_from_image = crop_window(com, intr, cfg)
    # Nearest neighbour, constant 0 (= no depth) outside the image. cv2 maps destination pixel
    # centres through the inverse of ``crop_from_image`` and rounds to the nearest source pixel,
    # in the same centre-of-pixel convention as ours.
    window = cv2.warpAffine(np.ascontiguousarray(depth), crop_from_image[:2], (cfg.size, cfg.size),
                            flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    half = 0.5 * cfg.cube_mm
    patch = (window - np.float32(com[2])) * np.float32(1.0 / half)
    # "No depth" is anything not > 0 (0, negative, NaN) and +inf; both become background.
    # Behind the cube also becomes background; in front is clamped to the front face.
    background = ~((window > 0.0) & (patch <= 1.0))
    np.clip(patch, FRONT, BACKGROUND, out=patch)
    patch[background] = BACKGROUND
    return Crop(patch.astype(np.float32, copy=False), com, crop_from_image, cfg.cube_mm)


# --------------------------------------------------------------------------- joints


def _checked_pair(points: Any, com: Any, what: str) -> None:
    for name, x in ((what, points), ("com_mm", com)):
        if not hasattr(x, "shape") or not hasattr(x, "ndim"):
            raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if type(points) is not type(com):
        raise TypeError(f"{what} and com_mm: expected the same array type, got "
                        f"{type(points).__name__} and {type(com).__name__}")
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"{what}: expected shape (..., K, 3), got {tuple(points.shape)}")
    if com.ndim != points.ndim - 1 or com.shape[-1] != 3:
        raise ValueError(f"com_mm: expected shape (..., 3) matching {what} (..., K, 3) = "
                         f"{tuple(points.shape)}, got {tuple(com.shape)}")


def _checked_cube(cube_mm: Any) -> float:
    if isinstance(cube_mm, bool) or not isinstance(cube_mm, numbers.Real):
        raise TypeError(f"cube_mm: expected a number (mm), got {type(cube_mm).__name__}")
    if not math.isfinite(cube_mm) or cube_mm <= 0.0:
        raise ValueError(f"cube_mm: expected a finite positive edge in mm, got {cube_mm}")
    return float(cube_mm)


def normalize_joints(joints_mm: Any, com_mm: Any, cube_mm: float) -> Any:
    """(xyz - com) / (cube/2): camera-frame mm to the cube's normalised coordinates.

    joints_mm: (..., K, 3) mm, camera frame (numpy array or torch tensor).
    com_mm: (..., 3) mm, same type (and, for torch, a compatible dtype/device).
    returns (..., K, 3), same type and dtype, dimensionless; the cube spans [-1, 1].
    """
    _checked_pair(joints_mm, com_mm, "joints_mm")
    half = 0.5 * _checked_cube(cube_mm)
    return (joints_mm - com_mm[..., None, :]) / half


def denormalize_joints(joints_norm: Any, com_mm: Any, cube_mm: float) -> Any:
    """Inverse of :func:`normalize_joints`: xyz = n * (cube/2) + com, mm, camera frame.

    joints_norm: (..., K, 3) dimensionless; com_mm: (..., 3) mm; same array type.
    """
    _checked_pair(joints_norm, com_mm, "joints_norm")
    half = 0.5 * _checked_cube(cube_mm)
    return joints_norm * half + com_mm[..., None, :]


def _checked_crop(crop: Any) -> Crop:
    if not isinstance(crop, Crop):
        raise TypeError(f"crop: expected models.crop.Crop, got {type(crop).__name__}")
    return crop


def uvd_in_crop(points_mm: Any, crop: Crop, intr: Intrinsics) -> Any:
    """Patch pixel and normalised depth of camera-frame points.

    points_mm: (..., 3) mm, camera frame (numpy array or torch tensor), z > 0.
    returns (..., 3) same type: u px and v px in the patch (same pixel convention as the
    image), d = (z - com_z) / (cube/2) (not clipped: points outside the cube give |d| > 1).
    """
    crop = _checked_crop(crop)
    uvd = project(points_mm, intr)
    a = crop.crop_from_image.tolist()  # Python floats: mix with numpy and torch alike
    u = a[0][0] * uvd[..., 0] + a[0][1] * uvd[..., 1] + a[0][2]
    v = a[1][0] * uvd[..., 0] + a[1][1] * uvd[..., 1] + a[1][2]
    d = (uvd[..., 2] - float(crop.com_mm[2])) / (0.5 * crop.cube_mm)
    stack = np.stack if isinstance(uvd, np.ndarray) else _torch_stack
    return stack([u, v, d], -1)


def points_from_crop_uvd(uvd_crop: Any, crop: Crop, intr: Intrinsics) -> Any:
    """Inverse of :func:`uvd_in_crop`: patch (u px, v px, d normalised) (..., 3) -> mm, camera frame."""
    crop = _checked_crop(crop)
    if not hasattr(uvd_crop, "shape"):
        raise TypeError(f"uvd_crop: expected a numpy array or torch tensor, got {type(uvd_crop).__name__}")
    if len(uvd_crop.shape) < 1 or uvd_crop.shape[-1] != 3:
        raise ValueError(f"uvd_crop: expected shape (..., 3), got {tuple(uvd_crop.shape)}")
    b = np.linalg.inv(crop.crop_from_image).tolist()
    uc, vc = uvd_crop[..., 0], uvd_crop[..., 1]
    u = b[0][0] * uc + b[0][1] * vc + b[0][2]
    v = b[1][0] * uc + b[1][1] * vc + b[1][2]
    z = uvd_crop[..., 2] * (0.5 * crop.cube_mm) + float(crop.com_mm[2])
    stack = np.stack if isinstance(uvd_crop, np.ndarray) else _torch_stack
    return backproject(stack([u, v, z], -1), intr)


def _torch_stack(xs: list[Any], dim: int) -> Any:
    import torch  # lazy: this module imports no torch unless torch tensors come in

    return torch.stack(xs, dim)
