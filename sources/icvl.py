"""The ICVL hand posture dataset (Tang et al. 2014): ``icvl:DIR``.

Conventions: as ``sources.frame``; labels in the "icvl16" layout (``models.joints``), camera
frame, mm.

Files (the dataset's ``Training/`` or ``Testing/`` folder)::

    DIR/Depth/<seq>/image_0000.png   16-bit depth in mm, 320x240 (also found directly under DIR)
    DIR/labels.txt                   training labels; DIR/test_seq_1.txt, test_seq_2.txt: test
                                     labels. One frame per line: "<seq>/image_0000.png" then
                                     16 x (u px, v px, d mm): palm, thumb root/mid/tip, index,
                                     middle, ring, little

Frames come in label-file order (labels.txt, else every test_seq_*.txt in name order, or
the ``labels=`` file); without a label file, every PNG under DIR in natural path order.
source_id is the path as the label file writes it (relative to ``Depth/``), since file
names repeat across sequences. uvd -> xyz with ``calib.backproject`` and the preset "icvl"
(240.99, 240.96, 160, 120).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from calib import SourceError, backproject, get_preset

from .depth import raw_to_depth_mm
from .files import DEFAULT_FPS, FileEntry, FileSequenceSource, natural_key, read_png_u16

__all__ = ["ICVLLabels", "open_icvl", "parse_icvl_labels"]

_NUM_JOINTS = 16


class ICVLLabels(NamedTuple):
    """A label file's content: the image paths as written, and (N, 16, 3) float64 uvd (px, px, mm)."""

    paths: list[str]
    uvd: np.ndarray


def parse_icvl_labels(text: str, where: str = "labels") -> ICVLLabels:
    """An ICVL label file's text -> one (path, 16 x uvd) per non-blank line, in file order.

    Raises ValueError naming the line when it does not hold a path and 48 numbers.
    """
    paths: list[str] = []
    values: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 + 3 * _NUM_JOINTS:
            raise ValueError(
                f"{where}:{number}: expected a path and {3 * _NUM_JOINTS} numbers, got {len(fields)} fields"
            )
        try:
            values.append([float(v) for v in fields[1:]])
        except ValueError as exc:
            raise ValueError(f"{where}:{number}: {exc}") from exc
        paths.append(fields[0].replace("\\", "/"))
    return ICVLLabels(paths, np.array(values, dtype=np.float64).reshape(len(paths), _NUM_JOINTS, 3))


def _label_files(folder: Path) -> list[Path]:
    labels = folder / "labels.txt"
    if labels.is_file():
        return [labels]
    return sorted(folder.glob("test_seq_*.txt"), key=lambda p: natural_key(p.name))


def _resolve(folder: Path, relative: str) -> Path:
    """Where a label file's image path lives: under DIR/Depth/ (the dataset's layout) or DIR/."""
    for base in (folder / "Depth", folder):
        path = base / relative
        if path.is_file():
            return path
    return folder / "Depth" / relative  # missing: reported (and skipped) when read


def open_icvl(
    folder: str | Path,
    *,
    labels: str | Path | None = None,
    realtime: bool = False,
    loop: bool = False,
) -> FileSequenceSource:
    """ICVL's depth frames with their labels. labels: a label file instead of DIR's own.

    Raises SourceError for a missing folder or label file, a malformed label file, or a
    folder with neither a label file nor PNGs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"icvl: folder not found: {folder}")
    intr = get_preset("icvl").intrinsics
    if labels is not None:
        label_files = [Path(labels)]
        if not label_files[0].is_file():
            raise SourceError(f"icvl: labels file not found: {label_files[0]}")
    else:
        label_files = _label_files(folder)
    entries = []
    for label_file in label_files:
        try:
            parsed = parse_icvl_labels(label_file.read_text(), str(label_file))
        except ValueError as exc:
            raise SourceError(f"icvl: {exc}") from exc
        xyz = backproject(parsed.uvd, intr)  # (N, 16, 3) mm, all lines at once
        entries += [FileEntry(rel, _resolve(folder, rel), joints, "icvl16") for rel, joints in zip(parsed.paths, xyz)]
    if not label_files:
        base = folder / "Depth" if (folder / "Depth").is_dir() else folder
        relative = sorted((p.relative_to(base).as_posix() for p in base.rglob("*.png")), key=natural_key)
        entries = [FileEntry(r, base / r) for r in relative]
    if not entries:
        raise SourceError(f"icvl: {folder}: no label file (labels.txt, test_seq_*.txt) and no .png files")
    described = ", ".join(p.name for p in label_files) or "no labels"
    name = f"ICVL {folder} ({len(entries)} frames, {described})"

    def read_depth(path: Path) -> np.ndarray:
        return raw_to_depth_mm(read_png_u16(path), intr.depth_scale)

    return FileSequenceSource(entries, intr, read_depth, name, where=f"icvl:{folder}", fps=DEFAULT_FPS,
                              realtime=realtime, loop=loop)
