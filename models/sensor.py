"""Depth-sensor model: what a real depth camera reports for an ideal rendered depth image.

Units and frames (as in ``models/render.py`` and ``calib``): camera frame x right, y down,
z forward; millimetres. Depth images are (H, W) float32 **z in mm**, 0 = no valid depth (the
invalid-value convention of every sensor here, and of the output). Pixel (u, v) = (column, row),
(0, 0) the centre of the top-left pixel. Disparities are in pixels (px), baselines in mm.

Three families (``FAMILIES``):

* ``"d4xx"`` - Intel RealSense D415/D435/D455 active stereo. RMS noise grows as z^2:
  sigma = z^2 * subpixel / (fx * baseline) (Intel's "Depth RMS error" formula, tuning white
  paper; subpixel ~0.08 px is Intel's recommended working value, agrunnet in
  librealsense#3904). The second imager sits at +x, so background pixels just LEFT of a near
  object are occluded for it (invalid band of width fx*b*(1/z_near - 1/z_far) px), and the image's
  left columns that it cannot see are invalid too. Minimum z = fx * b / 126 (the 126-px disparity
  search range, librealsense issue threads on MinZ). Speckle holes on dark/steep surfaces.
* ``"structured_light"`` - SR300/SR305 coded light and Kinect v1 (PrimeSense). Noise ~ z^2,
  projector shadows on one side, edge dropout. Kinect v1 reports depth from an 11-bit disparity in
  1/8-px steps, so its depth steps are dz = z^2 / (8 fx b) (2.8 mm at 1 m, 11 mm at 2 m with
  fx = 588 px, b = 75 mm; the OpenKinect calibration fit of 1/z against raw disparity has slope
  2.88e-5 /cm per unit, i.e. the same 1/(8 fx b)). With a disparity error of half a step the
  random error is sigma = z^2 / (16 fx b) = 1.42 mm * (z / 1 m)^2, Khoshelham & Elberink 2012's
  theoretical model (their 1.42e-5 is per cm: sigma_Z = 1.42e-3 * Z^2 with Z and sigma in METRES;
  read as "mm with z in m" it would be 1000x too small), ~4 cm at 5 m as they measured. We split
  that total into a white part (0.2 of its sigma) and a part correlated over ~8 px (the 9x9
  correlation window), sigma_total^2 = sigma_white^2 + sigma_corr^2: on
  the NYU frame the hand's second-difference noise is only 0.46 mm at 0.78 m, which the 1.65 mm
  disparity steps alone explain (our reading of one frame).
  SR305 values are OUR MEASUREMENTS on the 19 real SR305 frames in ``shared/data``: white-noise
  equivalent 0.19 mm at 0.7 m (second differences), 0.30 mm residual after a 5x5 box filter (a
  correlated part ~2x the white one over ~4 px), shadows on the RIGHT of near objects whose widths
  fit an emitter baseline of ~50 mm (20-27 px behind a hand at 485 mm on a body at 880 mm), depth
  unit 0.125 mm, nothing beyond 1.5 m.
* ``"tof"`` - Kinect v2, Azure Kinect, Senz3D (DS325) and L515: low noise roughly constant with
  z, flying pixels (mixtures of foreground and background depth) at silhouettes, multipath bias
  near concave corners, no shadows. Kinect v2 sigma ~1.5 mm up to ~3 m (Fankhauser et al. 2015,
  from memory, not re-checked here); ranges are datasheet values; the rest is OUR ESTIMATE.

Every effect is a small pure function of (depth, [rng,] model[, intr]) returning a new image;
:func:`apply_sensor` composes them in a fixed order. Randomness comes only from the ``rng``
argument (``numpy.random.Generator``): the same seed gives the same bytes. White noise and per-
pixel uniforms are read at a random offset from a fixed, lazily built bank of 2^21 samples (a
free slice instead of 3 ms of fresh normals per 640x480 frame), and the correlated noise is a
window (random offset and sign) of a fixed 1536^2 smooth texture per correlation length; the
offsets come from ``rng``. Cost on one shared core: about 2 ms per 640x480 frame (see
``apply_sensor``), proportionally less for the hand's region of interest.

No IO except in :func:`preview` / :func:`main` (``python -m models.sensor --preview OUT.png``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from calib import Intrinsics, get_preset, list_presets
from models.joints import palm_centre

__all__ = [
    "FAMILIES", "SensorModel", "SensorJitter", "PresetSensor",
    "noise_sigma_mm", "add_depth_noise", "quantize_depth", "discontinuity_mask", "drop_edges",
    "cast_shadows", "add_flying_pixels", "add_multipath", "drop_holes", "drop_speckle",
    "drop_grazing", "apply_range", "apply_sensor", "to_raw",
    "family_for_preset", "preset_sensor", "sensor_for_preset", "sample_sensor", "preview",
]

FAMILIES: tuple[str, ...] = ("d4xx", "structured_light", "tof")

_REF_PIXELS = 640 * 480          # holes_per_frame is per this many pixels
_D4XX_DISPARITY_RANGE_PX = 126.0  # D4xx disparity search range: MinZ = fx * b / 126
_BANK_SIZE = 1 << 21
_BANK_SEED = 0x5E5505


# ============================================================================ parameters


@dataclass(frozen=True)
class SensorModel:
    """Parameters of one depth sensor. All lengths mm, angles degrees, probabilities in [0, 1].

    family: one of ``FAMILIES``.
    min_range_mm, max_range_mm: valid depth interval; reported depths outside are 0.
    depth_unit_mm: raw depth unit (output quantisation step): 1.0 (D4xx, Kinect), 0.125 (SR30x),
        0.25 (L515). 0 disables the linear quantisation.
    baseline_mm: distance along camera x from the depth camera to the projector / second imager.
        Used by the z^2 noise term, the shadows and the disparity quantisation. 0 = none.
    shadow_side: -1 = shadows LEFT of near objects (emitter at +x, D4xx), +1 = RIGHT (emitter
        at -x, SR30x), 0 = no shadows (ToF).
    border_invalid: D4xx: pixels the second imager cannot see (left image band) are invalid.
    noise_const_mm: constant part of the white noise sigma.
    noise_quad_mm_per_m2: sigma term c * (z / 1 m)^2, mm (ToF drift with range).
    noise_disparity_px: disparity error sigma_d (px); adds z^2 * sigma_d / (fx * baseline) mm.
        So sigma(z) = noise_const_mm + noise_quad_mm_per_m2 * z_m^2 + sigma_d * z^2 / (fx b).
    lowfreq_ratio: std of a spatially correlated component, as a multiple of sigma(z).
    lowfreq_cell_px: correlation length of that component (grid spacing of the field), px.
    disparity_step_px: disparity quantisation step (Kinect v1: 1/8 px); 1/z is rounded to
        multiples of step / (fx * baseline). 0 = none.
    edge_threshold_mm: a neighbour-to-neighbour depth jump above this is a silhouette edge.
    edge_dropout_px: max width of the band dropped on each side of an edge; the width is
        uniform in [0, max] and varies along the edge with correlation length edge_cell_px.
    edge_cell_px: correlation length of the band width (raggedness scale), px.
    flying_pixel_prob: probability that a pixel next to an edge reports a mixture
        near + a (far - near), a ~ U(0, 1), of the depths on both sides (ToF).
    multipath_mm: max extra depth on surfaces close (in the image) to a nearer object (ToF).
    multipath_radius_px: image radius of that influence, px.
    holes_per_frame: mean number of random hole blobs per 640x480 pixels (Poisson).
    hole_radius_px: (min, max) blob semi-axis, px.
    speckle_prob: probability that a valid pixel is dropped on its own.
    grazing_start_deg: incidence angle (ray vs surface normal) where grazing dropout starts.
    grazing_dropout_prob: dropout probability at 90 deg; it ramps linearly in cos(angle)
        from 0 at grazing_start_deg. Needs normals.
    name: free text (preset name).
    """

    family: str
    min_range_mm: float
    max_range_mm: float
    depth_unit_mm: float = 1.0
    baseline_mm: float = 0.0
    shadow_side: int = 0
    border_invalid: bool = False
    noise_const_mm: float = 0.0
    noise_quad_mm_per_m2: float = 0.0
    noise_disparity_px: float = 0.0
    lowfreq_ratio: float = 0.0
    lowfreq_cell_px: float = 8.0
    disparity_step_px: float = 0.0
    edge_threshold_mm: float = 15.0
    edge_dropout_px: float = 0.0
    edge_cell_px: float = 3.0
    flying_pixel_prob: float = 0.0
    multipath_mm: float = 0.0
    multipath_radius_px: float = 8.0
    holes_per_frame: float = 0.0
    hole_radius_px: tuple[float, float] = (2.0, 6.0)
    speckle_prob: float = 0.0
    grazing_start_deg: float = 70.0
    grazing_dropout_prob: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"SensorModel.family: expected one of {FAMILIES}, got {self.family!r}")
        for name in _numeric_fields():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"SensorModel.{name}: expected a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"SensorModel.{name}: expected >= 0, got {value}")
        if not 0 < self.min_range_mm < self.max_range_mm:
            raise ValueError("SensorModel: expected 0 < min_range_mm < max_range_mm, got "
                             f"{self.min_range_mm} and {self.max_range_mm}")
        if self.shadow_side not in (-1, 0, 1):
            raise ValueError(f"SensorModel.shadow_side: expected -1, 0 or 1, got {self.shadow_side!r}")
        for field in ("flying_pixel_prob", "speckle_prob", "grazing_dropout_prob"):
            if getattr(self, field) > 1:
                raise ValueError(f"SensorModel.{field}: expected a probability <= 1, got {getattr(self, field)}")
        if not 0 <= self.grazing_start_deg < 90:
            raise ValueError(f"SensorModel.grazing_start_deg: expected [0, 90), got {self.grazing_start_deg}")
        lo, hi = self.hole_radius_px
        if not 0 < lo <= hi:
            raise ValueError(f"SensorModel.hole_radius_px: expected 0 < min <= max, got {self.hole_radius_px}")
        if (self.shadow_side or self.disparity_step_px or self.border_invalid) and self.baseline_mm <= 0:
            raise ValueError("SensorModel: shadows, border band and disparity steps need baseline_mm > 0, "
                             f"got {self.baseline_mm}")
        if self.lowfreq_cell_px < 1 or self.edge_cell_px < 1:
            raise ValueError("SensorModel: expected lowfreq_cell_px and edge_cell_px >= 1 px, got "
                             f"{self.lowfreq_cell_px} and {self.edge_cell_px}")


@lru_cache(maxsize=1)
def _numeric_fields() -> tuple[str, ...]:
    """SensorModel's fields that must be finite numbers >= 0 (a sensor is drawn per frame)."""
    return tuple(f.name for f in dataclasses.fields(SensorModel)
                 if f.name not in ("family", "name", "hole_radius_px", "border_invalid", "shadow_side"))


