"""Training data: synthetic shards -> samples -> batches, and training-time augmentation.

Frames and units (the ``calib`` / ``models.crop`` conventions):

* camera frame: x right, y down, z forward; millimetres (mm);
* pixels (u, v): u along columns, v along rows, (0, 0) the centre of the top-left pixel;
  patch pixels likewise inside the S x S patch, whose centre is c = (S - 1) / 2;
* normalised coordinates: (xyz - com) / (cube_mm / 2), dimensionless (the cube spans [-1, 1]);
  normalised depth d = (z - com_z) / (cube_mm / 2) with +1 = background (no depth / behind the
  cube / outside the image) and -1 = in front of the cube (clamped), see ``models.crop``;
* angles in radians unless a name ends in ``_deg``; rotations act on column vectors.

Shards are read with ``models.synth.load_shard`` (format: the ``models.synth`` docstring).
:class:`ShardDataset` keeps at most ``cache_shards`` decoded shards in memory (LRU);
:class:`ShardSampler` visits the shards in a seeded random order, ``buffer_shards`` at a time,
and shuffles the frames within each group, so that with ``cache_shards >= buffer_shards``
every shard is decoded once per epoch (per loader worker).

Augmentation (:func:`augment`, pure: a numpy :class:`Sample` and a ``numpy.random.Generator``
in, a new :class:`Sample` out). Every geometric step is a change of the 3D scene for which the
crop contract is re-applied, so the result is again a valid crop: ``crop_from_image`` is
``crop_window(com_mm, intrinsics, cube)`` and ``joints == normalize_joints(joints_mm, com_mm,
cube)`` after every step. What is exact and what is not:

* :func:`rotate` -- in-plane rotation by ``angle`` about the CAMERA RAY THROUGH THE COM (the
  axis com/|com| through the camera centre, right-handed: with the axis pointing away from the
  camera, a positive angle turns +x towards +y, i.e. CLOCKWISE on screen since y is down).
  Labels: a rigid 3D rotation, so exact; θ follows exactly (global rotation R·R0, translation
  R·t), so ``HandLayer(θ', α, β)`` reproduces the rotated joints AND mesh. The COM stays on its
  own ray, so the crop window is unchanged. Patch: a rotation about a line through the camera
  centre moves every pixel's ray by R, whatever its depth (no parallax): the image is remapped
  by undistort -> R -> distort (the homography K·R·K⁻¹ for a pinhole), and a pixel's depth z
  becomes z / w with w the z of its source ray Rᵀ·q (q_z = 1), so the resampled patch is
  EXACTLY the crop of the rotated scene (up to nearest-neighbour sampling), wherever the COM
  is in the image and for every lens model. When the COM is on the optical axis this is a
  plain rotation of the patch about its centre with w = 1 (90° = ``np.rot90(patch, -1)``).
  The lens model comes from the shard's ``distortion`` / ``coeffs`` (or, for older shards,
  from the camera preset: :func:`shard_lenses`); e.g. the Azure Kinect NFOV is a fisheye.
  Why not an axis through the COM parallel to the camera z axis: its labels are as exact, but
  its patch is a 2D rotation only for an orthographic crop; under perspective a point at depth
  z lands off by (S / cube)·(com_z / z - 1)·|(R - I)·(com_x, com_y)| px, which on
  data/synth/train/shard_00000 is 4 px median, 14 px at the 90th percentile for a 90° turn
  (COMs are far off-axis: 186 mm median at about 500 mm).
* :func:`scale` -- the whole scene scaled by s about the CAMERA CENTRE (a hand s times larger,
  s times farther: the same rays). Patch: patch'(p) = s · patch(c + (p - c) / s) on valid
  pixels, exact (the window, centred on the same pixel, shrinks by 1/s in the image). Labels:
  joints_mm and com_mm scale by s, normalised joints by s. θ's translation and all six bone
  scales α are scaled by s (the hand frame's origin is the wrist, so the layer's JOINTS stay
  exact), but the surface offsets r(β) are not, so the MESH is not: ``params_valid`` is False.
* :func:`shift` -- crop-centre jitter: com' = com + Δ with the scene fixed. The window is
  recut around com' (affine map of patch pixels, exact: the scene's rays are unchanged) and
  the depth re-referenced, d' = d - Δz / (cube / 2). A shift of +Δx mm (Δz = 0) moves the
  content by -Δx / (cube/2) · S/2 patch pixels.
  Common to the three: image content that was outside the original window is unknown and
  becomes background (+1); pixels that were clamped (-1, in front) stay clamped and
  background stays background, although the new cube might have caught their true depth.
  :func:`augment` composes the geometric steps into ONE nearest-neighbour resampling.
* :func:`fatten_edges`, :func:`add_depth_noise`, :func:`drop_pixels`, :func:`add_occluder` act
  on the patch only (the mask, the ideal render's visible hand pixels, loses what the occluder
  covers).
"""
from __future__ import annotations

import bisect
import math
import numbers
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from calib import DISTORTION_MODELS, Intrinsics, backproject, get_preset, project
from models.crop import BACKGROUND, FRONT, Crop, CropConfig, crop_window, normalize_joints
from models.joints import palm_centre
from scipy.spatial.transform import Rotation

__all__ = [
    "AugmentConfig",
    "Batch",
    "Sample",
    "ShardDataset",
    "ShardSampler",
    "Warp",
    "add_depth_noise",
    "add_occluder",
    "augment",
    "collate",
    "drop_pixels",
    "fatten_edges",
    "fatten_patch",
    "make_loader",
    "pull_homography",
    "pull_rotation",
    "rotation_warp",
    "rotate",
    "sample_crop",
    "sample_from_arrays",
    "sample_intrinsics",
    "scale",
    "set_epoch",
    "shard_lenses",
    "shift",
    "to_numpy",
    "to_torch",
    "warp_patch",
]

