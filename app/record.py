"""``--record OUT.db3``: save what the camera sees, frame by frame, as a RealSense recording.

Every processed frame's depth is written as it arrives (``calib.DepthRecordingWriter``:
rs.software_device + rs.recorder), in the sensor's raw units (depth_mm / (1000 · depth_scale),
rounded), with the frame's sensor timestamp, so the file replays through ``--source OUT.db3``
like a camera's own recording. The file is finalised when the run ends, however it ends
(end of stream, Ctrl-C, closed window, a camera error): what was recorded is kept. Frames the
capture thread dropped (the tracker was busy) are not in it: it holds what the tracker saw.
The viewer's ``r`` key pauses and resumes the recording (``enabled``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def raw_units(depth_mm: np.ndarray, depth_scale: float) -> np.ndarray:
    """(H, W) float mm (0 = none) -> uint16 raw sensor units (metres = raw · depth_scale)."""
    raw = np.rint(np.nan_to_num(depth_mm, nan=0.0, posinf=0.0, neginf=0.0) / (1000.0 * depth_scale))
    return np.clip(raw, 0, 65535).astype(np.uint16)


class RecordHook:
    """A pipeline output hook: ``hook(frame, estimate, latency_ms)`` writes the frame's depth.
    Thread: the tracking thread only."""

    def __init__(self, path: str | Path, fps: int = 30) -> None:
        self.path, self.fps = Path(path), fps
        self.writer: Any = None
        self.enabled = True
        self.last_stamp = -float("inf")

    def __call__(self, frame: Any, estimate: Any, latency_ms: dict[str, float]) -> bool:
        if not self.enabled:
            return True
        from calib import DepthRecordingWriter

        if self.writer is None:
            self.writer = DepthRecordingWriter(self.path, frame.intrinsics, self.fps, what="--record")
        stamp = float(frame.timestamp_ms)
        if stamp <= self.last_stamp:  # a looping replay starts again: keep the recording's clock going
            stamp = self.last_stamp + 1000.0 / self.fps
        self.writer.write(raw_units(frame.depth_mm, frame.intrinsics.depth_scale), stamp)
        self.last_stamp = stamp
        return True

    @property
    def frames(self) -> int:
        return 0 if self.writer is None else self.writer.frames

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