class PresetSensor(NamedTuple):
    """A preset's sensor model and where its numbers come from."""

    model: SensorModel
    source: str


# ---------------------------------------------------------------------------- presets

_SR_SOURCE = ("SR300/SR305: range 0.2-1.5 m (SR305 dataset readme: max 150 cm); baseline 50 mm, "
              "right-side shadows, 0.19 mm white noise at 0.7 m (sigma_d 0.0095 px) plus a correlated "
              "part (4 px) twice as large, unit 0.125 mm: "
              "OUR MEASUREMENTS on shared/data/realsense_sr305; dropout/holes our estimates.")
_K1_SOURCE = ("Kinect v1: b = 75 mm, 1/8-px disparity steps (OpenKinect fit), total sigma_d = 1/16 px "
              "-> 1.42 mm at 1 m (Khoshelham & Elberink 2012), white part 0.2 of it, the rest correlated "
              "over 8 px (our reading of the NYU frame); shadows LEFT of objects "
              "(projector at +x: our reading of the layout, not measured); range 0.5-4 m, "
              "dropout/holes: our estimates.")
_D4_SOURCE = ("D4xx: sigma = z^2 * 0.08 px / (fx b) (Intel RMS-error formula, subpixel 0.08 "
              "per librealsense#3904); b = 55/50/95 mm (D415/D435/D455 datasheet); MinZ = fx b / 126; "
              "left occlusion band and left image band (stereo geometry, depth on the left imager); "
              "max 10 m (datasheet); holes/speckle: our estimates.")
_TOF_SOURCE = {
    "kinect_v2": "Kinect v2: 0.5-4.5 m (datasheet); sigma ~1.2 + 0.3 z_m^2 mm (near Fankhauser et al. "
                 "2015, recalled); flying pixels/multipath: our estimates.",
    "azure": "Azure Kinect: range per depth mode (Azure Kinect DK hardware spec: NFOV unbinned "
             "0.5-3.86 m, NFOV binned 0.5-5.46, WFOV binned 0.25-2.88, WFOV unbinned 0.25-2.21); "
             "sigma 1 + 1 z_m^2 mm (spec bound 17 mm; our estimate of typical); rest our estimates.",
    "senz3d": "Creative Senz3D / DS325: 0.15-1.0 m (datasheet); sigma 2 + 6 z_m^2 mm, heavy flying "
              "pixels: our estimates from the look of ICVL/MSRA frames.",
    "l515": "L515 LiDAR: 0.25-9 m (datasheet), unit 0.25 mm; sigma 1 + 1 z_m^2 mm: our estimate.",
}


def _d4xx(name: str, intr: Intrinsics, baseline_mm: float) -> SensorModel:
    return SensorModel(
        family="d4xx", name=name,
        min_range_mm=round(intr.fx * baseline_mm / _D4XX_DISPARITY_RANGE_PX, 1), max_range_mm=10000.0,
        depth_unit_mm=intr.depth_scale * 1000.0, baseline_mm=baseline_mm, shadow_side=-1,
        border_invalid=True, noise_disparity_px=0.08, lowfreq_ratio=0.6, lowfreq_cell_px=6.0,
        edge_threshold_mm=15.0, edge_dropout_px=2.0, edge_cell_px=3.0,
        holes_per_frame=3.0, hole_radius_px=(2.0, 10.0), speckle_prob=0.002,
        grazing_start_deg=65.0, grazing_dropout_prob=0.6,
    )


def _sr30x(name: str, intr: Intrinsics) -> SensorModel:
    return SensorModel(
        family="structured_light", name=name, min_range_mm=200.0, max_range_mm=1500.0,
        depth_unit_mm=intr.depth_scale * 1000.0, baseline_mm=50.0, shadow_side=1,
        noise_disparity_px=0.0095, lowfreq_ratio=2.0, lowfreq_cell_px=4.0,
        edge_threshold_mm=15.0, edge_dropout_px=1.3, edge_cell_px=5.0,
        holes_per_frame=1.0, hole_radius_px=(2.0, 6.0), speckle_prob=0.0005,
        grazing_start_deg=60.0, grazing_dropout_prob=0.7,
    )


# Kinect v1: total disparity error 1/16 px (Khoshelham & Elberink), 20 % of it white and the rest
# correlated over ~8 px (the 9x9 correlation window): the NYU frame's hand has a second-difference
# (white-equivalent) noise of only 0.46 mm at 0.78 m, which the 1.65-mm disparity steps alone explain.
_K1_SIGMA_D = 1.0 / 16.0
_K1_WHITE = 0.2


