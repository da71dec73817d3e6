"""RealSense cameras and recordings as sources: ``realsense``, ``realsense:SERIAL``,
``PATH.db3``, ``PATH.bag``.

Conventions: as ``sources.frame``. Timestamps are the sensor's, ms; source_id is the
sensor's frame number as text. Depth is converted from z16 units with the stream's
depth_scale. Built on ``calib.realsense.DepthStream`` (pyrealsense2, imported lazily).

Thread: the caller's; librealsense's own threads stop in ``close()``.
"""

from __future__ import annotations

import time
from pathlib import Path

from calib import Intrinsics, SourceError
from calib.realsense import DepthStream, RawDepthFrame, open_device_stream, open_recording_stream

from .depth import DepthCheck, raw_to_depth_mm
from .frame import Frame, Source

__all__ = ["RealSenseCamera", "RealSenseRecording"]


class _StreamSource(Source):
    """Frames from a ``DepthStream``; subclasses open it and may restart it at its end."""

    def __init__(self, stream: DepthStream, name: str) -> None:
        super().__init__()
        self._stream: DepthStream | None = stream
        self._check = DepthCheck(stream.intrinsics, name)
        self._intrinsics = stream.intrinsics
        self._index = 0
        self._time_offset_ms = 0.0  # added to sensor timestamps (recordings played in a loop)
        self.name = name

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    def _read(self) -> RawDepthFrame | None:
        assert self._stream is not None
        return self._stream.read()

    def _next_frame(self) -> Frame | None:
        while True:
            raw = self._read()
            if raw is None:
                return None
            arrival_s = time.perf_counter()
            source_id = str(raw.frame_number)
            depth = self._check(raw_to_depth_mm(raw.depth, self._intrinsics.depth_scale), source_id)
            if depth is None:
                continue
            frame = Frame(self._index, source_id, raw.timestamp_ms + self._time_offset_ms, arrival_s, depth,
                          self._intrinsics)
            self._index += 1
            return frame

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


class RealSenseCamera(_StreamSource):
    """A connected RealSense's depth stream (live; num_frames None).

    serial: which camera (None: the first); width, height, fps: depth mode, 0 = default;
    timeout_ms: no frame for this long raises SourceError (camera unplugged).
    """

    live = True

    def __init__(self, serial: str | None = None, *, width: int = 0, height: int = 0, fps: int = 0,
                 timeout_ms: int = 5000) -> None:
        stream = open_device_stream(serial, width=width, height=height, fps=fps, what="realsense")
        super().__init__(stream, f"RealSense {stream.details}")
        self._timeout_ms = timeout_ms

    def _read(self) -> RawDepthFrame | None:
        assert self._stream is not None
        return self._stream.read(self._timeout_ms)


class RealSenseRecording(_StreamSource):
    """A RealSense recording (.db3, .bag) streamed frame by frame; it ends at the end of file.

    realtime=False: as fast as it is read, no frame dropped; True: at the recording's pace
    (a slow reader misses frames). loop: play it again from the start (index and timestamps
    keep increasing: each pass is shifted by the previous passes' length plus one frame
    period). num_frames: None (a recording does not say).
    Raises SourceError (with the path) when it is missing or cannot be played (truncated).
    """

    def __init__(self, path: str | Path, *, realtime: bool = False, loop: bool = False) -> None:
        self.path = Path(path)
        self._realtime, self._loop = realtime, loop
        stream = self._open()
        super().__init__(stream, f"recording {self.path} ({stream.details})")
        self._first_ms: float | None = None
        self._last_ms = 0.0
        self._yielded_this_pass = False

    def _open(self) -> DepthStream:
        try:
            return open_recording_stream(self.path, real_time=self._realtime, what="recording")
        except (FileNotFoundError, ValueError) as exc:
            raise SourceError(str(exc)) from exc

    def _read(self) -> RawDepthFrame | None:
        assert self._stream is not None
        raw = self._stream.read()
        if raw is None and self._loop and self._yielded_this_pass:
            period_ms = 1000.0 / max(self._stream.fps, 1)
            self._time_offset_ms += self._last_ms - (self._first_ms or 0.0) + period_ms
            self._stream.close()
            self._stream = None
            self._stream = self._open()
            self._first_ms, self._yielded_this_pass = None, False
            raw = self._stream.read()
        if raw is not None:
            if self._first_ms is None:
                self._first_ms = raw.timestamp_ms
            self._last_ms = raw.timestamp_ms
            self._yielded_this_pass = True
        return raw