#: Shard arrays a sample is built from (the rest of a shard is not kept in memory).
SHARD_KEYS = ("patch", "mask", "joints_mm", "com_mm", "crop_from_image", "intrinsics",
              "theta", "alpha", "beta", "wrist", "view")
_SHARD_NAME = re.compile(r"shard_\d+\.npz")


# --------------------------------------------------------------------------- types


class Sample(NamedTuple):
    """One training sample: numpy arrays (augmentation) or torch tensors (the dataset's output).

    patch: (1, S, S) float32, normalised depth in [-1, 1] (``models.crop``)
    joints: (21, 3) float32, normalised: normalize_joints(joints_mm, com_mm, cube_mm)
    joints_mm: (21, 3) float32, mm, camera frame
    com_mm: (3,) float32, mm, camera frame: the cube's centre
    theta: (26,) float32, alpha: (6,) float32, beta: (7,) float32, wrist: (2,) float32: hand layer input
    mask: (S, S) bool, visible hand pixels of the ideal render
    crop_from_image: (3, 3) float32, full-frame pixels -> patch pixels (= crop_window(com_mm, ...))
    intrinsics: (6,) float32, fx, fy, cx, cy (px), width, height (px) of the full frame
    distortion: () int64, the lens model: index into ``calib.DISTORTION_MODELS`` (0 = pinhole)
    coeffs: (5,) float32, its coefficients (``calib.Intrinsics.coeffs``)
    view: () int64, ``models.sampling.View`` (0 third person, 1 egocentric)
    params_valid: () bool, True when HandLayer(theta, alpha, beta, wrist) reproduces joints_mm
        and the mesh exactly (False after :func:`scale`)
    cube_mm: () float32, mm, the crop cube's edge
    index: () int64, position in the dataset
    """

    patch: Any
    joints: Any
    joints_mm: Any
    com_mm: Any
    theta: Any
    alpha: Any
    beta: Any
    wrist: Any
    mask: Any
    crop_from_image: Any
    intrinsics: Any
    distortion: Any
    coeffs: Any
    view: Any
    params_valid: Any
    cube_mm: Any
    index: Any


class Batch(NamedTuple):
    """B samples stacked by :func:`collate`: the fields of :class:`Sample`, torch tensors with a
    leading batch dimension (patch (B, 1, S, S), joints (B, 21, 3), view (B,), ...)."""

    patch: torch.Tensor
    joints: torch.Tensor
    joints_mm: torch.Tensor
    com_mm: torch.Tensor
    theta: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    wrist: torch.Tensor
    mask: torch.Tensor
    crop_from_image: torch.Tensor
    intrinsics: torch.Tensor
    distortion: torch.Tensor
    coeffs: torch.Tensor
    view: torch.Tensor
    params_valid: torch.Tensor
    cube_mm: torch.Tensor
    index: torch.Tensor


class Warp(NamedTuple):
    """One geometric step on the patch, as a pull-back from destination to source pixels.

    pull: (u, v) -> (x, y, w): destination patch pixels (arrays, px) to their source patch
        pixels (x, y) and a per-pixel factor w (> 0 where defined); a functools.partial of
        :func:`pull_homography` or :func:`pull_rotation` (picklable).
    Depth: d_dst = (gain · d_src + offset_w) / w + offset (dimensionless, normalised depth).
    """

    pull: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    gain: float
    offset_w: float
    offset: float


def pull_homography(src_from_dst: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x / w, y / w, w) with (x, y, w) = src_from_dst (3, 3) @ (u, v, 1)."""
    m = src_from_dst
    w = m[2, 0] * u + m[2, 1] * v + m[2, 2]
    w_safe = np.where(np.abs(w) > 1e-12, w, 1e-12)
    return (m[0, 0] * u + m[0, 1] * v + m[0, 2]) / w_safe, (m[1, 0] * u + m[1, 1] * v + m[1, 2]) / w_safe, w


def pull_rotation(crop_from_image: np.ndarray, intr: Intrinsics, src_from_dst_ray: np.ndarray,
                  u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Patch pixels of the rays ``src_from_dst_ray`` (3, 3) @ ray(u, v), through the lens model.

    crop_from_image: (3, 3) axis-aligned, the (unchanged) window. ray(u, v) = backproject of the
    destination pixel at depth 1 (z = 1); w = the source ray's z, so that a source point at
    depth z lands at depth z / w.
    """
    a = crop_from_image
    image_u = (u - a[0, 2]) / a[0, 0]
    image_v = (v - a[1, 2]) / a[1, 1]
    rays = backproject(np.stack((image_u, image_v, np.ones_like(u)), -1), intr)
    q = rays @ src_from_dst_ray.T
    w = q[..., 2]
    q = np.where((w > 1e-9)[..., None], q, np.array([0.0, 0.0, 1.0]))
    uvd = project(q, intr)
    return a[0, 0] * uvd[..., 0] + a[0, 2], a[1, 1] * uvd[..., 1] + a[1, 2], w


def _check_prob(name: str, p: Any) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"AugmentConfig.{name}: expected a probability in [0, 1], got {p!r}")


def _check_range(name: str, r: Any, low: float, high: float) -> None:
    if not (isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, numbers.Real) for x in r)):
        raise ValueError(f"AugmentConfig.{name}: expected a (min, max) tuple of numbers, got {r!r}")
    if not low <= r[0] <= r[1] <= high:
        raise ValueError(f"AugmentConfig.{name}: expected {low} <= min <= max <= {high}, got {r!r}")