def _kinect_v1(name: str, intr: Intrinsics) -> SensorModel:
    return SensorModel(
        family="structured_light", name=name, min_range_mm=500.0, max_range_mm=4000.0,
        depth_unit_mm=intr.depth_scale * 1000.0, baseline_mm=75.0, shadow_side=-1,
        noise_disparity_px=_K1_WHITE * _K1_SIGMA_D, lowfreq_ratio=math.sqrt(1.0 - _K1_WHITE ** 2) / _K1_WHITE,
        lowfreq_cell_px=8.0,
        disparity_step_px=1.0 / 8.0, edge_threshold_mm=15.0, edge_dropout_px=2.0, edge_cell_px=6.0,
        holes_per_frame=1.5, hole_radius_px=(2.0, 8.0), speckle_prob=0.0005,
        grazing_start_deg=65.0, grazing_dropout_prob=0.6,
    )


def _tof(name: str, intr: Intrinsics, lo: float, hi: float, const: float, quad: float,
         flying: float) -> SensorModel:
    return SensorModel(
        family="tof", name=name, min_range_mm=lo, max_range_mm=hi,
        depth_unit_mm=intr.depth_scale * 1000.0, noise_const_mm=const, noise_quad_mm_per_m2=quad,
        lowfreq_ratio=0.3, lowfreq_cell_px=8.0, edge_threshold_mm=15.0, edge_dropout_px=1.0,
        edge_cell_px=3.0, flying_pixel_prob=flying, multipath_mm=4.0, multipath_radius_px=8.0,
        holes_per_frame=0.5, hole_radius_px=(2.0, 5.0), speckle_prob=0.0,
        grazing_start_deg=75.0, grazing_dropout_prob=0.3,
    )


_AZURE_RANGE = {"nfov_unbinned": (500.0, 3860.0), "nfov_binned": (500.0, 5460.0),
                "wfov_binned": (250.0, 2880.0), "wfov_unbinned": (250.0, 2210.0)}
_DATASET_CAMERA = {"nyu": "kinect_v1", "hands2017": "sr300", "icvl": "senz3d", "msra": "senz3d"}


def preset_sensor(name: str) -> PresetSensor:
    """Sensor model of a ``calib`` preset and a sentence on where its numbers come from."""
    intr = get_preset(name).intrinsics
    camera = _DATASET_CAMERA.get(name, name)
    if camera.startswith(("d415", "d435", "d455")):
        return PresetSensor(_d4xx(name, intr, {"d415": 55.0, "d435": 50.0, "d455": 95.0}[camera[:4]]), _D4_SOURCE)
    if camera.startswith(("sr300", "sr305")):
        return PresetSensor(_sr30x(name, intr), _SR_SOURCE)
    if camera.startswith("kinect_v1"):
        return PresetSensor(_kinect_v1(name, intr), _K1_SOURCE)
    if camera.startswith("kinect_v2"):
        return PresetSensor(_tof(name, intr, 500.0, 4500.0, 1.2, 0.3, 0.5), _TOF_SOURCE["kinect_v2"])
    if camera.startswith("azure_kinect_"):
        lo, hi = _AZURE_RANGE[camera[len("azure_kinect_"):]]
        return PresetSensor(_tof(name, intr, lo, hi, 1.0, 1.0, 0.3), _TOF_SOURCE["azure"])
    if camera.startswith("senz3d"):
        return PresetSensor(_tof(name, intr, 150.0, 1000.0, 2.0, 6.0, 0.8), _TOF_SOURCE["senz3d"])
    if camera.startswith("l515"):
        return PresetSensor(_tof(name, intr, 250.0, 9000.0, 1.0, 1.0, 0.3), _TOF_SOURCE["l515"])
    raise ValueError(f"no sensor model for camera preset {name!r}")


@lru_cache(maxsize=64)  # frozen results; called per rendered frame
def sensor_for_preset(name: str) -> SensorModel:
    """The sensor model of a ``calib`` preset (``python -m calib list``); ValueError if unknown."""
    if name not in _preset_names():
        raise ValueError(f"unknown camera preset {name!r}; expected one of {list(_preset_names())}")
    return preset_sensor(name).model


@lru_cache(maxsize=1)
def _preset_names() -> tuple[str, ...]:
    return tuple(p.name for p in list_presets())


def family_for_preset(name: str) -> str:
    """"d4xx", "structured_light" or "tof" for a ``calib`` preset name."""
    return sensor_for_preset(name).family


# Reference presets each family is sampled from, with weights.
_FAMILY_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    "d4xx": (("d435_848x480", 0.5), ("d415_848x480", 0.3), ("d455_848x480", 0.2)),
    "structured_light": (("sr305_640x480", 0.6), ("kinect_v1_640x480", 0.4)),
    "tof": (("kinect_v2_512x424", 0.4), ("azure_kinect_nfov_unbinned", 0.3),
            ("senz3d_320x240", 0.2), ("l515_640x480", 0.1)),
}


@dataclass(frozen=True)
class SensorJitter:
    """How :func:`sample_sensor` spreads a preset's parameters (our choices, for robustness).

    Multiplicative factors are log-uniform in [1 / f, f]; *_range are absolute uniform ranges.
    """

    noise_factor: float = 1.6            # all three sigma terms together
    lowfreq_factor: float = 1.6
    baseline_factor: float = 1.15        # shadow width and z^2 noise scale
    range_factor: float = 1.1            # min and max range, independently
    edge_dropout_range_px: tuple[float, float] = (0.5, 2.5)
    edge_threshold_range_mm: tuple[float, float] = (10.0, 25.0)
    holes_factor: float = 2.0
    speckle_factor: float = 2.0
    grazing_start_range_deg: tuple[float, float] = (-10.0, 10.0)   # added
    flying_range: tuple[float, float] = (0.2, 0.9)                 # ToF only
    multipath_factor: float = 2.0


def _log_uniform(rng: np.random.Generator, factor: float) -> float:
    return float(math.exp(rng.uniform(-math.log(factor), math.log(factor))))


def range_envelope_mm(name: str, jitter: SensorJitter = SensorJitter()) -> tuple[float, float]:
    """(nearest min range, farthest max range), mm, that :func:`sample_sensor` can draw for the
    preset ``name``: a depth outside it is out of range for every drawn sensor."""
    base = sensor_for_preset(name)
    lo = base.min_range_mm / jitter.range_factor
    hi = max(base.max_range_mm * jitter.range_factor, 2.0 * base.min_range_mm * jitter.range_factor)
    return lo, hi


