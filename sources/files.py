"""A source made of one file per frame (PNG folders and the public datasets).

Conventions: as ``sources.frame``. Timestamps of file frames are index * 1000 / fps, ms.

``FileSequenceSource`` reads a list of ``FileEntry`` in order through a reader function that
turns one file into depth in mm. A file that cannot be read (corrupt, wrong type or size) is
skipped with one warning line and the iteration goes on. Listing folders and parsing label
files is done by the dataset modules before the source is built.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from calib import Intrinsics, SourceError

from .depth import DepthCheck
from .frame import Frame, Labels, Source, logger

__all__ = ["DEFAULT_FPS", "FileEntry", "Pacer", "FileSequenceSource", "natural_key", "read_image", "read_png_u16"]

#: Frame rate files are played at (timestamps, ``realtime=True`` pacing), frames per second.
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class FileEntry:
    """One frame's file.

    source_id: its name in ``Frame.source_id``; path: the file.
    joints_mm: (K, 3) labels in the camera frame, mm, or None; layout: their
        ``models.joints`` layout. ``Labels`` are built when the frame is read, so that a
        dataset of 300k labelled frames opens quickly.
    """

    source_id: str
    path: Path
    joints_mm: np.ndarray | None = None
    layout: str = "canonical"

    def labels(self) -> Labels | None:
        return None if self.joints_mm is None else Labels(self.joints_mm, self.layout)


#: Reads one file into (H, W) float mm; raises OSError, ValueError or TypeError for a bad file.
DepthReader = Callable[[Path], np.ndarray]


def natural_key(text: str) -> tuple:
    """Sort key putting "frame_2" before "frame_10" (digit runs compare as numbers)."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def read_image(path: Path, flags: int | None = None) -> np.ndarray:
    """An image file as OpenCV decodes it (default: unchanged depth and channels, BGR order).

    Raises FileNotFoundError or ValueError (the caller names the file); OpenCV's own log lines
    are silenced meanwhile so that a bad file gives one warning, ours.
    """
    import cv2

    if flags is None:
        flags = cv2.IMREAD_UNCHANGED
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        image = cv2.imread(str(path), flags)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if image is None:
        if not Path(path).is_file():
            raise FileNotFoundError("file not found")
        raise ValueError("not a readable image (corrupt or truncated)")
    return image


def read_png_u16(path: Path) -> np.ndarray:
    """A single-channel 16-bit PNG as (H, W) uint16 raw units; ValueError/TypeError otherwise."""
    image = read_image(path)
    if image.ndim != 2:
        raise ValueError(f"expected a single-channel depth image, got {image.shape[2]} channels")
    if image.dtype != np.uint16:
        raise TypeError(f"expected a 16-bit depth image, got {image.dtype}")
    return image


class Pacer:
    """Holds frames back to the pace of their timestamps (``realtime=True`` for files)."""

    def __init__(self) -> None:
        self._clock0_s: float | None = None  # perf_counter time of timestamp 0

    def wait(self, timestamp_ms: float, now_s: float) -> float:
        """Sleep until ``timestamp_ms`` after the first frame; returns the arrival time, s."""
        if self._clock0_s is None:
            self._clock0_s = now_s - timestamp_ms / 1000.0
        delay_s = self._clock0_s + timestamp_ms / 1000.0 - now_s
        if delay_s <= 0:
            return now_s
        time.sleep(delay_s)
        return time.perf_counter()


class FileSequenceSource(Source):
    """Frames from a list of files, in the list's order.

    entries: the files (non-empty); read_depth: one file -> (H, W) float mm; name: one line
    describing the source; where: how warnings name it (default: name); fps: timestamps
    are index * 1000 / fps ms; realtime: sleep to keep that pace (else as fast as read);
    loop: start again after the last file (index and timestamps keep counting; num_frames is
    then None). Thread: the caller's; no thread of its own.
    """

    def __init__(
        self,
        entries: Sequence[FileEntry],
        intrinsics: Intrinsics,
        read_depth: DepthReader,
        name: str,
        *,
        where: str | None = None,
        fps: float = DEFAULT_FPS,
        realtime: bool = False,
        loop: bool = False,
    ) -> None:
        super().__init__()
        if not entries:
            raise SourceError(f"{name}: no frames found")
        if not fps > 0:
            raise ValueError(f"fps: expected > 0 frames per second, got {fps!r}")
        self._entries = list(entries)
        self._intrinsics = intrinsics
        self._read_depth = read_depth
        self._where = where or name
        self._check = DepthCheck(intrinsics, self._where)
        self._period_ms = 1000.0 / fps
        self._pacer = Pacer() if realtime else None
        self._loop = loop
        self._position = 0  # next entry
        self._index = 0  # next frame's index
        self._yielded_this_pass = False
        self.name = name
        self.num_frames = None if loop else len(self._entries)

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    def _next_frame(self) -> Frame | None:
        while True:
            if self._position == len(self._entries):
                if not (self._loop and self._yielded_this_pass):
                    return None  # the end (or a loop over files none of which can be read)
                self._position, self._yielded_this_pass = 0, False
            entry = self._entries[self._position]
            self._position += 1
            try:
                depth = self._read_depth(entry.path)
            except (OSError, ValueError, TypeError) as exc:
                logger.warning("%s: skipped %s: %s", self._where, entry.source_id, exc)
                continue
            arrival_s = time.perf_counter()
            depth = self._check(depth, entry.source_id)
            if depth is None:
                continue
            timestamp_ms = self._index * self._period_ms
            if self._pacer is not None:
                arrival_s = self._pacer.wait(timestamp_ms, arrival_s)
            frame = Frame(self._index, entry.source_id, timestamp_ms, arrival_s, depth, self._intrinsics,
                          entry.labels())
            self._index += 1
            self._yielded_this_pass = True
            return frame
