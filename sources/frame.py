"""One depth frame as every source delivers it, and the interface every source has.

Conventions: camera frame x right, y down, z forward, millimetres; pixels (u, v) with (0, 0)
the centre of the top-left pixel (``calib``). Depth images are (H, W) float32 millimetres
with 0 = no depth (never NaN, inf or negative once a source has delivered them).

A source is a plain iterator of ``Frame``: ``for frame in source``; it ends at the end of a
file/folder/dataset (never for a live camera). Every source is a context manager; ``close()``
stops its device or pipeline and leaves no thread behind.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from calib import Intrinsics

__all__ = ["Frame", "Labels", "Source", "logger"]

#: The logger every reader reports skipped frames and repaired depth to: one line each.
logger = logging.getLogger("sources")


@dataclass(frozen=True)
class Labels:
    """Ground-truth joints of one frame.

    xyz_mm: (K, 3) float64, camera frame (x right, y down, z forward), mm.
    layout: a ``models.joints`` layout name: "canonical" (21, our order), "nyu14", "icvl16",
        "msra21"; K is that layout's number of joints.
    """

    xyz_mm: np.ndarray
    layout: str

    def __post_init__(self) -> None:
        from models.joints import get_layout  # numpy only

        layout = get_layout(self.layout)  # ValueError naming the known layouts
        xyz = np.array(self.xyz_mm, dtype=np.float64)  # a copy: frames are immutable
        if xyz.shape != (layout.num_joints, 3):
            raise ValueError(
                f"Labels.xyz_mm: expected shape ({layout.num_joints}, 3) for layout {layout.name!r}, got {xyz.shape}"
            )
        xyz.setflags(write=False)
        object.__setattr__(self, "xyz_mm", xyz)
        object.__setattr__(self, "layout", layout.name)


@dataclass(frozen=True)
class Frame:
    """One depth frame.

    index: 0-based position in the source, in input order (keeps counting when a source loops).
    source_id: the file name (folders, datasets; a path relative to the dataset folder where
        names repeat) or the sensor frame number as text (devices, recordings).
    timestamp_ms: sensor time (devices, recordings) or index * 1000 / fps (files), ms.
    arrival_s: ``time.perf_counter()`` when the frame was read, s (latency starts here).
    depth_mm: (H, W) float32 mm, 0 = no depth; (H, W) = (intrinsics.height, intrinsics.width).
    intrinsics: the depth camera's intrinsics.
    labels: ground-truth joints when the source has them, else None.
    """

    index: int
    source_id: str
    timestamp_ms: float
    arrival_s: float
    depth_mm: np.ndarray
    intrinsics: Intrinsics
    labels: Labels | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.intrinsics, Intrinsics):
            raise TypeError(f"Frame.intrinsics: expected calib.Intrinsics, got {type(self.intrinsics).__name__}")
        depth = self.depth_mm
        if not isinstance(depth, np.ndarray) or depth.dtype != np.float32:
            raise TypeError(
                f"Frame.depth_mm: expected a float32 numpy array (mm), got "
                f"{getattr(depth, 'dtype', type(depth).__name__)}"
            )
        expected = (self.intrinsics.height, self.intrinsics.width)
        if depth.shape != expected:
            raise ValueError(
                f"Frame.depth_mm: expected shape (H, W) = {expected} from the intrinsics, got {depth.shape}"
            )
        if self.labels is not None and not isinstance(self.labels, Labels):
            raise TypeError(f"Frame.labels: expected Labels or None, got {type(self.labels).__name__}")


class Source(abc.ABC, Iterator[Frame]):
    """Where depth frames come from: an iterator of ``Frame`` with its camera's intrinsics.

    name: one line saying what it reads (device and mode, file, folder, dataset).
    num_frames: how many frames the source holds (files, datasets; frames that fail to read
        are skipped, so iteration may yield fewer), None when it is live, loops or does not
        say (recordings).
    live: True for a camera, which never waits for the reader (frames not taken in time are
        lost, so the app drops stale ones); False for files, recordings, datasets and the
        renderer, which can be read at the reader's pace.
    intrinsics: of every frame it yields.

    Subclasses implement ``_next_frame`` (return None at the end) and ``_close``. After
    ``close()`` (or the end), iteration stops. Thread: the caller's; a source is read and
    closed on one thread.
    """

    name: str = ""
    num_frames: int | None = None
    live: bool = False

    def __init__(self) -> None:
        self._closed = False

    @property
    @abc.abstractmethod
    def intrinsics(self) -> Intrinsics:
        """The intrinsics of every frame this source yields."""

    @abc.abstractmethod
    def _next_frame(self) -> Frame | None:
        """The next frame, or None at the end of the source."""

    def _close(self) -> None:
        """Release devices and files (called once)."""

    def __iter__(self) -> "Source":
        return self

    def __next__(self) -> Frame:
        if self._closed:
            raise StopIteration
        frame = self._next_frame()
        if frame is None:
            raise StopIteration
        return frame

    def close(self) -> None:
        """Stop the device or pipeline and release files; safe to call twice."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
