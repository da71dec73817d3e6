"""Pinhole + lens projection between camera points and (u, v, depth), for numpy and torch.

Conventions:

* Camera frame: x right, y down, z forward; millimetres.
* Pixels: (u, v) = (column, row), (0, 0) is the CENTRE of the top-left pixel.
* ``uvd = (u px, v px, d mm)`` where d is the z coordinate (the depth-map convention of
  RealSense, Kinect and the public hand datasets), not the distance along the ray.
* Normalised coordinates: (x, y) = (X / Z, Y / Z); the lens model maps them to distorted
  normalised coordinates (xd, yd), and u = fx * xd + cx, v = fy * yd + cy.

Every function here is pure (no file or device access). ``project`` and ``backproject`` take
``(..., 3)`` arrays with any leading batch dims, as numpy arrays or torch tensors, float32 or
float64; the result has the input's type, dtype and device. The torch path is differentiable
with respect to the points / uvd (the intrinsics are constants).

Lens models (``Intrinsics.distortion``, coefficients ``coeffs``); all checked against
pyrealsense2 2.59's ``rs2_project_point_to_pixel`` / ``rs2_deproject_pixel_to_point``:

* ``none``: pinhole.
* ``brown_conrady`` (k1, k2, p1, p2, k3; OpenCV's model, ideal -> distorted)::

      r2 = x^2 + y^2,  radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3
      xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
      yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

  ``project`` is closed form; ``backproject`` inverts it by Newton's method.
* ``inverse_brown_conrady`` (k1, k2, p1, p2, k3), as librealsense 2.59 applies it: the same
  radial factor, with the tangential terms evaluated on the radially scaled point
  (xs, ys) = (x radial, y radial)::

      xd = xs + 2 p1 xs ys + p2 (r2 + 2 xs^2)
      yd = ys + 2 p2 xs ys + p1 (r2 + 2 ys^2)

  Also closed form in ``project`` and Newton in ``backproject``.
* ``kannala_brandt4`` (k1, k2, k3, k4; 5th unused): equidistant fisheye family::

      r = sqrt(x^2 + y^2), theta = atan(r),
      theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
      (xd, yd) = (x, y) * theta_d / r

  All-zero coefficients give the ideal equidistant fisheye (pixel radius = f * theta).
  ``backproject`` solves theta_d(theta) by Newton's method. Valid for theta < 90 degrees.

Accuracy of the iterative inverses (``NEWTON_ITERATIONS`` = 10 fixed steps, no data-dependent
stopping, so the torch path stays traceable and differentiable): float64 pixel -> camera ->
pixel round trips over a whole 848x480 image agree to < 1e-12 px for every coefficient set we
tried where the lens map is invertible, e.g. Kinect v2's (0.0905, -0.268, 0, 0, 0.0951),
(0.1, -0.05, 0.01, 0.02, 0.03), (-0.5, 0.3, 0.02, 0.02, 0), (0.14, 0.08, 0.004, 0.005, 0.09),
with fx = 425 px and fx = 300 px (normalised radius up to 1.6, about 110 degrees wide);
6 steps already sufficed in those cases. float32 inputs are limited by float32 itself
(about 1e-4 px at 1000 px). Where the polynomial folds over (d(radius_d)/d(radius) <= 0, e.g.
k1 = -0.3 at radius 1.15) no inverse exists and the result is meaningless (possibly huge or
NaN); real calibrations are only valid inside the image they were fitted on.

Points with z <= 0 (behind the camera) give non-finite or mirrored pixels; callers mask them.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import numpy as np

from .intrinsics import Intrinsics

__all__ = [
    "NEWTON_ITERATIONS",
    "check_depth_mm",
    "DepthPoints",
    "FieldOfView",
    "backproject",
    "depth_to_points",
    "field_of_view_deg",
    "project",
]

#: Fixed number of Newton steps in the iterative inverses (quadratic convergence: 3-4 steps
#: already reach float64 precision for realistic coefficients; the rest is margin).
NEWTON_ITERATIONS = 10

# Squared normalised radius below which the fisheye radius is clamped (avoids 0/0 and an
# infinite sqrt gradient at the principal point; 1e-24 -> radius 1e-12, far below a pixel).
_R2_EPS = 1e-24


# ---------------------------------------------------------------------------- array backends


class _NumpyOps:
    name = "numpy"

    @staticmethod
    def stack(xs: list) -> np.ndarray:
        return np.stack(xs, axis=-1)

    sqrt = staticmethod(np.sqrt)
    atan = staticmethod(np.arctan)
    tan = staticmethod(np.tan)

    @staticmethod
    def clamp_min(x: np.ndarray, lo: float) -> np.ndarray:
        return np.maximum(x, lo)


class _TorchOps:
    name = "torch"

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self.sqrt = torch.sqrt
        self.atan = torch.atan
        self.tan = torch.tan

    def stack(self, xs: list) -> Any:
        return self._torch.stack(xs, dim=-1)

    def clamp_min(self, x: Any, lo: float) -> Any:
        return self._torch.clamp(x, min=lo)


_NUMPY = _NumpyOps()


def _torch_module() -> Any:
    """torch if the caller has imported it (a tensor cannot exist otherwise), else None."""
    return sys.modules.get("torch")


def _checked_points(x: Any, what: str) -> tuple[Any, Any]:
    """Validate a ``(..., 3)`` float32/float64 array or tensor; return it and its backend."""
    torch = _torch_module()
    if torch is not None and isinstance(x, torch.Tensor):
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{what}: expected a float32 or float64 tensor, got {x.dtype}")
        ops: Any = _TorchOps(torch)
    elif isinstance(x, np.ndarray):
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{what}: expected a float32 or float64 array, got {x.dtype}")
        ops = _NUMPY
    elif isinstance(x, (list, tuple)):
        x = np.asarray(x, dtype=np.float64)
        ops = _NUMPY
    else:
        raise TypeError(f"{what}: expected a numpy array or torch tensor of shape (..., 3), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{what}: expected shape (..., 3), got {tuple(x.shape)}")
    return x, ops


def _checked_intrinsics(intr: Any) -> Intrinsics:
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    return intr


# ---------------------------------------------------------------------------- lens models


def _brown(x: Any, y: Any, c: tuple[float, ...], modified: bool) -> tuple[Any, ...]:
    """Brown-Conrady forward map and its Jacobian: (xd, yd, j11, j12, j21, j22)."""
    k1, k2, p1, p2, k3 = c
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    dradial = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # d radial / d r2
    if not modified:
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        cross = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y
        j11 = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x
        j22 = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x
        return xd, yd, j11, cross, cross, j22
    xs = x * radial
    ys = y * radial
    xd = xs + 2.0 * p1 * xs * ys + p2 * (r2 + 2.0 * xs * xs)
    yd = ys + 2.0 * p2 * xs * ys + p1 * (r2 + 2.0 * ys * ys)
    # Chain rule through (xs, ys) plus the explicit r2 terms.
    a = radial + 2.0 * x * x * dradial  # d xs / d x
    b = 2.0 * x * y * dradial  # d xs / d y = d ys / d x
    d = radial + 2.0 * y * y * dradial  # d ys / d y
    gx_xs = 1.0 + 2.0 * p1 * ys + 4.0 * p2 * xs  # d xd / d xs
    gx_ys = 2.0 * p1 * xs  # d xd / d ys
    gy_xs = 2.0 * p2 * ys  # d yd / d xs
    gy_ys = 1.0 + 2.0 * p2 * xs + 4.0 * p1 * ys  # d yd / d ys
    j11 = gx_xs * a + gx_ys * b + 2.0 * p2 * x
    j12 = gx_xs * b + gx_ys * d + 2.0 * p2 * y
    j21 = gy_xs * a + gy_ys * b + 2.0 * p1 * x
    j22 = gy_xs * b + gy_ys * d + 2.0 * p1 * y
    return xd, yd, j11, j12, j21, j22


def _brown_inverse(xd: Any, yd: Any, c: tuple[float, ...], modified: bool) -> tuple[Any, Any]:
    """Solve _brown(x, y) = (xd, yd) by Newton's method, starting from the distorted point.

    (Starting from xd / radial(xd) was tried: faster near the centre, but it diverged in more
    of the wide-angle cases of the module docstring, so the plain start is kept.)
    """
    x, y = xd, yd
    for _ in range(NEWTON_ITERATIONS):
        fx, fy, j11, j12, j21, j22 = _brown(x, y, c, modified)
        ex = fx - xd
        ey = fy - yd
        det = j11 * j22 - j12 * j21
        x = x - (j22 * ex - j12 * ey) / det
        y = y - (j11 * ey - j21 * ex) / det
    return x, y


def _kb4_series(theta: Any, c: tuple[float, ...]) -> tuple[Any, Any]:
    """theta_d(theta) and its derivative for Kannala-Brandt with k1..k4 = c[0..3]."""
    k1, k2, k3, k4 = c[:4]
    t2 = theta * theta
    theta_d = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    dtheta_d = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
    return theta_d, dtheta_d


def _distort(x: Any, y: Any, intr: Intrinsics, ops: Any) -> tuple[Any, Any]:
    """Ideal normalised (x, y) -> distorted normalised (xd, yd)."""
    if not intr.has_distortion:
        return x, y
    if intr.distortion == "kannala_brandt4":
        r = ops.sqrt(ops.clamp_min(x * x + y * y, _R2_EPS))
        theta_d, _ = _kb4_series(ops.atan(r), intr.coeffs)
        scale = theta_d / r
        return x * scale, y * scale
    xd, yd, *_ = _brown(x, y, intr.coeffs, modified=intr.distortion == "inverse_brown_conrady")
    return xd, yd


def _undistort(xd: Any, yd: Any, intr: Intrinsics, ops: Any) -> tuple[Any, Any]:
    """Distorted normalised (xd, yd) -> ideal normalised (x, y) (iterative, see module doc)."""
    if not intr.has_distortion:
        return xd, yd
    if intr.distortion == "kannala_brandt4":
        theta_d = ops.sqrt(ops.clamp_min(xd * xd + yd * yd, _R2_EPS))
        theta = theta_d
        for _ in range(NEWTON_ITERATIONS):
            value, slope = _kb4_series(theta, intr.coeffs)
            theta = theta - (value - theta_d) / slope
        scale = ops.tan(theta) / theta_d
        return xd * scale, yd * scale
    return _brown_inverse(xd, yd, intr.coeffs, modified=intr.distortion == "inverse_brown_conrady")


# ---------------------------------------------------------------------------- public API


def project(points_mm: Any, intr: Intrinsics) -> Any:
    """Camera points to pixels with depth.

    points_mm: (..., 3) float32/float64, mm, camera frame (numpy array or torch tensor).
    returns uvd: (..., 3) same type/dtype/device: u px, v px, d = z mm.
    """
    intr = _checked_intrinsics(intr)
    p, ops = _checked_points(points_mm, "project: points_mm")
    z = p[..., 2]
    xd, yd = _distort(p[..., 0] / z, p[..., 1] / z, intr, ops)
    return ops.stack([intr.fx * xd + intr.cx, intr.fy * yd + intr.cy, z])


def backproject(uvd: Any, intr: Intrinsics) -> Any:
    """Pixels with depth to camera points (inverse of ``project``).

    uvd: (..., 3) float32/float64: u px, v px, d = z mm (numpy array or torch tensor).
    returns points_mm: (..., 3) same type/dtype/device, mm, camera frame.
    """
    intr = _checked_intrinsics(intr)
    q, ops = _checked_points(uvd, "backproject: uvd")
    d = q[..., 2]
    x, y = _undistort((q[..., 0] - intr.cx) / intr.fx, (q[..., 1] - intr.cy) / intr.fy, intr, ops)
    return ops.stack([x * d, y * d, d])


class DepthPoints(NamedTuple):
    """Valid pixels of a depth image as camera points.

    points_mm: (N, 3) float, mm, camera frame, in row-major pixel order.
    pixels: (N, 2) int64, (u, v) = (column, row) of each point's pixel.
    """

    points_mm: Any
    pixels: Any


_FLOAT_NAMES = ("float32", "float64")


def depth_to_points(
    depth_raw: Any,
    intr: Intrinsics,
    *,
    min_depth_mm: float | None = None,
    max_depth_mm: float | None = None,
    dtype: str | None = None,
) -> DepthPoints:
    """Back-project every valid pixel of a raw depth image.

    depth_raw: (H, W) numpy array or torch tensor, raw sensor units (any integer dtype, or
        float); H, W must equal ``intr.height, intr.width``. 0 (and non-finite) = no depth.
    min_depth_mm, max_depth_mm: optional inclusive range in mm; pixels outside are dropped.
    dtype: "float32" or "float64" for the points; default float32 for integer depth, the
        input's dtype for float depth.
    returns DepthPoints (points_mm (N, 3), pixels (N, 2) int64) on the input's backend/device.
    """
    intr = _checked_intrinsics(intr)
    if dtype is not None and dtype not in _FLOAT_NAMES:
        raise ValueError(f"depth_to_points: dtype expected one of {_FLOAT_NAMES} or None, got {dtype!r}")
    torch = _torch_module()
    is_torch = torch is not None and isinstance(depth_raw, torch.Tensor)
    if not is_torch and not isinstance(depth_raw, np.ndarray):
        raise TypeError(f"depth_to_points: expected a numpy array or torch tensor, got {type(depth_raw).__name__}")
    if tuple(depth_raw.shape) != (intr.height, intr.width):
        raise ValueError(
            f"depth_to_points: expected depth of shape (H, W) = ({intr.height}, {intr.width}) "
            f"to match the intrinsics, got {tuple(depth_raw.shape)}"
        )
    mm_per_unit = intr.depth_scale * 1000.0
    if is_torch:
        if depth_raw.dtype == torch.bool or depth_raw.is_complex():
            raise TypeError(f"depth_to_points: expected integer or float depth, got {depth_raw.dtype}")
        is_float = depth_raw.is_floating_point()
        if not is_float:
            depth_raw = depth_raw.to(torch.int64)  # uint16 comparisons are not implemented on CPU
        out_dtype = getattr(torch, dtype) if dtype else (depth_raw.dtype if is_float else torch.float32)
        if is_float and out_dtype not in (torch.float32, torch.float64):
            out_dtype = torch.float32
        valid = depth_raw > 0
        if is_float:
            valid = valid & torch.isfinite(depth_raw)
        rows, cols = torch.nonzero(valid, as_tuple=True)
        d_mm = depth_raw[rows, cols].to(out_dtype) * mm_per_unit
        keep = _range_mask(d_mm, min_depth_mm, max_depth_mm)
        if keep is not None:
            rows, cols, d_mm = rows[keep], cols[keep], d_mm[keep]
        uvd = torch.stack([cols.to(out_dtype), rows.to(out_dtype), d_mm], dim=-1)
        pixels = torch.stack([cols, rows], dim=-1).to(torch.int64)
    else:
        if depth_raw.dtype.kind not in "iuf":
            raise TypeError(f"depth_to_points: expected integer or float depth, got {depth_raw.dtype}")
        is_float = depth_raw.dtype.kind == "f"
        if dtype:
            out_np = np.dtype(dtype)
        elif is_float and depth_raw.dtype in (np.float32, np.float64):
            out_np = depth_raw.dtype
        else:
            out_np = np.dtype(np.float32)
        valid = depth_raw > 0
        if is_float:
            valid &= np.isfinite(depth_raw)
        rows, cols = np.nonzero(valid)
        d_mm = depth_raw[rows, cols].astype(out_np) * out_np.type(mm_per_unit)
        keep = _range_mask(d_mm, min_depth_mm, max_depth_mm)
        if keep is not None:
            rows, cols, d_mm = rows[keep], cols[keep], d_mm[keep]
        uvd = np.stack([cols.astype(out_np), rows.astype(out_np), d_mm], axis=-1)
        pixels = np.stack([cols, rows], axis=-1).astype(np.int64)
    return DepthPoints(points_mm=backproject(uvd, intr), pixels=pixels)


def _range_mask(d_mm: Any, lo: float | None, hi: float | None) -> Any:
    for name, bound in (("min_depth_mm", lo), ("max_depth_mm", hi)):
        if bound is not None and not math.isfinite(float(bound)):
            raise ValueError(f"depth_to_points: {name} expected a finite number of mm, got {bound!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"depth_to_points: expected min_depth_mm <= max_depth_mm, got {lo} > {hi}")
    keep = None
    if lo is not None:
        keep = d_mm >= lo
    if hi is not None:
        upper = d_mm <= hi
        keep = upper if keep is None else keep & upper
    return keep


class FieldOfView(NamedTuple):
    """Full angular field of view through the image centre lines, degrees."""

    horizontal_deg: float
    vertical_deg: float


def field_of_view_deg(intr: Intrinsics) -> FieldOfView:
    """Angles between the rays through opposite image edges (u = -0.5 and width - 0.5 at
    v = cy; v = -0.5 and height - 0.5 at u = cx), lens model included. Degrees."""
    intr = _checked_intrinsics(intr)
    edges = np.array(
        [
            [-0.5, intr.cy, 1.0],
            [intr.width - 0.5, intr.cy, 1.0],
            [intr.cx, -0.5, 1.0],
            [intr.cx, intr.height - 0.5, 1.0],
        ],
        dtype=np.float64,
    )
    rays = backproject(edges, intr)  # z = 1, so x and y are tangents of the angles
    horizontal = math.atan(rays[1, 0]) - math.atan(rays[0, 0])
    vertical = math.atan(rays[3, 1]) - math.atan(rays[2, 1])
    return FieldOfView(math.degrees(horizontal), math.degrees(vertical))


def check_depth_mm(depth_mm: Any, intr: Intrinsics) -> np.ndarray:
    """The one check of a depth image in millimetres before it is used with ``intr``.

    Expects a numpy (H, W) float32 array with (H, W) = (intr.height, intr.width); returns it.
    Raises TypeError (not an array, not float32: raw sensor units must be converted first)
    or ValueError (shape). Values are not checked: 0, NaN, inf and negatives mean "no depth".
    """
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    if not isinstance(depth_mm, np.ndarray):
        raise TypeError(f"depth_mm: expected a numpy array (H, W) float32 mm, got {type(depth_mm).__name__}")
    if depth_mm.dtype != np.float32:
        raise TypeError(f"depth_mm: expected float32 millimetres, got {depth_mm.dtype}"
                        " (convert raw sensor units first: mm = raw * depth_scale * 1000)")
    if depth_mm.shape != (intr.height, intr.width):
        raise ValueError(f"depth_mm: expected shape (H, W) = {(intr.height, intr.width)} from the "
                         f"intrinsics, got {depth_mm.shape}")
    return depth_mm
