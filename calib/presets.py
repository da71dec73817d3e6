"""Named intrinsics presets for depth cameras and the public hand-pose datasets.

Conventions: as ``calib.intrinsics`` (pixels with (0, 0) at the centre of the top-left pixel;
depth_scale in metres per raw unit). Each preset says where its numbers come from:

* ``kind == "real"``: numbers READ FROM A REAL DEVICE OR RECORDING (a dataset's published
  calibration of the camera it was recorded with, or values shipped with real frames).
* ``kind == "nominal"``: numbers COMPUTED FROM A DATASHEET FIELD OF VIEW (or commonly quoted
  typical values). Real units differ by several percent: read the real values from the device
  or a recording (``python -m calib show --source realsense``) whenever you can.

Nominal pinhole presets put the principal point at the image centre, cx = (W - 1) / 2,
cy = (H - 1) / 2, and use fx = (W / 2) / tan(HFOV / 2). For the RealSense D4xx the datasheet
FOV belongs to the native 16:9 mode (1280x720): we compute f_1280 = 640 / tan(HFOV / 2) there,
take square pixels (fy = fx, as the D4xx imagers have), and derive the other modes by the
scaling the hardware uses: 848x480 is 1280x720 scaled by 848 / 1280 (so the formula above holds
as is), while 640x480 is the 1280x800 imager scaled by 0.6 and cropped to 640 columns (so
fx = 0.6 * f_1280, NOT (640 / 2) / tan(HFOV / 2), which would be about 12 % too small; one real
D435 reports fx = 382.6 px at 640x480 and 637.6 px at 1280x720, ratio 0.600).

This module does no IO; the registry is built on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .intrinsics import Intrinsics

__all__ = ["Preset", "get_preset", "list_presets"]

_KINDS = ("real", "nominal")


@dataclass(frozen=True)
class Preset:
    """A named camera/dataset calibration.

    name: registry key (lower case).
    intrinsics: the values (``intrinsics.name == name``).
    kind: "real" (read from a real device/recording) or "nominal" (datasheet / typical).
    source: one or two sentences: where the numbers come from, starting with
        "READ FROM A REAL ..." or "NOMINAL".
    """

    name: str
    intrinsics: Intrinsics
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Preset.kind: expected one of {_KINDS}, got {self.kind!r}")
        expected_prefix = "READ FROM A REAL" if self.kind == "real" else "NOMINAL"
        if not self.source.startswith(expected_prefix):
            raise ValueError(
                f"Preset.source: expected a {self.kind} preset's source to start with "
                f"{expected_prefix!r}, got {self.source[:40]!r}"
            )


# ---------------------------------------------------------------------------- builders


def _centre(size: int) -> float:
    """Image centre in the pixel-centre convention."""
    return (size - 1) / 2.0


def _pinhole_focal(size_px: float, fov_deg: float) -> float:
    """Focal length (px) of a pinhole whose image of ``size_px`` pixels spans ``fov_deg``."""
    return (size_px / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def _equidistant_focal(size_px: float, fov_deg: float) -> float:
    """Focal length (px) of an equidistant fisheye (r = f * theta) spanning ``fov_deg``."""
    return (size_px / 2.0) / (math.radians(fov_deg) / 2.0)


def _real(name: str, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
          depth_scale: float, source: str) -> Preset:
    intr = Intrinsics(fx, fy, cx, cy, width, height, depth_scale, name=name)
    return Preset(name, intr, "real", source)


_D4XX = {
    # model: (datasheet depth HFOV, VFOV in degrees, 1280x720 mode)
    "d415": (65.0, 40.0),
    "d435": (87.0, 58.0),
    "d455": (87.0, 58.0),
}
_D4XX_NOTE = {"d435": " (real D435 units report about 425 px at 848x480, i.e. a 90 deg HFOV)"}
# mode: scale from the 1280x720 focal length (see module docstring)
_D4XX_MODES = {(1280, 720): 1.0, (848, 480): 848.0 / 1280.0, (640, 480): 0.6}


def _d4xx_presets() -> list[Preset]:
    out = []
    for model, (hfov, vfov) in _D4XX.items():
        f1280 = _pinhole_focal(1280, hfov)
        for (width, height), scale in _D4XX_MODES.items():
            name = f"{model}_{width}x{height}"
            f = f1280 * scale
            if (width, height) == (640, 480):
                how = (f"fx = fy = 0.6 * 640 / tan({hfov / 2:g} deg) = {f:.1f} px (640x480 is the "
                       f"1280x800 imager scaled by 0.6 and cropped)")
            else:
                how = f"fx = fy = ({width} / 2) / tan({hfov / 2:g} deg) = {f:.1f} px"
            source = (
                f"NOMINAL: RealSense {model.upper()} datasheet depth FOV {hfov:g} x {vfov:g} deg "
                f"(16:9 modes, +-2-3 deg per unit); {how}, square pixels, principal point at the "
                f"image centre, no distortion. Real units differ by several percent{_D4XX_NOTE.get(model, '')}: "
                f"read the device."
            )
            intr = Intrinsics(f, f, _centre(width), _centre(height), width, height, 0.001, name=name)
            out.append(Preset(name, intr, "nominal", source))
    return out


def _l515_presets() -> list[Preset]:
    hfov, vfov = 70.0, 55.0
    out = []
    for width, height in ((1024, 768), (640, 480)):
        name = f"l515_{width}x{height}"
        fx, fy = _pinhole_focal(width, hfov), _pinhole_focal(height, vfov)
        source = (
            f"NOMINAL: RealSense L515 datasheet depth FOV {hfov:g} x {vfov:g} deg; "
            f"fx = ({width} / 2) / tan(35 deg) = {fx:.1f} px, fy = ({height} / 2) / tan(27.5 deg) "
            f"= {fy:.1f} px, principal point at the image centre, no distortion; raw unit 0.25 mm."
        )
        intr = Intrinsics(fx, fy, _centre(width), _centre(height), width, height, 0.00025, name=name)
        out.append(Preset(name, intr, "nominal", source))
    return out


# Azure Kinect depth modes: (name, width, height, HFOV, VFOV).
_AZURE = (
    ("azure_kinect_nfov_unbinned", 640, 576, 75.0, 65.0),
    ("azure_kinect_nfov_binned", 320, 288, 75.0, 65.0),
    ("azure_kinect_wfov_binned", 512, 512, 120.0, 120.0),
    ("azure_kinect_wfov_unbinned", 1024, 1024, 120.0, 120.0),
)


def _azure_presets() -> list[Preset]:
    out = []
    for name, width, height, hfov, vfov in _AZURE:
        fx, fy = _equidistant_focal(width, hfov), _equidistant_focal(height, vfov)
        mode = name.removeprefix("azure_kinect_").upper().replace("_", " ")
        source = (
            f"NOMINAL, APPROXIMATE LENS MODEL: Azure Kinect depth {mode} {width}x{height}, datasheet "
            f"FOV {hfov:g} x {vfov:g} deg, modelled as an ideal equidistant fisheye "
            f"(kannala_brandt4, zero coefficients): fx = ({width} / 2) / (HFOV / 2 in rad) = "
            f"{fx:.1f} px, fy = {fy:.1f} px, principal point at the image centre. The real lens is "
            f"calibrated with a rational 6-term model; a pinhole fitted to the datasheet FOV would "
            f"be {_pinhole_focal(width, hfov):.1f} px, far from the ~504 px (unbinned) that real "
            f"units report, and real NFOV units put cy tens of pixels below the centre. Read "
            f"the device calibration for accurate work."
        )
        intr = Intrinsics(fx, fy, _centre(width), _centre(height), width, height, 0.001,
                          distortion="kannala_brandt4", name=name)
        out.append(Preset(name, intr, "nominal", source))
    return out


def _other_presets() -> list[Preset]:
    nyu_source = (
        "READ FROM A REAL DEVICE: the NYU Hand Pose dataset's published calibration of its "
        "Kinect v1 (PrimeSense) depth camera; depth in mm; principal point given as the image "
        "centre (320, 240) by the dataset."
    )
    icvl_source = (
        "READ FROM A REAL DEVICE: the ICVL hand dataset's published calibration of its Creative "
        "Senz3D (Intel Creative camera); depth in mm (some code uses 241.42 for both focal lengths)."
    )
    hands_source = (
        "READ FROM A REAL DEVICE: HANDS2017 / BigHand2.2M published calibration of the Intel "
        "RealSense SR300 they were recorded with; no distortion coefficients published"
    )
    out = [
        _real("sr300_640x480", 475.066, 475.066, 315.945, 245.287, 640, 480, 0.000125,
              hands_source + "; raw unit 1/8 mm as the SR300 streams it (0.000124987 m on real units)."),
        _real("sr300_320x240", 238.434, 238.433, 157.717, 123.03, 320, 240, 0.000124987,
              "READ FROM A REAL RECORDING: Intel RealSense hand-tracking sample "
              "(example_recording_labels/hand_data_example.json, camtype 'ivycam' = SR300), "
              "depth camera at 320x240 with depth_scale 0.000124987 m."),
        _real("sr305_640x480", 476.007, 476.007, 313.683, 242.755, 640, 480, 0.000125,
              "READ FROM A REAL DEVICE: parameters published with a real SR305 hand-gesture "
              "dataset (19 frames in shared/data/realsense_sr305, MIT): principal point "
              "(313.683, 242.755), focal 476.007 px, depth unit 0.125 mm."),
        _real("kinect_v1_640x480", 588.03, 587.07, 320.0, 240.0, 640, 480, 0.001, nyu_source),
        Preset(
            "kinect_v2_512x424",
            Intrinsics(365.456, 365.456, 254.878, 205.395, 512, 424, 0.001, name="kinect_v2_512x424"),
            "nominal",
            "NOMINAL (TYPICAL VALUES): the Kinect v2 depth intrinsics most often quoted "
            "(fx = fy = 365.456, cx = 254.878, cy = 205.395; originally one unit's factory "
            "calibration, with radial k1, k2, k3 = 0.0905, -0.268, 0.0951 that apply to raw, "
            "not libfreenect2-undistorted, frames); per-unit values differ by a few pixels. "
            "The datasheet FOV 70.6 x 60 deg gives 361.6 px. Depth in mm.",
        ),
        _real("senz3d_320x240", 240.99, 240.96, 160.0, 120.0, 320, 240, 0.001, icvl_source),
        _real("nyu", 588.03, 587.07, 320.0, 240.0, 640, 480, 0.001, nyu_source),
        _real("icvl", 240.99, 240.96, 160.0, 120.0, 320, 240, 0.001, icvl_source),
        _real("msra", 241.42, 241.42, 160.0, 120.0, 320, 240, 0.001,
              "READ FROM A REAL DEVICE: the MSRA15 hand dataset's published calibration of its "
              "Creative Senz3D (time-of-flight); depth in mm."),
        _real("hands2017", 475.066, 475.066, 315.945, 245.287, 640, 480, 0.001,
              hands_source + "; depth PNGs in mm as distributed."),
    ]
    return out


@lru_cache(maxsize=1)
def _registry() -> dict[str, Preset]:
    presets = _d4xx_presets() + _l515_presets() + _azure_presets() + _other_presets()
    registry: dict[str, Preset] = {}
    for preset in presets:
        if preset.name in registry:  # programming error in this file, not user input
            raise RuntimeError(f"duplicate preset name {preset.name!r}")
        registry[preset.name] = preset
    return registry


# ---------------------------------------------------------------------------- public API


def list_presets() -> tuple[Preset, ...]:
    """All presets, in registry order (RealSense D4xx, L515, Azure Kinect, others, datasets)."""
    return tuple(_registry().values())


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive, surrounding spaces ignored).

    Raises TypeError for a non-str name and ValueError listing every valid name otherwise.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_preset: expected a preset name (str), got {type(name).__name__}")
    registry = _registry()
    key = name.strip().lower()
    if key not in registry:
        raise ValueError(f"unknown preset {name!r}; expected one of: {', '.join(registry)}")
    return registry[key]