def sample_sensor(rng: np.random.Generator, kind: str, jitter: SensorJitter = SensorJitter()) -> SensorModel:
    """A randomised sensor model: ``kind`` is a family (a reference preset of it is drawn) or a preset name.

    Each parameter is spread as documented in :class:`SensorJitter`; the same rng state gives
    the same model. Shadows keep the physical side: mirror the mesh (not the image) to make left
    hands, or flip ``shadow_side`` together with the image.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"sample_sensor: expected a numpy Generator, got {type(rng).__name__}")
    if kind not in _FAMILY_PRESETS and kind not in _preset_names():
        raise ValueError(f"sample_sensor: expected a family {FAMILIES} or a camera preset name, got {kind!r}")
    if kind in _FAMILY_PRESETS:
        names, weights = zip(*_FAMILY_PRESETS[kind])
        kind = names[int(rng.choice(len(names), p=np.asarray(weights) / sum(weights)))]
    base = sensor_for_preset(kind)
    noise = _log_uniform(rng, jitter.noise_factor)
    lo = base.min_range_mm * _log_uniform(rng, jitter.range_factor)
    hi = max(base.max_range_mm * _log_uniform(rng, jitter.range_factor), lo * 2.0)
    flying = base.flying_pixel_prob
    if base.family == "tof":
        flying = float(rng.uniform(*jitter.flying_range))
    return dataclasses.replace(
        base,
        min_range_mm=lo, max_range_mm=hi,
        baseline_mm=base.baseline_mm * _log_uniform(rng, jitter.baseline_factor),
        noise_const_mm=base.noise_const_mm * noise,
        noise_quad_mm_per_m2=base.noise_quad_mm_per_m2 * noise,
        noise_disparity_px=base.noise_disparity_px * noise,
        lowfreq_ratio=base.lowfreq_ratio * _log_uniform(rng, jitter.lowfreq_factor),
        edge_dropout_px=float(rng.uniform(*jitter.edge_dropout_range_px)) * (1.0 if base.edge_dropout_px else 0.0),
        edge_threshold_mm=float(rng.uniform(*jitter.edge_threshold_range_mm)),
        holes_per_frame=base.holes_per_frame * _log_uniform(rng, jitter.holes_factor),
        speckle_prob=min(1.0, base.speckle_prob * _log_uniform(rng, jitter.speckle_factor)),
        grazing_start_deg=float(np.clip(base.grazing_start_deg + rng.uniform(*jitter.grazing_start_range_deg),
                                        30.0, 85.0)),
        flying_pixel_prob=flying,
        multipath_mm=base.multipath_mm * _log_uniform(rng, jitter.multipath_factor),
    )


# ============================================================================ helpers
#
# Speed notes (640x480 float32, 2 shared cores): np.where, np.abs and masked assignment cost
# 0.2-1.5 ms per call here, and cv2 ops with a scalar operand ~0.05-0.2 ms, while numpy compares
# and cv2 array-array ops take 0.02-0.05 ms. So masks are uint8 0/1 images (views of numpy
# compares) combined with cv2 and applied once; edges and shadows are sparse index lists.


def _check_depth(depth: np.ndarray, what: str = "depth_mm") -> np.ndarray:
    if not isinstance(depth, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(depth).__name__}")
    if depth.ndim != 2:
        raise ValueError(f"{what}: expected shape (H, W), got {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise TypeError(f"{what}: expected float mm, got dtype {depth.dtype}")
    return np.ascontiguousarray(depth, dtype=np.float32)


def _check_intr(depth: np.ndarray, intr: Intrinsics) -> None:
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intr: expected calib.Intrinsics, got {type(intr).__name__}")
    if depth.shape != (intr.height, intr.width):
        raise ValueError(f"depth_mm: expected shape (H, W) = ({intr.height}, {intr.width}) from intr, "
                         f"got {depth.shape}")


def _reference(depth: np.ndarray, reference_mm: np.ndarray | None) -> np.ndarray:
    """The ideal image edges are found on: ``reference_mm`` (same shape) or ``depth`` itself."""
    if reference_mm is None:
        return depth
    ref = _check_depth(reference_mm, "reference_mm")
    if ref.shape != depth.shape:
        raise ValueError(f"reference_mm: expected shape {depth.shape}, got {ref.shape}")
    return ref


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy Generator, got {type(rng).__name__}")


@lru_cache(maxsize=1)
def _normal_bank() -> np.ndarray:
    bank = np.random.Generator(np.random.PCG64(_BANK_SEED)).standard_normal(_BANK_SIZE, dtype=np.float32)
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=1)
def _uniform_bank() -> np.ndarray:
    bank = np.random.Generator(np.random.PCG64(_BANK_SEED + 1)).random(_BANK_SIZE, dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _bank_window(rng: np.random.Generator, shape: tuple[int, int], normal: bool) -> np.ndarray:
    """(H, W) float32 N(0, 1) (``normal``) or U[0, 1) samples: a read-only view of the bank at a
    random offset drawn from ``rng``; fresh samples when the image is larger than half the bank."""
    bank = _normal_bank() if normal else _uniform_bank()
    n = shape[0] * shape[1]
    if n > bank.size // 2:
        return rng.standard_normal(shape, dtype=np.float32) if normal else rng.random(shape, dtype=np.float32)
    start = int(rng.integers(0, bank.size - n + 1))
    return bank[start:start + n].reshape(shape)


@lru_cache(maxsize=16)
def _bilinear_inv_std(height: int, width: int, grid_h: int, grid_w: int) -> np.ndarray:
    """(H, W) 1 / std of a cv2 INTER_LINEAR upsampling of a unit-variance white grid."""
    def axis(n_dst: int, n_src: int) -> np.ndarray:
        x = np.clip((np.arange(n_dst) + 0.5) * (n_src / n_dst) - 0.5, 0.0, n_src - 1.0)
        a = x - np.floor(x)
        return (1.0 - a) ** 2 + a ** 2
    out = (1.0 / np.sqrt(axis(height, grid_h)[:, None] * axis(width, grid_w)[None, :])).astype(np.float32)
    out.setflags(write=False)
    return out


def _grid_shape(shape: tuple[int, int], cell_px: float) -> tuple[int, int]:
    return (max(2, int(math.ceil(shape[0] / cell_px)) + 1), max(2, int(math.ceil(shape[1] / cell_px)) + 1))


@lru_cache(maxsize=4)
def _smooth_texture(cell_px: float) -> np.ndarray:
    """A fixed _TEXTURE x _TEXTURE unit-variance smooth field (built once per cell size)."""
    shape = (_TEXTURE, _TEXTURE)
    gh, gw = _grid_shape(shape, cell_px)
    grid = np.random.Generator(np.random.PCG64(_BANK_SEED + 2)).standard_normal((gh, gw), dtype=np.float32)
    field = cv2.resize(grid, (_TEXTURE, _TEXTURE), interpolation=cv2.INTER_LINEAR)
    field = cv2.multiply(field, _bilinear_inv_std(_TEXTURE, _TEXTURE, gh, gw))
    field.setflags(write=False)
    return field


def _smooth_window(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> tuple[np.ndarray, float]:
    """A zero-mean unit-variance Gaussian field (H, W) float32, correlation length ~cell_px, and a
    random sign (+-1) to apply to it: a window at a random offset of the cached texture when the
    image fits in 2/3 of its side (a read-only, possibly strided view), else made afresh."""
    h, w = shape
    if 3 * max(h, w) <= 2 * _TEXTURE:
        r0, c0, flip = (int(x) for x in rng.integers(0, [_TEXTURE - h + 1, _TEXTURE - w + 1, 2]))
        return _smooth_texture(float(cell_px))[r0:r0 + h, c0:c0 + w], 1.0 - 2.0 * flip
    gh, gw = _grid_shape(shape, cell_px)
    grid = np.ascontiguousarray(_bank_window(rng, (gh, gw), normal=True))
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(field, _bilinear_inv_std(h, w, gh, gw)), 1.0


def _uniform_field(rng: np.random.Generator, shape: tuple[int, int], cell_px: float, high: float) -> np.ndarray:
    """(H, W) float32 field of values in [0, high], smooth over ~cell_px (1: white)."""
    if cell_px <= 1.0:
        return _bank_window(rng, shape, normal=False) * np.float32(high)
    gh, gw = _grid_shape(shape, cell_px)
    grid = _bank_window(rng, (gh, gw), normal=False) * np.float32(high)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _nonzero(mask: np.ndarray) -> np.ndarray:
    """Flat int64 indices of the nonzero bytes of a contiguous uint8 image (fast when sparse)."""
    flat = mask.reshape(-1)
    whole = flat.size // 8 * 8
    blocks = np.flatnonzero(flat[:whole].view(np.uint64))
    cand = (blocks[:, None] * 8 + np.arange(8)).reshape(-1)
    idx = cand[flat[cand] != 0]
    tail = np.flatnonzero(flat[whole:]) + whole
    return np.concatenate([idx, tail]) if tail.size else idx


def _zero_where(depth: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Copy of ``depth`` with 0 where the uint8 mask ``drop`` is nonzero."""
    keep = _mask(drop == 0)
    return cv2.copyTo(depth, keep, np.zeros_like(depth))


