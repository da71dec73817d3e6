"""Cameras and intrinsics: one ``Intrinsics`` type, projection maths, presets, RealSense IO.

Conventions (every module states them again): camera frame x right, y down, z forward, mm;
pixels (u, v) with (0, 0) the centre of the top-left pixel; uvd = (u px, v px, z mm); raw depth
images in sensor units, metres = raw * depth_scale.

Importing ``calib`` has no side effects and imports neither torch nor pyrealsense2.
"""

from .errors import SourceError
from .intrinsics import DISTORTION_MODELS, Intrinsics, SourcedIntrinsics
from .presets import Preset, get_preset, list_presets
from .projection import (
    check_depth_mm,
    DepthPoints,
    FieldOfView,
    backproject,
    depth_to_points,
    field_of_view_deg,
    project,
)
from .realsense import (
    DepthRecording,
    DepthRecordingWriter,
    read_depth_recording,
    read_device_intrinsics,
    read_recording_intrinsics,
    write_depth_recording,
)
from .source import intrinsics_from_source

__all__ = [
    "DISTORTION_MODELS",
    "check_depth_mm",
    "DepthPoints",
    "DepthRecording",
    "FieldOfView",
    "Intrinsics",
    "Preset",
    "SourceError",
    "SourcedIntrinsics",
    "backproject",
    "depth_to_points",
    "field_of_view_deg",
    "get_preset",
    "intrinsics_from_source",
    "list_presets",
    "project",
    "read_depth_recording",
    "read_device_intrinsics",
    "read_recording_intrinsics",
    "write_depth_recording",
]