def _check_nonneg(name: str, x: Any, high: float = math.inf) -> None:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0.0 <= float(x) <= high:
        raise ValueError(f"AugmentConfig.{name}: expected a number in [0, {high}], got {x!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation: each step is applied with its probability ``*_prob``.

    rotation_max_deg: angle uniform in [-max, max] degrees about the camera ray through the COM.
    scale_range: s uniform in [min, max] (dimensionless; 1 = unchanged): hand size / depth scale.
    shift_sigma_mm: crop-centre jitter, N(0, σ) mm per axis.
    recentre_prob: the share of shifts that instead move the crop centre to the true palm
        centre + N(0, recentre_sigma_mm) per axis: the crops of the app's second pass, cut
        around the first pass's palm (``models.estimator``, "Two passes"; its palm is 9 mm from
        the true one at the median, 3D, i.e. ~6 mm per axis).
    noise_sigma_mm: Gaussian depth noise on valid pixels, σ in mm (converted to cube/2 units).
    dropout_max_fraction: the share of pixels set to background is uniform in [0, max].
    occluder_radius: a disc's radius, uniform in [min, max] × S (fraction of the patch side);
        its depth is uniform between the cube's front face and 10 mm in front of the nearest
        pixel it covers.
    fatten_prob, fatten_max_px: foreground fattening (:func:`fatten_edges`) by a width uniform
        in [0, max] patch pixels. Off by default (0 draws nothing: older runs are unchanged).
    """

    rotation_prob: float = 1.0
    rotation_max_deg: float = 180.0
    scale_prob: float = 0.5
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift_prob: float = 1.0
    shift_sigma_mm: float = 8.0
    recentre_prob: float = 0.0
    recentre_sigma_mm: float = 6.0
    noise_prob: float = 0.5
    noise_sigma_mm: float = 2.0
    dropout_prob: float = 0.3
    dropout_max_fraction: float = 0.1
    occluder_prob: float = 0.2
    occluder_radius: tuple[float, float] = (0.05, 0.2)
    fatten_prob: float = 0.0
    fatten_max_px: float = 3.0

    def __post_init__(self) -> None:
        for name in ("rotation_prob", "scale_prob", "shift_prob", "recentre_prob", "noise_prob", "dropout_prob",
                     "occluder_prob", "fatten_prob"):
            _check_prob(name, getattr(self, name))
        _check_nonneg("rotation_max_deg", self.rotation_max_deg, 180.0)
        _check_range("scale_range", self.scale_range, 1e-3, 1e3)
        if self.scale_range[0] <= 0.0:
            raise ValueError(f"AugmentConfig.scale_range: expected positive factors, got {self.scale_range!r}")
        _check_nonneg("shift_sigma_mm", self.shift_sigma_mm)
        _check_nonneg("recentre_sigma_mm", self.recentre_sigma_mm)
        _check_nonneg("noise_sigma_mm", self.noise_sigma_mm)
        _check_nonneg("dropout_max_fraction", self.dropout_max_fraction, 1.0)
        _check_range("occluder_radius", self.occluder_radius, 0.0, 1.0)
        _check_nonneg("fatten_max_px", self.fatten_max_px, 16.0)


# --------------------------------------------------------------------------- samples (pure)


def shard_lenses(camera: np.ndarray, camera_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Lens model of each frame from its camera preset (the shard's ``camera`` (N,) and
    ``meta["cameras"]``): ``models.synth.sample_camera`` jitters fx, fy, cx, cy only, so the
    model and coefficients are the preset's. Returns distortion (N,) int64, coeffs (N, 5) float32."""
    camera = np.asarray(camera)
    if camera.size and (camera.min() < 0 or camera.max() >= len(camera_names)):
        raise ValueError(f"camera: expected indices into {len(camera_names)} camera names, "
                         f"got range [{camera.min()}, {camera.max()}]")
    table = [get_preset(name).intrinsics for name in camera_names]
    models = np.array([DISTORTION_MODELS.index(t.distortion) for t in table], dtype=np.int64)
    coeffs = np.array([t.coeffs for t in table], dtype=np.float32).reshape(len(table), 5)
    return {"distortion": models[camera], "coeffs": coeffs[camera]}


def sample_from_arrays(arrays: dict[str, np.ndarray], i: int, cube_mm: float, index: int | None = None) -> Sample:
    """Frame ``i`` of a shard's arrays as a numpy :class:`Sample`: ``models.synth.load_shard``'s
    arrays plus ``distortion`` and ``coeffs`` from :func:`shard_lenses`."""
    missing = [k for k in SHARD_KEYS + ("distortion", "coeffs") if k not in arrays]
    if missing:
        raise ValueError(f"shard arrays: expected keys {SHARD_KEYS} and the lens (shard_lenses), missing {missing}")
    joints_mm = arrays["joints_mm"][i].astype(np.float32)
    com = arrays["com_mm"][i].astype(np.float32)
    return Sample(
        patch=arrays["patch"][i].astype(np.float32)[None],
        joints=normalize_joints(joints_mm, com, float(cube_mm)).astype(np.float32),
        joints_mm=joints_mm,
        com_mm=com,
        theta=arrays["theta"][i].astype(np.float32),
        alpha=arrays["alpha"][i].astype(np.float32),
        beta=arrays["beta"][i].astype(np.float32),
        wrist=arrays["wrist"][i].astype(np.float32),
        mask=arrays["mask"][i].astype(bool),
        crop_from_image=arrays["crop_from_image"][i].astype(np.float32),
        intrinsics=arrays["intrinsics"][i].astype(np.float32),
        distortion=np.int64(arrays["distortion"][i]),
        coeffs=arrays["coeffs"][i].astype(np.float32),
        view=np.int64(arrays["view"][i]),
        params_valid=np.bool_(True),
        cube_mm=np.float32(cube_mm),
        index=np.int64(i if index is None else index),
    )


def to_torch(sample: Sample) -> Sample:
    """A numpy :class:`Sample` as torch tensors (same dtypes and shapes; scalars 0-d)."""
    return Sample(*(_tensor(x) for x in sample))


def _tensor(x: Any) -> torch.Tensor:
    a = np.asarray(x)  # 0-d stays 0-d (np.ascontiguousarray would make it (1,))
    return torch.from_numpy(a if a.flags.c_contiguous else a.copy())