def _mask(boolean: np.ndarray) -> np.ndarray:
    """uint8 0/1 view of a bool array (masks here are uint8, nonzero = set)."""
    return boolean.view(np.uint8)


def _in_range(depth: np.ndarray, model: SensorModel) -> np.ndarray:
    return _mask((depth >= np.float32(model.min_range_mm)) & (depth <= np.float32(model.max_range_mm)))


_KERNEL3 = np.ones((3, 3), np.uint8)
_TEXTURE = 1536   # side of the cached smooth-noise textures, px (9 MB each)
_FAR_MM = 1.0e7   # stands for "no surface" where an invalid pixel must act as infinitely far


# ============================================================================ effects (masks)


def _edge_u8(depth: np.ndarray, threshold_mm: float) -> np.ndarray:
    """(H, W) uint8 255 where a 4-neighbour differs by more than threshold_mm, else 0."""
    thr = np.float32(threshold_mm)
    if min(depth.shape) < 2:   # a single row or column: numpy (cv2 refuses empty slices)
        edge = np.zeros(depth.shape, bool)
        for axis in (0, 1):
            if depth.shape[axis] > 1:
                jump = np.abs(np.diff(depth, axis=axis)) > thr
                lo = [slice(None), slice(None)]
                hi = [slice(None), slice(None)]
                lo[axis], hi[axis] = slice(None, -1), slice(1, None)
                edge[tuple(lo)] |= jump
                edge[tuple(hi)] |= jump
        return _mask(edge)
    jx = _mask(cv2.absdiff(depth[:, 1:], depth[:, :-1]) > thr)
    jy = _mask(cv2.absdiff(depth[1:], depth[:-1]) > thr)
    edge = np.zeros(depth.shape, np.uint8)
    edge[:, 1:] = jx
    cv2.bitwise_or(edge[:, :-1], jx, dst=edge[:, :-1])
    cv2.bitwise_or(edge[1:], jy, dst=edge[1:])
    cv2.bitwise_or(edge[:-1], jy, dst=edge[:-1])
    return edge


def _edge_drop_u8(edge: np.ndarray, rng: np.random.Generator, model: SensorModel) -> np.ndarray:
    """Drop mask of the edge bands, from the edge mask ``edge`` (uint8, see :func:`_edge_u8`)."""
    width = _uniform_field(rng, edge.shape, model.edge_cell_px, model.edge_dropout_px)
    drop = cv2.bitwise_and(edge, _mask(width > np.float32(0.5)))
    if model.edge_dropout_px > 1.5:
        ring = cv2.dilate(edge, _KERNEL3)
        drop = cv2.bitwise_or(drop, cv2.bitwise_and(ring, _mask(width > np.float32(1.5))))
    return drop


def _shadow_indices(depth: np.ndarray, model: SensorModel, fx: float) -> np.ndarray:
    """Flat indices of pixels the emitter / second imager cannot see (see :func:`cast_shadows`).

    Sources (pixels whose disparity d = fx b / z exceeds that of their neighbour on the shadow
    side by > 1 px; an invalid neighbour has d = 0) are prefiltered on the depth step, which must
    exceed z_min^2 / (fx b); from each source the pixels k = 1, 2, ... columns away on the shadow
    side are hidden while d(source) - d(pixel) > k.
    """
    h, w = depth.shape
    side = model.shadow_side
    zmax = float(depth.max())
    empty = np.empty(0, dtype=np.int64)
    if side == 0 or zmax <= 0 or w < 2:
        return empty
    fb = float(fx * model.baseline_mm)
    far = cv2.scaleAdd((depth == 0).astype(np.float32), _FAR_MM, depth)   # invalid -> far
    zmin = float(cv2.minMaxLoc(far)[0])
    near_side, other = (far[:, 1:], far[:, :-1]) if side < 0 else (far[:, :-1], far[:, 1:])
    step = cv2.subtract(other, near_side)              # depth step towards the shadow side, mm
    idx = _nonzero(_mask(step > np.float32(0.99 * zmin * zmin / fb)))
    if idx.size == 0:
        return empty
    rows, cols = np.divmod(idx, w - 1)
    if side < 0:
        cols = cols + 1
    src = rows * w + cols
    flat = far.reshape(-1)                             # invalid pixels: disparity ~0
    d_src = fb / flat[src]
    ok = d_src - fb / flat[src + side] > 1.0
    src, d_src, cols = src[ok], d_src[ok], cols[ok]
    # a source can hide pixels up to (its disparity - the smallest disparity) columns away
    reach = np.ceil(d_src - fb / zmax).astype(np.int64)
    reach = np.minimum(reach, cols if side < 0 else (w - 1 - cols))
    keep = reach > 0
    src, d_src, reach = src[keep], d_src[keep], reach[keep]
    total = int(reach.sum())
    if total == 0:
        return empty
    k = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(reach) - reach, reach) + 1
    cand = np.repeat(src, reach) + side * k
    return cand[(np.repeat(d_src, reach) - fb / flat[cand]) > k]


def _border_hidden(depth: np.ndarray, model: SensorModel, fx: float, window_u0: int | None
                   ) -> tuple[int, np.ndarray] | None:
    """D4xx left band: (ncols, (H, ncols) bool) of pixels whose match u - d falls left of the
    second imager's image (u in full-frame columns), or None."""
    if not model.border_invalid or window_u0 is None or model.shadow_side > 0:
        return None
    zmin = _min_valid(depth)
    if zmin is None:
        return None
    fb = fx * model.baseline_mm
    ncols = int(min(depth.shape[1], max(0.0, math.ceil(fb / zmin - window_u0))))
    if ncols <= 0:
        return None
    band = depth[:, :ncols]
    u = np.arange(ncols, dtype=np.float32) + np.float32(window_u0)
    with np.errstate(divide="ignore"):
        hidden = (band > 0) & (u[None, :] - np.float32(fb) / band < -0.5)
    return ncols, hidden


def _min_valid(depth: np.ndarray) -> float | None:
    valid = _mask(depth > 0)
    if not cv2.countNonZero(valid):
        return None
    return float(cv2.minMaxLoc(depth, mask=valid)[0])


def _speckle_u8(shape: tuple[int, int], rng: np.random.Generator, model: SensorModel) -> np.ndarray:
    return _mask(_bank_window(rng, shape, normal=False) < np.float32(model.speckle_prob))


