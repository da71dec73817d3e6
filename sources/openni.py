"""OpenNI2 cameras (Kinect v1, PrimeSense, Asus Xtion, Orbbec) and ``.oni`` recordings:
``openni`` and ``PATH.oni``.

Conventions: as ``sources.frame``. Needs the optional ``openni`` Python package
(``pip install openni``) and the OpenNI2 runtime (``libOpenNI2.so`` with its drivers; its
folder in ``OPENNI2_REDIST`` when it is not on the library path); both are imported lazily.

Intrinsics: OpenNI2 reports fields of view, not focal lengths; its own depth-to-world
conversion is x = (u / W - 0.5) z 2 tan(hfov / 2), i.e. a pinhole with
fx = W / (2 tan(hfov / 2)), fy = H / (2 tan(vfov / 2)), cx = W / 2, cy = H / 2 (u = pixel
index, our convention), no distortion. Depth units: 1 mm, or 0.1 mm for the DEPTH_100_UM
pixel format. Timestamps: the frame's (µs in OpenNI2) in ms; source_id: its frame index.

Thread: the caller's; OpenNI2's device threads stop in ``close()``. The OpenNI2 library
stays initialised for the process (the package shuts it down at exit).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from calib import Intrinsics, SourceError

from .depth import DepthCheck, raw_to_depth_mm
from .frame import Frame, Source, logger

__all__ = ["OpenNISource", "intrinsics_from_fov"]

_INSTALL = ("OpenNI2 support needs the 'openni' Python package and the OpenNI2 runtime: "
            "pip install openni, and install OpenNI2 (libOpenNI2.so; set OPENNI2_REDIST to its folder)")


def intrinsics_from_fov(width: int, height: int, hfov_rad: float, vfov_rad: float, depth_scale: float,
                        name: str = "") -> Intrinsics:
    """A pinhole from OpenNI2's fields of view (radians), as its depth-to-world conversion."""
    return Intrinsics(
        fx=width / (2.0 * math.tan(hfov_rad / 2.0)),
        fy=height / (2.0 * math.tan(vfov_rad / 2.0)),
        cx=width / 2.0,
        cy=height / 2.0,
        width=width,
        height=height,
        depth_scale=depth_scale,
        name=name,
    )


def _openni2() -> Any:
    try:
        from openni import openni2
    except ImportError as exc:
        raise SourceError(f"{_INSTALL} ({exc})") from exc
    return openni2


def _depth_scale(openni2: Any, pixel_format: Any) -> float:
    """Metres per unit of an OpenNI2 depth pixel format (100 µm or 1 mm)."""
    return 0.0001 if pixel_format == getattr(openni2, "PIXEL_FORMAT_DEPTH_100_UM", None) else 0.001


class OpenNISource(Source):
    """An OpenNI2 device (path None: the first one) or ``.oni`` file, depth stream only.

    realtime (files): False = OpenNI2's manual playback speed (-1: the next frame when read,
    none dropped); True = the recording's pace. loop (files): OpenNI2's repeat (index keeps
    counting; timestamps restart with each pass). timeout_ms: no frame for this long raises
    SourceError (camera unplugged). num_frames: the file's frame count, None for a device.
    """

    def __init__(self, path: str | Path | None = None, *, realtime: bool = False, loop: bool = False,
                 timeout_ms: int = 5000) -> None:
        super().__init__()
        openni2 = _openni2()
        self._openni2 = openni2
        self._device: Any = None
        self._stream: Any = None
        self._timeout_ms = timeout_ms
        self._index = 0  # frames yielded
        self._read = 0  # frames read from OpenNI2 (skipped ones included)
        self._path = None if path is None else Path(path)
        what = "openni" if path is None else f"openni: {self._path}"
        if self._path is not None and not self._path.is_file():
            raise SourceError(f"recording not found: {self._path}")
        try:
            if not openni2.is_initialized():
                openni2.initialize()  # looks in OPENNI2_REDIST, then the system library folders
            if self._path is None:
                self._device = openni2.Device.open_any()
            else:
                self._device = openni2.Device.open_file(str(self._path).encode())
                self._device.playback.set_speed(1.0 if realtime else -1.0)
                self._device.playback.set_repeat_enabled(bool(loop))
            self._stream = self._device.create_depth_stream()
            if self._stream is None:
                raise SourceError(f"{what}: the device has no depth sensor")
            self._stream.start()
            mode = self._stream.get_video_mode()
            self._intrinsics = intrinsics_from_fov(
                int(mode.resolutionX), int(mode.resolutionY), float(self._stream.get_horizontal_fov()),
                float(self._stream.get_vertical_fov()), _depth_scale(openni2, mode.pixelFormat), name="OpenNI2")
            frames = self._stream.get_number_of_frames() if self._path is not None and not loop else None
        except (SourceError, ValueError):
            self._close()
            raise
        except Exception as exc:  # the package raises its own OpenNIError (a RuntimeError) or OSError
            self._close()
            message = str(exc).strip().splitlines()
            raise SourceError(f"{what}: {message[0] if message else type(exc).__name__}") from exc
        self._where = what
        self._check = DepthCheck(self._intrinsics, what)
        self.num_frames = int(frames) if frames is not None and frames > 0 else None
        self.live = self._path is None
        mode_text = f"{self._intrinsics.width}x{self._intrinsics.height} @ {mode.fps} fps"
        where = "device" if self._path is None else f"recording {self._path}"
        self.name = f"OpenNI2 {where} ({mode_text})"

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    def _next_frame(self) -> Frame | None:
        while True:
            if self._path is not None and self.num_frames is not None and self._read >= self.num_frames:
                return None  # the end of the file (OpenNI2 would wait for a next frame forever)
            if self._openni2.wait_for_any_stream([self._stream], self._timeout_ms / 1000.0) is None:
                if self._path is not None:
                    return None
                raise SourceError(f"openni: no depth frame for {self._timeout_ms} ms (camera unplugged?)")
            frame = self._stream.read_frame()
            arrival_s = time.perf_counter()
            self._read += 1
            try:
                source_id, timestamp_ms = str(frame.frameIndex), float(frame.timestamp) / 1000.0  # µs -> ms
                raw = np.frombuffer(frame.get_buffer_as_uint16(), dtype=np.uint16)
                height, width = int(frame.height), int(frame.width)
                depth = None
                if raw.size == height * width:
                    # raw_to_depth_mm copies out of OpenNI2's buffer before the frame is released.
                    depth = raw_to_depth_mm(raw.reshape(height, width), self._intrinsics.depth_scale)
            finally:
                frame.close()
            if depth is None:
                logger.warning("%s: skipped frame %s: %d pixels for %dx%d", self._where, source_id, raw.size,
                               width, height)
                continue
            depth = self._check(depth, source_id)
            if depth is not None:
                self._index += 1
                return Frame(self._index - 1, source_id, timestamp_ms, arrival_s, depth, self._intrinsics)

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        device, self._device = self._device, None
        if stream is not None:
            stream.close()  # stops it
        if device is not None:
            device.close()