def to_numpy(sample: Sample) -> Sample:
    """A torch :class:`Sample` as numpy arrays (for :func:`augment`)."""
    return Sample(*(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in sample))


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack torch :class:`Sample` s into a :class:`Batch` (the loader's ``collate_fn``)."""
    if len(samples) == 0:
        raise ValueError("collate: expected at least one sample, got 0")
    for s in samples:
        if not isinstance(s, Sample) or not isinstance(s.patch, torch.Tensor):
            raise TypeError(f"collate: expected torch Samples (ShardDataset items), got {type(s).__name__} "
                            f"of {type(getattr(s, 'patch', None)).__name__}")
    return Batch(*(torch.stack(list(field), 0) for field in zip(*samples)))


def sample_intrinsics(sample: Sample) -> Intrinsics:
    """The sample's camera as ``calib.Intrinsics``, lens model included (depth_scale unused: 0.001)."""
    return intrinsics_from_arrays(sample.intrinsics, sample.distortion, sample.coeffs)


def intrinsics_from_arrays(intrinsics: np.ndarray, distortion: Any, coeffs: np.ndarray) -> Intrinsics:
    """A shard frame's stored camera -- intrinsics (fx, fy, cx, cy, width, height), distortion
    (index into ``calib.DISTORTION_MODELS``), coeffs (5,) -- as ``calib.Intrinsics``."""
    fx, fy, cx, cy, w, h = (float(x) for x in np.asarray(intrinsics, dtype=np.float64))
    return Intrinsics(fx, fy, cx, cy, int(round(w)), int(round(h)), 0.001,
                      DISTORTION_MODELS[int(distortion)],
                      tuple(float(c) for c in np.asarray(coeffs, dtype=np.float64)))


def _crop_config(sample: Sample) -> CropConfig:
    return CropConfig(float(sample.cube_mm), int(np.asarray(sample.patch).shape[-1]))


def sample_crop(sample: Sample) -> Crop:
    """The sample as a ``models.crop.Crop`` (float64 window recomputed from com_mm), so that
    ``uvd_in_crop`` / ``points_from_crop_uvd`` apply to it with :func:`sample_intrinsics`."""
    com = np.asarray(sample.com_mm, dtype=np.float64)
    a = crop_window(com, sample_intrinsics(sample), _crop_config(sample))
    return Crop(np.asarray(sample.patch)[0], com, a, float(sample.cube_mm))


def _check_numpy_sample(sample: Any) -> Sample:
    if not isinstance(sample, Sample):
        raise TypeError(f"sample: expected models.data.Sample, got {type(sample).__name__}")
    if not isinstance(sample.patch, np.ndarray):
        raise TypeError(f"sample: expected numpy arrays (augment before to_torch, or use to_numpy), "
                        f"got patch of type {type(sample.patch).__name__}")
    p = sample.patch
    if p.ndim != 3 or p.shape[0] != 1 or p.shape[1] != p.shape[2]:
        raise ValueError(f"sample.patch: expected shape (1, S, S), got {p.shape}")
    if np.asarray(sample.mask).shape != p.shape[1:]:
        raise ValueError(f"sample.mask: expected shape {p.shape[1:]}, got {np.asarray(sample.mask).shape}")
    if np.asarray(sample.joints_mm).shape != (21, 3) or np.asarray(sample.com_mm).shape != (3,):
        raise ValueError(f"sample: expected joints_mm (21, 3) and com_mm (3,), got "
                         f"{np.asarray(sample.joints_mm).shape} and {np.asarray(sample.com_mm).shape}")
    return sample


def _relabel(sample: Sample, joints_mm: np.ndarray, com_mm: np.ndarray, **fields: Any) -> Sample:
    """New labels (float64 in), with the normalised joints and the crop window recomputed."""
    cube = float(sample.cube_mm)
    intr = sample_intrinsics(sample)
    a = crop_window(com_mm, intr, _crop_config(sample))
    return sample._replace(
        joints_mm=joints_mm.astype(np.float32), com_mm=com_mm.astype(np.float32),
        joints=normalize_joints(joints_mm, com_mm, cube).astype(np.float32),
        crop_from_image=a.astype(np.float32), **fields)


def _inv_affine(a: np.ndarray) -> np.ndarray:
    """Inverse of an axis-aligned affine (3, 3) map (scale + translation); last row exactly (0, 0, 1)."""
    sx, sy = a[0, 0], a[1, 1]
    return np.array([[1.0 / sx, 0.0, -a[0, 2] / sx], [0.0, 1.0 / sy, -a[1, 2] / sy], [0.0, 0.0, 1.0]])


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (3,) rad -> (3, 3), float64 (scipy: the same Rodrigues formula as
    models.geometry, without torch's per-call overhead on one small array)."""
    return Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_matrix()


# --------------------------------------------------------------------------- geometric steps (pure)


def rotation_warp(com_mm: np.ndarray, intr: Intrinsics, cfg: CropConfig, angle_rad: float) -> tuple[np.ndarray, Warp]:
    """The scene turned by ``angle_rad`` about the camera ray through ``com_mm`` (mm, camera
    frame; module docstring, :func:`rotate`): its rotation R (3, 3) float64, acting on camera-
    frame points p -> R·p (it keeps the COM fixed), and the :class:`Warp` that turns the crop
    around ``com_mm`` (``crop_window(com_mm, intr, cfg)``) into the turned scene's crop."""
    com = np.asarray(com_mm, dtype=np.float64)
    a = crop_window(com, intr, cfg)
    r = _rotation(com / np.linalg.norm(com) * float(angle_rad))
    # dst patch px -> dst image px -> dst ray (z = 1) -> src ray q = Rᵀ·ray -> src image px -> src patch px.
    # A source point z·q/q_z lands at depth z / q_z: d' = (d + zc/h) / w - zc/h with w = q_z.
    zc_over_half = com[2] / (0.5 * float(cfg.cube_mm))
    if intr.has_distortion:
        pull = partial(pull_rotation, a, intr, r.T)
    else:  # the same map without a lens model is the homography A·K·Rᵀ·K⁻¹·A⁻¹ (4x cheaper)
        k = intr.K()
        pull = partial(pull_homography, a @ k @ r.T @ np.linalg.inv(k) @ _inv_affine(a))
    return r, Warp(pull, 1.0, zc_over_half, -zc_over_half)


def _rotate_step(sample: Sample, angle_rad: float) -> tuple[Sample, Warp]:
    com = np.asarray(sample.com_mm, dtype=np.float64)
    r, warp = rotation_warp(com, sample_intrinsics(sample), _crop_config(sample), angle_rad)
    joints = np.asarray(sample.joints_mm, dtype=np.float64) @ r.T
    theta = np.asarray(sample.theta, dtype=np.float64).copy()
    r0 = _rotation(theta[0:3])
    theta[0:3] = Rotation.from_matrix(r @ r0).as_rotvec()
    theta[3:6] = r @ theta[3:6]
    return _relabel(sample, joints, com, theta=theta.astype(np.float32)), warp


def _scale_step(sample: Sample, factor: float) -> tuple[Sample, Warp]:
    s = float(factor)
    if not math.isfinite(s) or s <= 0.0:
        raise ValueError(f"scale: expected a finite factor > 0, got {factor!r}")
    com = np.asarray(sample.com_mm, dtype=np.float64)
    intr = sample_intrinsics(sample)
    cfg = _crop_config(sample)
    src_from_dst = crop_window(com, intr, cfg) @ _inv_affine(crop_window(s * com, intr, cfg))
    theta = np.asarray(sample.theta, dtype=np.float64).copy()
    theta[3:6] *= s
    alpha = np.asarray(sample.alpha, dtype=np.float64) * s
    out = _relabel(sample, s * np.asarray(sample.joints_mm, dtype=np.float64), s * com,
                   theta=theta.astype(np.float32), alpha=alpha.astype(np.float32), params_valid=np.bool_(False))
    return out, Warp(partial(pull_homography, src_from_dst), s, 0.0, 0.0)


def _shift_step(sample: Sample, delta_mm: np.ndarray) -> tuple[Sample, Warp]:
    delta = np.asarray(delta_mm, dtype=np.float64)
    if delta.shape != (3,) or not np.all(np.isfinite(delta)):
        raise ValueError(f"shift: expected a finite (3,) offset in mm, got {delta!r}")
    com = np.asarray(sample.com_mm, dtype=np.float64)
    new_com = com + delta
    if new_com[2] <= 0.0:
        raise ValueError(f"shift: expected the shifted COM in front of the camera (z > 0 mm), got z = {new_com[2]}")
    intr = sample_intrinsics(sample)
    cfg = _crop_config(sample)
    src_from_dst = crop_window(com, intr, cfg) @ _inv_affine(crop_window(new_com, intr, cfg))
    out = _relabel(sample, np.asarray(sample.joints_mm, dtype=np.float64), new_com)
    return out, Warp(partial(pull_homography, src_from_dst), 1.0, 0.0, -delta[2] / (0.5 * float(sample.cube_mm)))


def warp_patch(patch: np.ndarray, mask: np.ndarray, warps: Sequence[Warp]) -> tuple[np.ndarray, np.ndarray]:
    """Resample a patch (S, S) and its mask (S, S) through ``warps`` (applied in order) at once.

    Nearest neighbour (a source pixel's index is floor(x + 0.5)). Valid source values go through
    the composed depth map and are re-clamped as the crop does (> 1: background, < -1: -1);
    clamped source pixels (-1) stay -1, background (+1) stays +1; a destination pixel whose
    source lies outside the patch is background and not hand. Returns float32 and bool (S, S).
    """
    patch = np.asarray(patch)
    size = patch.shape[-1]
    if patch.shape != (size, size) or np.asarray(mask).shape != (size, size):
        raise ValueError(f"warp_patch: expected patch and mask (S, S), got {patch.shape} and {np.asarray(mask).shape}")
    if not warps:
        return patch.astype(np.float32, copy=True), np.asarray(mask, dtype=bool).copy()
    u, v = _pixel_grid(size)
    gain, offset, ok = 1.0, 0.0, True
    for warp in reversed(warps):  # pull destination pixels back through the last step first
        x, y, w = warp.pull(u, v)
        ok = ok & np.isfinite(w) & (w > 1e-9) & np.isfinite(x) & np.isfinite(y)
        w = np.where(ok, w, 1.0)
        g = warp.gain / w
        o = warp.offset_w / w + warp.offset
        offset = gain * o + offset  # d_dst = gain·d_mid + offset, d_mid = g·d_src + o
        gain = gain * g
        u, v = np.where(ok, x, -1.0), np.where(ok, y, -1.0)
    iu = np.floor(u + 0.5)
    iv = np.floor(v + 0.5)
    ok &= (iu >= 0) & (iu < size) & (iv >= 0) & (iv < size)
    flat = np.where(ok, iv * size + iu, 0).astype(np.intp)  # source pixel, row-major
    src = patch.ravel()[flat].astype(np.float64)
    out = np.where(ok & (src > FRONT) & (src < BACKGROUND), np.clip(gain * src + offset, FRONT, BACKGROUND), BACKGROUND)
    out[ok & (src <= FRONT)] = FRONT
    return out.astype(np.float32), np.asarray(mask, dtype=bool).ravel()[flat] & ok


@lru_cache(maxsize=4)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (S, S) float64 pixel coordinates u (column) and v (row) of a patch."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    u.flags.writeable = v.flags.writeable = False
    return u, v


def _apply(sample: Sample, steps: Sequence[Warp]) -> Sample:
    patch, mask = warp_patch(sample.patch[0], sample.mask, steps)
    return sample._replace(patch=patch[None], mask=mask)


def rotate(sample: Sample, angle_rad: float) -> Sample:
    """Rotate the scene by ``angle_rad`` about the camera ray through the COM (see the module
    docstring: positive = clockwise on screen; labels, θ and patch exact)."""
    sample = _check_numpy_sample(sample)
    out, warp = _rotate_step(sample, angle_rad)
    return _apply(out, [warp])


def scale(sample: Sample, factor: float) -> Sample:
    """Scale the scene by ``factor`` about the camera centre (patch exact; ``params_valid`` False)."""
    sample = _check_numpy_sample(sample)
    out, warp = _scale_step(sample, factor)
    return _apply(out, [warp])


def shift(sample: Sample, delta_mm: np.ndarray) -> Sample:
    """Move the crop centre by ``delta_mm`` (3,) mm, camera frame, and recut the patch."""
    sample = _check_numpy_sample(sample)
    out, warp = _shift_step(sample, delta_mm)
    return _apply(out, [warp])


# --------------------------------------------------------------------------- patch-only steps (pure)


def add_depth_noise(sample: Sample, rng: np.random.Generator, sigma_mm: float) -> Sample:
    """Gaussian depth noise of ``sigma_mm`` mm on valid pixels (-1 < d < 1), re-clamped."""
    sample = _check_numpy_sample(sample)
    p = sample.patch[0].astype(np.float64)
    valid = (p > FRONT) & (p < BACKGROUND)
    noisy = p + rng.normal(0.0, float(sigma_mm) / (0.5 * float(sample.cube_mm)), p.shape)
    noisy[noisy < FRONT] = FRONT
    noisy[noisy > BACKGROUND] = BACKGROUND
    out = np.where(valid, noisy, p)
    return sample._replace(patch=out.astype(np.float32)[None])


def drop_pixels(sample: Sample, rng: np.random.Generator, fraction: float) -> Sample:
    """Each pixel becomes background (no depth) with probability ``fraction``."""
    sample = _check_numpy_sample(sample)
    drop = rng.random(sample.patch.shape[1:]) < float(fraction)
    p = sample.patch[0].copy()
    p[drop] = BACKGROUND
    return sample._replace(patch=p[None])


def add_occluder(sample: Sample, rng: np.random.Generator, radius_px: float, margin_mm: float = 10.0) -> Sample:
    """A flat disc of radius ``radius_px`` in front of everything it covers.

    Centre: a random hand pixel (uniform in the patch when the mask is empty). Depth: uniform
    between the cube's front face (-1) and ``margin_mm`` in front of the nearest covered pixel.
    The covered pixels leave the hand mask.
    """
    sample = _check_numpy_sample(sample)
    p = sample.patch[0].copy()
    size = p.shape[-1]
    hand = np.argwhere(sample.mask)
    if len(hand):
        cv, cu = hand[rng.integers(len(hand))]
    else:
        cu, cv = rng.uniform(0, size - 1, 2)
    v, u = np.mgrid[0:size, 0:size]
    disc = (u - cu) ** 2 + (v - cv) ** 2 <= float(radius_px) ** 2
    if not disc.any():
        return sample
    nearest = float(p[disc].min()) - float(margin_mm) / (0.5 * float(sample.cube_mm))
    depth = rng.uniform(FRONT, nearest) if nearest > FRONT else FRONT
    p[disc] = depth
    return sample._replace(patch=p[None], mask=sample.mask & ~disc)


def fatten_edges(sample: Sample, rng: np.random.Generator, width_px: float, jump_mm: float = 10.0,
                 ragged: float = 0.5, cell_px: float = 12.0) -> Sample:
    """:func:`fatten_patch` on a sample's patch; the mask (the ideal render's visible hand
    pixels) is unchanged."""
    sample = _check_numpy_sample(sample)
    patch = fatten_patch(sample.patch[0], rng, width_px, float(sample.cube_mm), jump_mm, ragged, cell_px)
    return sample._replace(patch=patch[None])


def fatten_patch(patch: np.ndarray, rng: np.random.Generator, width_px: float, cube_mm: float,
                 jump_mm: float = 10.0, ragged: float = 0.5, cell_px: float = 12.0) -> np.ndarray:
    """Foreground fattening of an (S, S) normalised patch (``models.crop``; float32 out): across
    every depth jump of more than ``jump_mm`` between neighbouring pixels, the nearer surface's
    depth spreads over the farther one (or over the background) by up to ``width_px`` patch
    pixels (rounded to whole pixels).

    Why: sensors that match windows (Kinect v1's structured light with its 9 x 9 correlation
    window, the D4xx's stereo) give a pixel whose window straddles a silhouette the nearer
    surface's disparity, so a hand and its fingers come out wider by up to half a window and the
    gaps between spread fingers close. On NYU test frame 1 (Kinect v1, 0.77 m) the fingers are
    about twice as wide as a finger in our renders; the renders' sensor model only ever removes
    pixels at edges (``models.sensor.drop_edges``). 1 patch pixel is cube / S = 2.6 mm (250 mm,
    96 px), i.e. 2 image pixels of a 588-px-focal camera at 0.77 m.

    The width varies smoothly along an edge: width_px x (1 - ragged x f) with f a smooth random
    field in [0, 1] of correlation length ``cell_px`` (``ragged`` 0: exactly ``width_px``
    everywhere). Each ring is one step of a min filter (alternately the 4- and 8-neighbourhood,
    so the grown outline is an octagon, not a square).
    """
    width, ragged = float(width_px), float(ragged)
    if not (0.0 <= width <= 16.0) or not (0.0 <= ragged <= 1.0):
        raise ValueError(f"fatten_patch: expected width_px in [0, 16] and ragged in [0, 1], got {width_px}, {ragged}")
    p = np.array(patch, dtype=np.float32)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"fatten_patch: expected an (S, S) patch, got shape {p.shape}")
    size = p.shape[-1]
    cells = max(2, int(math.ceil(size / float(cell_px))) + 1)
    field = cv2.resize(rng.random((cells, cells)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    local = width * (1.0 - ragged * field)
    jump = float(jump_mm) / (0.5 * float(cube_mm))
    kernels = (cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), np.ones((3, 3), np.uint8))
    for ring in range(int(math.ceil(width))):
        near = cv2.erode(p, kernels[ring % 2], borderType=cv2.BORDER_REPLICATE)
        grow = (p - near > jump) & (local > ring + 0.5 - 1e-6)
        p = np.where(grow, near, p)
    return p


def augment(sample: Sample, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> Sample:
    """Random rotation, scale and crop-centre shift (one resampling), then foreground fattening,
    depth noise, pixel dropout and an occluder, each with its probability in ``cfg``. Pure given
    ``rng``."""
    sample = _check_numpy_sample(sample)
    if not isinstance(cfg, AugmentConfig):
        raise TypeError(f"cfg: expected AugmentConfig, got {type(cfg).__name__}")
    warps = []
    if rng.random() < cfg.rotation_prob:
        angle = math.radians(rng.uniform(-cfg.rotation_max_deg, cfg.rotation_max_deg))
        sample, w = _rotate_step(sample, angle)
        warps.append(w)
    if rng.random() < cfg.scale_prob:
        sample, w = _scale_step(sample, rng.uniform(*cfg.scale_range))
        warps.append(w)
    if rng.random() < cfg.shift_prob:
        # (recentre_prob 0 draws nothing more: the augmentations of older configs are unchanged)
        if cfg.recentre_prob > 0.0 and rng.random() < cfg.recentre_prob:
            palm = palm_centre(np.asarray(sample.joints_mm, dtype=np.float64))
            delta = palm - np.asarray(sample.com_mm, dtype=np.float64) + rng.normal(0.0, cfg.recentre_sigma_mm, 3)
        else:
            delta = rng.normal(0.0, cfg.shift_sigma_mm, 3)
        sample, w = _shift_step(sample, delta)
        warps.append(w)
    sample = _apply(sample, warps)
    if cfg.fatten_prob > 0.0 and rng.random() < cfg.fatten_prob:
        sample = fatten_edges(sample, rng, rng.uniform(0.0, cfg.fatten_max_px))
    if rng.random() < cfg.noise_prob:
        sample = add_depth_noise(sample, rng, cfg.noise_sigma_mm)
    if rng.random() < cfg.dropout_prob:
        sample = drop_pixels(sample, rng, rng.uniform(0.0, cfg.dropout_max_fraction))
    if rng.random() < cfg.occluder_prob:
        radius = rng.uniform(*cfg.occluder_radius) * sample.patch.shape[-1]
        sample = add_occluder(sample, rng, radius)
    return sample


# --------------------------------------------------------------------------- shards (IO)


def shard_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard files from files and/or split directories (``shard_<n>.npz`` inside, sorted)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if _SHARD_NAME.fullmatch(q.name)))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"shard path: expected a shard file or a split directory, got {p} (missing)")
    if not out:
        raise ValueError(f"shard paths: expected at least one shard_<n>.npz, found none in {items}")
    return out


