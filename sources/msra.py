"""The MSRA hand gesture dataset "MSRA15" (Sun et al. 2015): ``msra:DIR``.

Conventions: as ``sources.frame``; labels in the "msra21" layout (``models.joints``), camera
frame (x right, y down, z forward), mm.

Files (DIR is the dataset root with P0 ... P8, or one subject or gesture folder)::

    P?/GESTURE/000000_depth.bin   six int32 (width, height, left, top, right, bottom), then
                                  float32 depth in mm for the box, (bottom - top) rows x
                                  (right - left) columns, row-major; the rest of the
                                  width x height image is 0 (no depth)
    P?/GESTURE/joint.txt          first line N, then N lines of 21 x 3 floats (x, y, z mm):
                                  frame i's joints are line i + 1

MSRA's joint frame has x right, y UP and z pointing TOWARDS the camera (points in front of
it have negative z in the file); ours has y down and z forward, so ``msra_to_camera``
maps (x, y, z) -> (x, -y, -z). With the dataset's intrinsics (preset "msra": 241.42,
241.42, 160, 120, 320x240) a joint then projects to u = fx x / z + cx, v = fy y / z + cy on
the depth image. Frames come in natural path order (P0/1/000000 ... P8/Y/000499);
source_id is the path relative to DIR.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from calib import SourceError, get_preset

from .files import DEFAULT_FPS, FileEntry, FileSequenceSource, natural_key

__all__ = ["msra_to_camera", "open_msra", "parse_msra_bin", "parse_msra_joints"]

_HEADER_BYTES = 6 * 4
_BIN_NAME = re.compile(r"^(\d+)_depth\.bin$")
_JOINT_FILE = "joint.txt"


def parse_msra_bin(data: bytes) -> np.ndarray:
    """A ``*_depth.bin`` file's bytes -> (height, width) float32 mm, 0 outside the box.

    Raises ValueError when the header is inconsistent or the length does not match it.
    """
    if len(data) < _HEADER_BYTES:
        raise ValueError(f"expected a {_HEADER_BYTES}-byte header, got {len(data)} bytes")
    width, height, left, top, right, bottom = (int(v) for v in np.frombuffer(data, "<i4", 6))
    sizes_ok = 0 < width <= 10000 and 0 < height <= 10000
    if not (sizes_ok and 0 <= left <= right <= width and 0 <= top <= bottom <= height):
        raise ValueError(f"inconsistent header: width {width}, height {height}, box left {left}, "
                         f"top {top}, right {right}, bottom {bottom}")
    rows, cols = bottom - top, right - left
    expected = _HEADER_BYTES + 4 * rows * cols
    if len(data) != expected:
        raise ValueError(f"expected {expected} bytes for a {cols}x{rows} box, got {len(data)} (truncated?)")
    depth = np.zeros((height, width), np.float32)
    depth[top:bottom, left:right] = np.frombuffer(data, "<f4", rows * cols, _HEADER_BYTES).reshape(rows, cols)
    return depth


def parse_msra_joints(text: str, where: str = _JOINT_FILE) -> np.ndarray:
    """A ``joint.txt`` file's text -> (N, 21, 3) float64 in MSRA's frame (y up, z towards
    the camera), mm. Raises ValueError when the count or a line is wrong."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{where}: empty")
    try:
        count = int(lines[0])
    except ValueError:
        raise ValueError(f"{where}: expected the number of frames on the first line, got {lines[0][:40]!r}") from None
    if len(lines) - 1 != count:
        raise ValueError(f"{where}: the first line says {count} frames, {len(lines) - 1} lines follow")
    joints = np.empty((count, 21, 3), np.float64)
    for i, line in enumerate(lines[1:]):
        values = line.split()
        if len(values) != 63:
            raise ValueError(f"{where}:{i + 2}: expected 21 x 3 = 63 numbers, got {len(values)}")
        joints[i] = np.array(values, dtype=np.float64).reshape(21, 3)
    return joints


def msra_to_camera(xyz: np.ndarray) -> np.ndarray:
    """(..., 3) MSRA joints (y up, z towards the camera) -> our camera frame (y down, z
    forward): (x, y, z) -> (x, -y, -z), mm."""
    return np.asarray(xyz, dtype=np.float64) * np.array([1.0, -1.0, -1.0])


def _read_bin(path: Path) -> np.ndarray:
    return parse_msra_bin(path.read_bytes())


def open_msra(folder: str | Path, *, realtime: bool = False, loop: bool = False) -> FileSequenceSource:
    """MSRA15's depth frames with their joints (where a ``joint.txt`` is beside them).

    Raises SourceError for a missing folder, one without ``*_depth.bin`` files or a
    malformed ``joint.txt``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"msra: folder not found: {folder}")
    intr = get_preset("msra").intrinsics
    bins = sorted((p for p in folder.rglob("*_depth.bin") if _BIN_NAME.match(p.name)),
                  key=lambda p: natural_key(p.relative_to(folder).as_posix()))
    if not bins:
        raise SourceError(f"msra: {folder}: no P?/GESTURE/XXXXXX_depth.bin files")
    joints_by_folder: dict[Path, np.ndarray | None] = {}
    entries = []
    for path in bins:
        if path.parent not in joints_by_folder:
            joint_file = path.parent / _JOINT_FILE
            joints = None
            if joint_file.is_file():
                try:
                    joints = msra_to_camera(parse_msra_joints(joint_file.read_text(), str(joint_file)))
                except ValueError as exc:
                    raise SourceError(f"msra: {exc}") from exc
            joints_by_folder[path.parent] = joints
        joints = joints_by_folder[path.parent]
        number = int(_BIN_NAME.match(path.name).group(1))
        xyz = joints[number] if joints is not None and number < len(joints) else None
        entries.append(FileEntry(path.relative_to(folder).as_posix(), path, xyz, "msra21"))
    with_labels = sum(e.joints_mm is not None for e in entries)
    name = f"MSRA15 {folder} ({len(entries)} frames, {with_labels} labelled msra21)"
    return FileSequenceSource(entries, intr, _read_bin, name, where=f"msra:{folder}", fps=DEFAULT_FPS,
                              realtime=realtime, loop=loop)
