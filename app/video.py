"""Video files of the viewer's frames, written as they come (OpenCV's FFmpeg writer, mp4v).

Frames are (H, W, 3) uint8 RGB, the layout of ``Viewer.capture()``; the file stores them as
MPEG-4 Part 2 (``mp4v``) in the container named by the extension.

How much of a file survives an interruption depends on the container:
- ``.mp4``: the index (``moov``) is written when the file is closed. ``close()`` runs on
  every exit Python sees (``with`` block, exception, Ctrl-C, interpreter exit through a
  finaliser); a process killed outright (SIGKILL, power loss) leaves an unplayable file.
- ``.mkv``: the same mp4v stream in Matroska, written cluster by cluster; a killed process
  leaves a file that plays up to the last flushed block (measured: 252 of 300 frames at
  320x240 after ``kill -9``). OpenCV has no flush call, so the tail that FFmpeg still
  buffers (up to about 0.5 MB) is lost.
Thread: the thread that calls ``write`` (one thread per writer).
"""
from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

#: Containers that OpenCV's FFmpeg backend writes with the mp4v codec.
CONTAINERS = (".mp4", ".mkv", ".avi", ".mov")


def _release(writer) -> None:
    writer.release()


class VideoWriter:
    """Writes RGB frames of one fixed size to ``path`` at ``fps`` frames per second.

    path: output file; its extension picks the container (one of ``CONTAINERS``); the folder
        is created.
    fps: frames per second stored in the file (> 0).
    size: (width, height) in pixels of every frame.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        if self.path.suffix.lower() not in CONTAINERS:
            raise ValueError(f"VideoWriter: expected a path ending in one of {CONTAINERS}, got {str(path)!r}")
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"VideoWriter: expected fps > 0, got {fps!r}")
        if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
            raise ValueError(f"VideoWriter: expected size (width, height) of positive ints, got {size!r}")
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self.path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not writer.isOpened():
            raise OSError(f"VideoWriter: OpenCV could not open {self.path} for mp4v at {self.size[0]}x{self.size[1]}")
        self._writer = writer
        self._cv2 = cv2
        # Closes the file when the writer is collected or the interpreter exits (Ctrl-C included).
        self._finalizer = weakref.finalize(self, _release, writer)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def write(self, frame_rgb: np.ndarray) -> None:
        """Appends one frame: (height, width, 3) uint8 RGB."""
        if self.closed:
            raise ValueError(f"VideoWriter: {self.path} is closed")
        w, h = self.size
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.dtype != np.uint8 or frame_rgb.shape != (h, w, 3):
            got = (frame_rgb.shape, frame_rgb.dtype) if isinstance(frame_rgb, np.ndarray) else type(frame_rgb).__name__
            raise ValueError(f"VideoWriter.write: expected a ({h}, {w}, 3) uint8 RGB frame, got {got}")
        self._writer.write(np.ascontiguousarray(frame_rgb[..., ::-1]))
        self.frames_written += 1

    def close(self) -> None:
        """Finishes the file (writes the MP4 index); safe to call twice."""
        self._finalizer()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