def _shard_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """(frames, patch shape) from the npz's patch header, without decompressing the arrays."""
    import zipfile

    with zipfile.ZipFile(path) as zf, zf.open("patch.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return int(shape[0]), tuple(int(x) for x in shape)


class ShardDataset(Dataset):
    """Frames of one or more shards as torch :class:`Sample` s (optionally augmented).

    Main process or loader worker (each worker holds its own cache). Shards are decoded
    lazily; at most ``cache_shards`` stay in memory (least recently used goes first), about
    60 MB each at 2000 frames of 96 x 96. Use :class:`ShardSampler` for the order: random
    access over all shards would decode a shard for almost every item.

    augment: None (no augmentation) or an :class:`AugmentConfig`; the augmentation of item i
        is seeded by (seed, epoch, i), so it is the same whatever the worker count or order;
        :meth:`set_epoch` changes it between epochs.
    """

    def __init__(self, paths: str | Path | Sequence[str | Path], crop: CropConfig = CropConfig(),
                 augment: AugmentConfig | None = None, seed: int = 0, cache_shards: int = 3) -> None:
        if not isinstance(crop, CropConfig):
            raise TypeError(f"crop: expected CropConfig, got {type(crop).__name__}")
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise TypeError(f"augment: expected AugmentConfig or None, got {type(augment).__name__}")
        if isinstance(cache_shards, bool) or not isinstance(cache_shards, int) or cache_shards < 1:
            raise ValueError(f"cache_shards: expected an int >= 1, got {cache_shards!r}")
        self.paths = shard_paths(paths)
        self.crop, self.augment_cfg, self.seed, self.cache_shards = crop, augment, int(seed), cache_shards
        self.epoch = 0
        sizes = []
        for p in self.paths:
            n, shape = _shard_header(p)
            if shape[1:] != (crop.size, crop.size):
                raise ValueError(f"{p}: expected patches of {crop.size} x {crop.size} px (CropConfig.size), "
                                 f"got {shape[1:]}")
            sizes.append(n)
        self.shard_sizes: tuple[int, ...] = tuple(sizes)
        self._starts = np.concatenate(([0], np.cumsum(sizes))).tolist()
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.shard_loads = 0  # shards decoded so far (by this process)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, frame in the shard) of a dataset index."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} frames")
        index = int(index) % n
        shard = bisect.bisect_right(self._starts, index) - 1
        return shard, index - self._starts[shard]

    def shard(self, k: int) -> dict[str, np.ndarray]:
        """The arrays of shard k (:data:`SHARD_KEYS`), from the LRU cache or decoded now."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        from models.synth import load_shard

        raw = load_shard(self.paths[k])
        arrays = {key: raw[key] for key in SHARD_KEYS if key in raw}
        if "distortion" in raw and "coeffs" in raw:  # shards store their lens model
            arrays["distortion"] = raw["distortion"].astype(np.int64)
            arrays["coeffs"] = raw["coeffs"].astype(np.float32)
        elif "camera" not in raw or "cameras" not in raw["meta"]:
            raise ValueError(f"{self.paths[k]}: expected 'camera' and meta['cameras'] (the lens models), "
                             f"got arrays {sorted(raw)} and meta keys {sorted(raw['meta'])}")
        else:  # shards written before the lens model was stored: it is the camera preset's
            arrays.update(shard_lenses(raw["camera"], raw["meta"]["cameras"]))
        self._check_shard(k, arrays, raw["camera"])
        self.shard_loads += 1
        self._cache[k] = arrays
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return arrays

    def _check_shard(self, k: int, arrays: dict[str, np.ndarray], camera: np.ndarray) -> None:
        missing = [key for key in SHARD_KEYS if key not in arrays]
        if missing:
            raise ValueError(f"{self.paths[k]}: expected arrays {SHARD_KEYS}, missing {missing}")
        # The cube and the lens are not stored: check them through each camera's first crop window.
        for i in np.unique(camera, return_index=True)[1]:
            s = sample_from_arrays(arrays, int(i), self.crop.cube_mm)
            expected = crop_window(s.com_mm.astype(np.float64), sample_intrinsics(s), self.crop)
            if not np.allclose(s.crop_from_image, expected, rtol=1e-4, atol=1e-2):
                raise ValueError(f"{self.paths[k]} frame {i}: crop_from_image does not match CropConfig(cube_mm="
                                 f"{self.crop.cube_mm}, size={self.crop.size}) and the camera's lens: expected "
                                 f"{expected[:2].round(4).tolist()}, got {s.crop_from_image[:2].round(4).tolist()}")

    def raw(self, index: int) -> Sample:
        """Item ``index`` as a numpy :class:`Sample`, not augmented."""
        shard, frame = self.locate(index)
        return sample_from_arrays(self.shard(shard), frame, self.crop.cube_mm, self._starts[shard] + frame)

    def __getitem__(self, index: int) -> Sample:
        sample = self.raw(index)
        if self.augment_cfg is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(sample.index)])
            sample = augment(sample, rng, self.augment_cfg)
        return to_torch(sample)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers decode their own shards; never pickle arrays
        return state


class ShardSampler(Sampler[int]):
    """Dataset indices shard group by shard group: seeded, reshuffled per epoch.

    The shards are permuted (seed, epoch), cut into groups of ``buffer_shards``, and the frames
    of each group are permuted; ``shuffle=False`` gives 0 .. N-1. With the dataset's
    ``cache_shards >= buffer_shards`` each shard is decoded once per epoch and process.
    """

    def __init__(self, shard_sizes: Sequence[int] | ShardDataset, buffer_shards: int = 3, shuffle: bool = True,
                 seed: int = 0) -> None:
        sizes = shard_sizes.shard_sizes if isinstance(shard_sizes, ShardDataset) else tuple(shard_sizes)
        if not sizes or any(int(n) < 0 for n in sizes):
            raise ValueError(f"shard_sizes: expected non-negative frame counts, got {sizes}")
        if isinstance(buffer_shards, bool) or not isinstance(buffer_shards, int) or buffer_shards < 1:
            raise ValueError(f"buffer_shards: expected an int >= 1, got {buffer_shards!r}")
        self.sizes = tuple(int(n) for n in sizes)
        self.starts = np.concatenate(([0], np.cumsum(self.sizes))).astype(np.int64)
        self.buffer_shards, self.shuffle, self.seed, self.epoch = buffer_shards, bool(shuffle), int(seed), 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; iteration begins at position ``start`` of it (resuming)."""
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start <= len(self):
            raise ValueError(f"start: expected an int in [0, {len(self)}], got {start!r}")
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def order(self) -> np.ndarray:
        """(N,) int64: this epoch's indices."""
        if not self.shuffle:
            return np.arange(len(self), dtype=np.int64)
        rng = np.random.default_rng([self.seed, self.epoch])
        shards = rng.permutation(len(self.sizes))
        parts = []
        for g in range(0, len(shards), self.buffer_shards):
            members = shards[g:g + self.buffer_shards]
            group = np.concatenate([np.arange(self.starts[k], self.starts[k + 1]) for k in members])
            parts.append(rng.permutation(group))
        return np.concatenate(parts).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:].tolist())


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(paths: str | Path | Sequence[str | Path], batch_size: int, augment_cfg: AugmentConfig | None = None,
                seed: int = 0, workers: int = 0, *, crop: CropConfig = CropConfig(), buffer_shards: int = 3,
                shuffle: bool = True, drop_last: bool = False) -> DataLoader:
    """A DataLoader of :class:`Batch` es over shards, in :class:`ShardSampler` order.

    Call :func:`set_epoch` before each epoch (new order and new augmentations); the batches
    depend only on (paths, seed, epoch, configs), not on ``workers``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    dataset = ShardDataset(paths, crop=crop, augment=augment_cfg, seed=seed, cache_shards=buffer_shards)
    sampler = ShardSampler(dataset, buffer_shards=buffer_shards, shuffle=shuffle, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      drop_last=drop_last, worker_init_fn=_worker_init if workers > 0 else None,
                      persistent_workers=False)


def set_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Set the epoch of a :func:`make_loader` loader's sampler (order) and dataset (augmentation);
    ``start`` skips the first ``start`` samples of the epoch's order (resuming mid-epoch)."""
    loader.sampler.set_epoch(epoch, start)
    loader.dataset.set_epoch(epoch)
