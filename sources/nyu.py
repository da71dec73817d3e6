"""The NYU Hand Pose dataset (Tompson et al. 2014): ``nyu:DIR``.

Conventions: as ``sources.frame``; labels in the "nyu14" layout (``models.joints``), camera
frame, mm.

Files (the dataset's ``train/`` or ``test/`` folder)::

    DIR/depth_1_0000001.png   kinect 1's depth, 640x480, RGB-packed: depth_mm = G * 256 + B
                              (R unused; OpenCV reads BGR, so B = channel 0, G = channel 1)
    DIR/joint_data.mat        joint_uvd (kinects, frames, 36, 3): u, v (px), d (mm); frame n
                              of depth_1_n.png is joint_uvd[0, n - 1]
    DIR/depth_1_0000001_joints14_uvd.txt   or, per frame: the 14 benchmark joints, 42 numbers

Only kinect 1 (the frontal view, the benchmark's) is read. The 14 benchmark joints are
NYU's points ``NYU14_SUBSET`` of 36; uvd -> xyz with ``calib.backproject`` and the dataset's
intrinsics (preset "nyu": 588.03, 587.07, 320, 240). NYU's own ``joint_xyz`` (y up) is not
used. The far background is stored clamped (about 2001 mm) and is passed on as is.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from calib import Intrinsics, SourceError, backproject, get_preset

from .files import DEFAULT_FPS, FileEntry, FileSequenceSource, natural_key, read_image

__all__ = [
    "NYU14_SUBSET",
    "decode_nyu_depth",
    "encode_nyu_depth",
    "nyu_uvd_to_xyz",
    "open_nyu",
    "parse_joints14_txt",
]

#: NYU's 36 points -> the 14 of the benchmark, in the "nyu14" layout's order.
NYU14_SUBSET: tuple[int, ...] = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)

_DEPTH_NAME = re.compile(r"^depth_1_(\d+)\.png$")
_MAT_FILE = "joint_data.mat"


def decode_nyu_depth(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 as OpenCV reads NYU's PNG (BGR) -> (H, W) float32 mm = G * 256 + B."""
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit 3-channel NYU depth image, got shape {bgr.shape} {bgr.dtype}")
    return bgr[..., 1].astype(np.float32) * 256.0 + bgr[..., 0].astype(np.float32)


def encode_nyu_depth(depth_mm: np.ndarray) -> np.ndarray:
    """(H, W) integer mm (0..65535) -> (H, W, 3) uint8 BGR as NYU stores it (R = 0)."""
    depth = np.asarray(depth_mm)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.integer) or depth.min() < 0 or depth.max() > 65535:
        raise ValueError("expected (H, W) integer depth in mm within 0..65535")
    depth = depth.astype(np.uint16)
    out = np.zeros(depth.shape + (3,), np.uint8)
    out[..., 0] = depth & 0xFF  # B: low byte
    out[..., 1] = depth >> 8  # G: high byte
    return out


def parse_joints14_txt(text: str) -> np.ndarray:
    """A ``*_joints14_uvd.txt`` file's text -> (14, 3) float64 uvd (px, px, mm)."""
    values = np.array(text.split(), dtype=np.float64)
    if values.size != 42:
        raise ValueError(f"expected 14 x 3 = 42 numbers (u, v, d per joint), got {values.size}")
    return values.reshape(14, 3)


def nyu_uvd_to_xyz(uvd: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """(..., 36 or 14, 3) NYU uvd (px, px, mm) -> (..., 14, 3) float64 "nyu14" joints, camera
    frame, mm (the 36 points are cut to the benchmark's 14)."""
    uvd = np.asarray(uvd, dtype=np.float64)
    if uvd.ndim >= 2 and uvd.shape[-2:] == (36, 3):
        uvd = uvd[..., list(NYU14_SUBSET), :]
    if uvd.ndim < 2 or uvd.shape[-2:] != (14, 3):
        raise ValueError(f"expected NYU uvd of shape (..., 36, 3) or (..., 14, 3), got {uvd.shape}")
    return backproject(uvd, intr)


def _joints14_txt_xyz(depth_png: Path, intr: Intrinsics) -> np.ndarray | None:
    """The joints of ``depth_1_n_joints14_uvd.txt`` beside a depth PNG, or None without one."""
    txt = depth_png.with_name(depth_png.stem + "_joints14_uvd.txt")
    if not txt.is_file():
        return None
    try:
        return nyu_uvd_to_xyz(parse_joints14_txt(txt.read_text()), intr)
    except ValueError as exc:
        raise SourceError(f"nyu: {txt}: {exc}") from exc


def _read_joint_uvd(path: Path) -> np.ndarray:
    """joint_data.mat -> kinect 1's joint_uvd, (frames, 36, 3) float64."""
    import scipy.io

    try:
        data = scipy.io.loadmat(str(path), variable_names=["joint_uvd"])
    except (OSError, ValueError, NotImplementedError) as exc:  # NotImplementedError: MATLAB v7.3 (HDF5)
        raise SourceError(f"cannot read {path}: {exc}") from exc
    uvd = data.get("joint_uvd")
    if uvd is None or uvd.ndim != 4 or uvd.shape[-1] != 3 or uvd.shape[-2] not in (14, 36):
        shape = None if uvd is None else uvd.shape
        raise SourceError(f"{path}: expected joint_uvd of shape (kinects, frames, 36, 3), got {shape}")
    return uvd[0].astype(np.float64)


def open_nyu(
    folder: str | Path,
    *,
    labels: str | Path | None = None,
    realtime: bool = False,
    loop: bool = False,
) -> FileSequenceSource:
    """NYU's kinect-1 depth frames in frame-number order, with labels when the folder has them.

    labels: a joint_data.mat to use instead of ``folder/joint_data.mat``.
    Raises SourceError for a missing folder or one without ``depth_1_*.png``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"nyu: folder not found: {folder}")
    intr = get_preset("nyu").intrinsics
    numbered = []
    for path in folder.iterdir():
        match = _DEPTH_NAME.match(path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    if not numbered:
        raise SourceError(f"nyu: {folder}: no depth_1_XXXXXXX.png files")
    numbered.sort(key=lambda item: (item[0], natural_key(item[1].name)))
    mat_path = Path(labels) if labels is not None else folder / _MAT_FILE
    if labels is not None and not mat_path.is_file():
        raise SourceError(f"nyu: labels file not found: {mat_path}")
    joint_uvd = _read_joint_uvd(mat_path) if mat_path.is_file() else None
    if joint_uvd is not None:
        xyz = nyu_uvd_to_xyz(joint_uvd, intr)  # all frames at once
        joints = [xyz[n - 1] if 1 <= n <= len(xyz) else None for n, _ in numbered]
    else:
        joints = [_joints14_txt_xyz(path, intr) for _, path in numbered]
    entries = [FileEntry(path.name, path, xyz, "nyu14") for (_, path), xyz in zip(numbered, joints)]
    with_labels = sum(e.joints_mm is not None for e in entries)
    name = f"NYU {folder} ({len(entries)} frames, {with_labels} labelled nyu14)"

    def read_depth(path: Path) -> np.ndarray:
        return decode_nyu_depth(read_image(path))

    return FileSequenceSource(entries, intr, read_depth, name, where=f"nyu:{folder}", fps=DEFAULT_FPS,
                              realtime=realtime, loop=loop)