@lru_cache(maxsize=16)
def _ray_terms(fx: float, fy: float, cx: float, cy: float, width: int, height: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray direction x, y (z = 1) and 1 / |ray|^2, each (H, W) float32 (cached, read-only)."""
    x = np.broadcast_to(((np.arange(width) - cx) / fx).astype(np.float32)[None, :], (height, width)).copy()
    y = np.broadcast_to(((np.arange(height) - cy) / fy).astype(np.float32)[:, None], (height, width)).copy()
    inv_norm2 = (1.0 / (1.0 + y ** 2 + x ** 2)).astype(np.float32)
    for a in (x, y, inv_norm2):
        a.setflags(write=False)
    return x, y, inv_norm2


def _grazing_indices(normals: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, model: SensorModel,
                     intr: Intrinsics) -> np.ndarray:
    """Flat indices of grazing pixels of an (H, W) = ``shape`` image to drop, decided on 2x2
    blocks (one normal per block). ``normals``: (H, W, 3), or (h, w, 3) on a coarser grid over
    the same field of view (``Intrinsics.scaled``), e.g. a ray cast at fewer rays."""
    h, w = shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    # block (r, c) uses the normal of pixel (2r, 2c) (cv2 nearest), whose ray is that of (r, c) at half
    # scale; from a coarser grid, the normal nearest the block's centre (centre-aligned nearest)
    x, y, inv_norm2 = _ray_terms(intr.fx / 2.0, intr.fy / 2.0, intr.cx / 2.0, intr.cy / 2.0, w2, h2)
    nearest = cv2.INTER_NEAREST if normals.shape[:2] == (h, w) else cv2.INTER_NEAREST_EXACT
    half = cv2.resize(np.ascontiguousarray(normals, dtype=np.float32), (w2, h2), interpolation=nearest)
    dot = half[..., 0] * x + half[..., 1] * y + half[..., 2]
    cos2 = cv2.multiply(cv2.multiply(dot, dot), inv_norm2)
    c02 = math.cos(math.radians(model.grazing_start_deg)) ** 2
    # probability p * clip((cos0^2 - cos^2) / cos0^2, 0, 1): drop where u cos0^2 / p + cos^2 < cos0^2
    u = _bank_window(rng, cos2.shape, normal=False)
    small = _mask(cv2.scaleAdd(u, c02 / model.grazing_dropout_prob, cos2) < np.float32(c02))
    r, c = np.divmod(_nonzero(small), w2)
    rows = (2 * r[:, None] + np.array([0, 0, 1, 1])).reshape(-1)
    cols = (2 * c[:, None] + np.array([0, 1, 0, 1])).reshape(-1)
    inside = (rows < h) & (cols < w)
    return rows[inside] * w + cols[inside]


def _noisy(depth: np.ndarray, rng: np.random.Generator, model: SensorModel, fx: float) -> np.ndarray:
    noise = _bank_window(rng, depth.shape, normal=True)
    if model.lowfreq_ratio > 0:
        field, sign = _smooth_window(rng, depth.shape, model.lowfreq_cell_px)
        noise = cv2.scaleAdd(field, sign * model.lowfreq_ratio, noise)
    return cv2.add(depth, cv2.multiply(noise_sigma_mm(depth, model, fx), noise))


def _quantized(depth: np.ndarray, model: SensorModel, fx: float) -> np.ndarray:
    out = depth
    if model.disparity_step_px > 0:
        inv_q = np.float32(fx * model.baseline_mm / model.disparity_step_px)   # mm per unit of 1/z steps
        with np.errstate(divide="ignore"):
            out = inv_q / np.rint(inv_q / out)          # 0 -> inf steps -> 0
    if model.depth_unit_mm > 0:
        unit = np.float32(model.depth_unit_mm)
        out = np.rint(out * (np.float32(1.0) / unit)) * unit
    return out.astype(np.float32, copy=False)


# ============================================================================ effects (public)


def noise_sigma_mm(depth_mm: np.ndarray, model: SensorModel, fx: float) -> np.ndarray:
    """White-noise sigma(z), mm, same shape as ``depth_mm`` (mm); see :class:`SensorModel`."""
    quad = model.noise_quad_mm_per_m2 * 1e-6
    if model.noise_disparity_px > 0 and model.baseline_mm > 0:
        quad += model.noise_disparity_px / (fx * model.baseline_mm)
    z = np.asarray(depth_mm, dtype=np.float32)
    if z.ndim != 2:
        return (np.float32(quad) * z) * z + np.float32(model.noise_const_mm)
    z = np.ascontiguousarray(z)
    sigma = cv2.multiply(z, z, scale=quad)
    return sigma + np.float32(model.noise_const_mm) if model.noise_const_mm else sigma


def add_depth_noise(depth_mm: np.ndarray, rng: np.random.Generator, model: SensorModel,
                    intr: Intrinsics) -> np.ndarray:
    """depth + sigma(z) * (n_white + lowfreq_ratio * n_smooth) on valid pixels; invalid stay 0.

    n_white: i.i.d. N(0, 1) per pixel; n_smooth: N(0, 1) per pixel, correlated over
    ``lowfreq_cell_px`` (a bilinearly upsampled white grid, variance-normalised per pixel).
    """
    _check_rng(rng)
    depth = _check_depth(depth_mm)
    _check_intr(depth, intr)
    out = _noisy(depth, rng, model, intr.fx)
    return cv2.copyTo(out, _mask(depth > 0), np.zeros_like(depth))


def quantize_depth(depth_mm: np.ndarray, model: SensorModel, intr: Intrinsics) -> np.ndarray:
    """Disparity quantisation (1/z to multiples of step / (fx b)), then rounding to the depth unit.

    Kinect v1 (step 1/8 px, fx 588 px, b 75 mm): depth steps of z^2 step / (fx b) = 2.83 mm at
    1 m, 11.3 mm at 2 m. 0 stays 0.
    """
    depth = _check_depth(depth_mm)
    _check_intr(depth, intr)
    return _quantized(depth, model, intr.fx)


def discontinuity_mask(depth_mm: np.ndarray, threshold_mm: float) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour whose depth differs by more than ``threshold_mm``.

    Valid-to-invalid transitions (0 = no surface) count as discontinuities; both sides are marked.
    """
    return _edge_u8(_check_depth(depth_mm), threshold_mm) > 0


def drop_edges(depth_mm: np.ndarray, rng: np.random.Generator, model: SensorModel,
               reference_mm: np.ndarray | None = None) -> np.ndarray:
    """Invalidate a band of random width w ~ U(0, edge_dropout_px) on both sides of each edge.

    Edges are found on ``reference_mm`` (default: the input; pass the ideal depth so that noise
    and quantisation steps are not taken for edges). A pixel whose centre lies within w of the
    discontinuity is dropped: the adjacent pixel (centre 0.5 px away) when w > 0.5, the next one
    when w > 1.5. w varies smoothly along the edge (correlation length edge_cell_px).
    """
    _check_rng(rng)
    depth = _check_depth(depth_mm)
    if model.edge_dropout_px <= 0:
        return depth.copy()
    ref = _reference(depth, reference_mm)
    return _zero_where(depth, _edge_drop_u8(_edge_u8(ref, model.edge_threshold_mm), rng, model))


def cast_shadows(depth_mm: np.ndarray, model: SensorModel, intr: Intrinsics,
                 window_u0: int | None = 0) -> np.ndarray:
    """Invalidate pixels hidden from the projector / second imager at x = -shadow_side * baseline.

    A pixel of disparity d(u) = fx b / z(u) is hidden when a pixel k columns towards the emitter
    has a disparity larger by more than k: behind a near edge this is a band of width
    fx b (1/z_near - 1/z_far) px on the ``shadow_side`` of the near object (left for D4xx).
    ``border_invalid`` (D4xx) also drops pixels whose match would fall outside the second
    imager (u - d < -0.5 in full-frame columns); ``window_u0`` is the column of the full frame
    where this image starts (``None``: unknown, no border band). Exact for a pinhole rig with
    the emitter on the camera's x axis; occluders outside the image are not seen.
    """
    depth = _check_depth(depth_mm)
    _check_intr(depth, intr)
    out = depth.copy()
    if model.baseline_mm <= 0:
        return out
    out.reshape(-1)[_shadow_indices(depth, model, intr.fx)] = 0.0
    border = _border_hidden(depth, model, intr.fx, window_u0)
    if border is not None:
        ncols, hidden = border
        out[:, :ncols][hidden] = 0.0
    return out


_OFFSETS3 = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])


def _neighbour_extremes(ref: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min (over valid, inf if none) and max of the 3x3 neighbourhoods of flat pixel indices ``idx``."""
    h, w = ref.shape
    padded = cv2.copyMakeBorder(ref, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0.0).reshape(-1)
    r, c = np.divmod(idx, w)
    centre = (r + 1) * (w + 2) + (c + 1)
    vals = padded[centre[:, None] + (_OFFSETS3[:, 0] * (w + 2) + _OFFSETS3[:, 1])[None, :]]
    far = vals.max(1)
    near = np.where(vals > 0, vals, np.float32(np.inf)).min(1)
    return near, far


def _flying(depth: np.ndarray, ref: np.ndarray, edge: np.ndarray, rng: np.random.Generator,
            model: SensorModel) -> np.ndarray:
    out = depth.copy()
    chosen = _mask(_bank_window(rng, depth.shape, normal=False) < np.float32(model.flying_pixel_prob))
    idx = _nonzero(cv2.bitwise_and(cv2.bitwise_and(edge, chosen), _mask(depth > 0)))
    if idx.size == 0:
        return out
    near, far = _neighbour_extremes(ref, idx)
    mix = rng.random(idx.size, dtype=np.float32)
    ok = np.isfinite(near) & (far - near > model.edge_threshold_mm)
    out.reshape(-1)[idx[ok]] = near[ok] + mix[ok] * (far[ok] - near[ok])
    return out


def add_flying_pixels(depth_mm: np.ndarray, rng: np.random.Generator, model: SensorModel,
                      reference_mm: np.ndarray | None = None) -> np.ndarray:
    """ToF flying pixels: each valid pixel next to an edge, with probability flying_pixel_prob,
    reports near + a (far - near), a ~ U(0, 1), where near / far are the extreme valid depths of its
    3x3 neighbourhood in ``reference_mm`` (default: the input). Invalid pixels stay invalid.
    """
    _check_rng(rng)
    depth = _check_depth(depth_mm)
    if model.flying_pixel_prob <= 0:
        return depth.copy()
    ref = _reference(depth, reference_mm)
    return _flying(depth, ref, _edge_u8(ref, model.edge_threshold_mm), rng, model)


def add_multipath(depth_mm: np.ndarray, model: SensorModel) -> np.ndarray:
    """ToF multipath: surfaces within ~multipath_radius_px (in the image) of a nearer object
    (nearer by more than edge_threshold_mm) read up to multipath_mm farther, fading with image
    distance (box-blurred indicator, computed at 1/4 resolution). Deterministic.
    """
    depth = _check_depth(depth_mm)
    if model.multipath_mm <= 0:
        return depth.copy()
    h, w = depth.shape
    f = 4
    small = cv2.resize(depth, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_NEAREST)
    size = 2 * max(1, int(round(model.multipath_radius_px / f))) + 1
    near = cv2.erode(np.where(small > 0, small, np.float32(np.inf)), np.ones((size, size), np.uint8))
    behind = ((small - near) > model.edge_threshold_mm).astype(np.float32)
    weight = cv2.blur(behind, (size, size))
    bias = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
    bias = cv2.multiply(bias, (depth > 0).astype(np.float32), scale=float(model.multipath_mm))
    return cv2.add(depth, bias)


def drop_holes(depth_mm: np.ndarray, rng: np.random.Generator, model: SensorModel) -> np.ndarray:
    """Zero a Poisson(holes_per_frame * H W / 640x480) number of random elliptical blobs,
    semi-axes uniform in hole_radius_px, anywhere in the image."""
    _check_rng(rng)
    out = _check_depth(depth_mm).copy()
    _draw_holes(out, rng, model)
    return out


def _draw_holes(out: np.ndarray, rng: np.random.Generator, model: SensorModel) -> None:
    h, w = out.shape
    if model.holes_per_frame <= 0:
        return
    count = int(rng.poisson(model.holes_per_frame * h * w / _REF_PIXELS))
    lo, hi = model.hole_radius_px
    for pu, pv, pa, pb, pt in rng.random((count, 5)):
        axes = (max(1, int(round(lo + pa * (hi - lo)))), max(1, int(round(lo + pb * (hi - lo)))))
        cv2.ellipse(out, (int(pu * w), int(pv * h)), axes, float(pt * 180.0), 0.0, 360.0, 0.0, -1)


def drop_speckle(depth_mm: np.ndarray, rng: np.random.Generator, model: SensorModel) -> np.ndarray:
    """Drop each pixel independently with probability speckle_prob."""
    _check_rng(rng)
    depth = _check_depth(depth_mm)
    if model.speckle_prob <= 0:
        return depth.copy()
    return _zero_where(depth, _speckle_u8(depth.shape, rng, model))


def drop_grazing(depth_mm: np.ndarray, normals: np.ndarray, rng: np.random.Generator,
                 model: SensorModel, intr: Intrinsics) -> np.ndarray:
    """Drop pixels seen at grazing incidence, in clumps of ~2 px: with probability
    grazing_dropout_prob * clip((cos0^2 - cos^2) / cos0^2, 0, 1), cos = |ray . normal| / |ray|,
    cos0 = cos(grazing_start_deg); ``normals`` (H, W, 3) unit, any sign (0 where no surface), or
    the same on a coarser grid of the same view (e.g. a ray cast with fewer rays)."""
    _check_rng(rng)
    depth = _check_depth(depth_mm)
    _check_intr(depth, intr)
    _check_normals(normals, depth.shape)
    if model.grazing_dropout_prob <= 0:
        return depth.copy()
    out = depth.copy()
    out.reshape(-1)[_grazing_indices(normals, depth.shape, rng, model, intr)] = 0.0
    return out


def _check_normals(normals: np.ndarray, shape: tuple[int, int]) -> None:
    """(H, W, 3) = ``shape`` + (3,), or a coarser (h <= H, w <= W) grid of the same view."""
    if (not isinstance(normals, np.ndarray) or normals.ndim != 3 or normals.shape[2] != 3
            or not (0 < normals.shape[0] <= shape[0] and 0 < normals.shape[1] <= shape[1])):
        raise ValueError(f"normals: expected an array of shape {shape + (3,)} (or a coarser grid of the "
                         f"same view), got {getattr(normals, 'shape', type(normals).__name__)}")


def apply_range(depth_mm: np.ndarray, model: SensorModel) -> np.ndarray:
    """0 outside [min_range_mm, max_range_mm]."""
    depth = _check_depth(depth_mm)
    keep = _in_range(depth, model)
    return cv2.copyTo(depth, keep, np.zeros_like(depth))


# ============================================================================ composition


def apply_sensor(depth_mm: np.ndarray, intr: Intrinsics, model: SensorModel, rng: np.random.Generator,
                 normals: np.ndarray | None = None, window_u0: int | None = 0) -> np.ndarray:
    """What the sensor reports for the ideal depth image ``depth_mm`` (H, W) float mm, 0 = none.

    Same effects as the functions above, in this order: flying pixels, multipath (ToF; on the
    ideal geometry) -> noise -> quantisation -> invalidation of: shadows and the D4xx border band
    (ideal geometry), the edge bands (edges of the ideal image), speckle, grazing pixels (only with
    ``normals`` (H, W, 3), e.g. ``RaycastResult.normals``, or a coarser grid of the same view),
    depths outside the range -> holes.
    Returns (H, W) float32 mm, 0 = invalid; invalid input pixels stay invalid. ``window_u0``: see
    :func:`cast_shadows` (pass the window's first column when the image is a window of the frame).
    """
    _check_rng(rng)
    if not isinstance(model, SensorModel):
        raise TypeError(f"model: expected a SensorModel, got {type(model).__name__}")
    ideal = _check_depth(depth_mm)
    _check_intr(ideal, intr)
    if normals is not None:
        _check_normals(normals, ideal.shape)
    needs_edges = model.flying_pixel_prob > 0 or model.edge_dropout_px > 0
    edge = _edge_u8(ideal, model.edge_threshold_mm) if needs_edges else None
    out = ideal
    if model.flying_pixel_prob > 0:
        out = _flying(out, ideal, edge, rng, model)
    if model.multipath_mm > 0:
        out = add_multipath(out, model)
    out = _quantized(_noisy(out, rng, model, intr.fx), model, intr.fx)
    # invalid input stays invalid: its noisy value is c0 * n, far below min_range_mm (> 0)
    keep = _in_range(out, model)
    if model.edge_dropout_px > 0:
        keep = cv2.subtract(keep, _edge_drop_u8(edge, rng, model))
    if model.speckle_prob > 0:
        keep = cv2.subtract(keep, _speckle_u8(ideal.shape, rng, model))
    if normals is not None and model.grazing_dropout_prob > 0:
        keep.reshape(-1)[_grazing_indices(normals, ideal.shape, rng, model, intr)] = 0
    if model.baseline_mm > 0:
        keep.reshape(-1)[_shadow_indices(ideal, model, intr.fx)] = 0
        border = _border_hidden(ideal, model, intr.fx, window_u0)
        if border is not None:
            ncols, hidden = border
            keep[:, :ncols][hidden] = 0
    out = cv2.copyTo(out, keep, np.zeros_like(ideal))
    _draw_holes(out, rng, model)
    return out


def to_raw(depth_mm: np.ndarray, depth_scale: float) -> np.ndarray:
    """(H, W) uint16 raw sensor units: round(depth_mm / (1000 depth_scale)); 0 stays 0, and values
    that are not positive or exceed 65535 units are invalid (0). ``depth_scale``: metres per unit."""
    depth = np.asarray(depth_mm)
    if not np.issubdtype(depth.dtype, np.number):
        raise TypeError(f"depth_mm: expected a numeric array, got dtype {depth.dtype}")
    if isinstance(depth_scale, bool) or not isinstance(depth_scale, (int, float)) or not depth_scale > 0:
        raise ValueError(f"depth_scale: expected metres per raw unit > 0, got {depth_scale!r}")
    units = np.rint(depth.astype(np.float64) / (depth_scale * 1000.0))
    ok = np.isfinite(units) & (units > 0) & (units <= 65535)
    return np.where(ok, units, 0).astype(np.uint16)


# ============================================================================ preview (IO)


def _colour(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = np.clip((depth - lo) / (hi - lo), 0.0, 1.0)
    img = cv2.applyColorMap((255 * (1.0 - x)).astype(np.uint8), cv2.COLORMAP_JET)
    img[depth <= 0] = 0
    return img


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def preview(out_path: Path, real_frame: Path | None = None, seed: int = 3, crop: int = 160) -> np.ndarray:
    """Picture: a rendered hand + third-person scene through each family's sensor model, next to
    a real SR305 frame (if given; 16-bit PNG, unit 0.125 mm). Top row: whole frames at half size;
    bottom row: a ``crop`` px square around the nearest surface (the hand) at 2x, colour range
    from its nearest depth to +400 mm. Writes ``out_path`` (PNG) and returns the BGR image."""
    import torch

    from models.hand_layer import HandLayer
    from models.poses import named_theta
    from models.render import raycast
    from models.scene import SceneConfig, build_scene

    intr = get_preset("sr305_640x480").intrinsics
    layer = HandLayer()
    # A hand in front of the chest, fingers up-left, forearm down-right (like the real frame).
    theta = named_theta("spread", rotation=(math.pi, 0.0, 0.9), translation=(-80.0, 0.0, 600.0))
    hand = layer(torch.tensor(theta, dtype=torch.float32)[None])
    verts, joints = hand.vertices[0].numpy(), hand.joints[0].numpy()
    faces = layer.faces.numpy()
    cfg = SceneConfig(p_empty=0.0, p_arm=1.0, p_body=1.0, p_wall=(0.0, 0.0), p_table=(0.0, 0.0),
                      p_clutter=0.0, p_second_hand=0.0)
    # the first seed from ``seed`` whose person fills the row right of the palm (like the real frame)
    palm = palm_centre(joints)
    u, v = (int(round(intr.fx * palm[0] / palm[2] + intr.cx)), int(round(intr.fy * palm[1] / palm[2] + intr.cy)))
    for s in range(seed, seed + 100):
        scene = build_scene(np.random.default_rng(s), verts, joints, intr, "third_person", cfg)
        probe = raycast([(verts, faces)] + list(scene.meshes), intr.window(u, v, 200, 1))
        if np.mean(probe.geometry_id > 0) > 0.5:
            break
    result = raycast([(verts, faces)] + list(scene.meshes), intr)
    models = [("structured_light SR305", sensor_for_preset("sr305_640x480")),
              ("structured_light Kinect v1", sensor_for_preset("kinect_v1_640x480")),
              ("d4xx D435", sensor_for_preset("d435_848x480")),
              ("tof Kinect v2", sensor_for_preset("kinect_v2_512x424"))]
    panels = [("ideal render", result.depth)]
    for label, model in models:
        panels.append((label, apply_sensor(result.depth, intr, model, np.random.default_rng(s), result.normals)))
    if real_frame is not None and Path(real_frame).is_file():
        real = cv2.imread(str(real_frame), cv2.IMREAD_UNCHANGED).astype(np.float32) * 0.125
        panels.insert(0, (f"REAL SR305 {Path(real_frame).parent.name}/{Path(real_frame).name}", real))
    columns = []
    for label, depth in panels:
        valid = depth[depth > 0]
        near = float(np.percentile(valid, 0.5)) if valid.size else 300.0
        whole = cv2.resize(_colour(depth, near - 20.0, near + 700.0), (320, 240), interpolation=cv2.INTER_AREA)
        if label.startswith("REAL"):
            ys, xs = np.nonzero((depth > 0) & (depth < near + 60))
            cy, cx = (int(np.median(ys)), int(np.median(xs))) if ys.size else (240, 320)
        else:
            cy, cx = v, u
        y0 = int(np.clip(cy - crop // 2, 0, depth.shape[0] - crop))
        x0 = int(np.clip(cx - crop // 2, 0, depth.shape[1] - crop))
        patch = _colour(depth[y0:y0 + crop, x0:x0 + crop], near - 20.0, near + 400.0)
        patch = cv2.resize(patch, (320, 320), interpolation=cv2.INTER_NEAREST)
        columns.append(np.concatenate([_label(whole, label), patch], 0))
    sheet = np.concatenate(columns, 1)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), sheet)
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Depth sensor model: preview picture and preset table.")
    parser.add_argument("--preview", type=Path, help="write a preview PNG here")
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2]
                        / "shared/data/realsense_sr305/20210326-230536/110.png",
                        help="a real SR305 16-bit PNG to show beside the renders (skipped if missing)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--list", action="store_true", help="print the family of every camera preset")
    args = parser.parse_args(argv)
    if args.list or args.preview is None:
        for preset in list_presets():
            m = sensor_for_preset(preset.name)
            print(f"{preset.name:28s} {m.family:17s} range {m.min_range_mm:6.0f}-{m.max_range_mm:6.0f} mm"
                  f"  unit {m.depth_unit_mm:g} mm  baseline {m.baseline_mm:g} mm")
        print("\nsources:")
        for source in sorted({preset_sensor(p.name).source for p in list_presets()}):
            print(" -", source)
    if args.preview is not None:
        preview(args.preview, args.real, args.seed)
        print(f"wrote {args.preview}")


if __name__ == "__main__":
    main()
