"""A folder of 16-bit depth PNGs with ``intrinsics.json`` beside them.

Conventions: as ``sources.frame``. Layout of the folder::

    DIR/intrinsics.json   {"fx", "fy", "cx", "cy" (px), "width", "height" (px),
                           "depth_scale" (metres per PNG unit)}; optional "fps" (frames per
                           second, default 30); ``calib.Intrinsics.save`` output (with name,
                           distortion, coeffs) is accepted too
    DIR/*.png             single-channel 16-bit depth, width x height, 0 = no depth;
                           read in natural name order (frame_2 before frame_10)
    DIR/labels.jsonl      optional labels (``sources.labels``), matched by file name

source_id is the PNG's file name; timestamps are index * 1000 / fps, ms.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from calib import Intrinsics, SourceError

from .depth import raw_to_depth_mm
from .files import DEFAULT_FPS, FileEntry, FileSequenceSource, natural_key, read_png_u16
from .labels import read_labels_jsonl

__all__ = ["INTRINSICS_FILE", "LABELS_FILE", "FolderCamera", "open_png_folder", "parse_folder_intrinsics",
           "read_folder_intrinsics"]

INTRINSICS_FILE = "intrinsics.json"
LABELS_FILE = "labels.jsonl"
_FIELDS = "fx, fy, cx, cy (px), width, height (px), depth_scale (metres per unit)"


class FolderCamera(NamedTuple):
    """What ``intrinsics.json`` says: the intrinsics, and the frame rate (frames per second)."""

    intrinsics: Intrinsics
    fps: float


def parse_folder_intrinsics(data: Any, fps: float = DEFAULT_FPS) -> FolderCamera:
    """The parsed ``intrinsics.json`` -> (Intrinsics, fps); an optional "fps" key overrides the
    default frame rate. Raises ValueError/TypeError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    fps = data.pop("fps", fps)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < 10000:
        raise ValueError(f"fps: expected a positive number of frames per second, got {fps!r}")
    return FolderCamera(Intrinsics.from_dict(data), float(fps))


def read_folder_intrinsics(folder: Path, fps: float = DEFAULT_FPS) -> FolderCamera:
    """``folder/intrinsics.json``; SourceError naming the file (and the fields it needs)."""
    path = folder / INTRINSICS_FILE
    if not path.is_file():
        raise SourceError(f"{folder}: missing {INTRINSICS_FILE} beside the PNGs; it needs the fields {_FIELDS}")
    try:
        return parse_folder_intrinsics(json.loads(path.read_text(encoding="utf-8")), fps)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise SourceError(f"{path}: {exc} (fields: {_FIELDS})") from exc


def open_png_folder(
    folder: str | Path,
    *,
    labels: str | Path | None = None,
    fps: float | None = None,
    realtime: bool = False,
    loop: bool = False,
) -> FileSequenceSource:
    """The PNG folder as a source. labels: a labels file (default ``folder/labels.jsonl`` if
    present); fps: frame rate, frames per second (default: intrinsics.json's "fps", else 30).
    Raises SourceError for a missing folder, intrinsics file, labels file or PNGs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"folder not found: {folder}")
    camera = read_folder_intrinsics(folder)
    intr = camera.intrinsics
    pngs = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
                  key=lambda p: natural_key(p.name))
    if not pngs:
        raise SourceError(f"{folder}: no .png files")
    labels_path = Path(labels) if labels is not None else folder / LABELS_FILE
    if labels is not None and not labels_path.is_file():
        raise SourceError(f"labels file not found: {labels_path}")
    table = read_labels_jsonl(labels_path) if labels_path.is_file() else {}
    entries = []
    for png in pngs:
        row = table.get(png.name)
        entries.append(FileEntry(png.name, png) if row is None else FileEntry(png.name, png, row.xyz_mm, row.layout))
    scale = intr.depth_scale

    def read_depth(path: Path) -> np.ndarray:
        return raw_to_depth_mm(read_png_u16(path), scale)

    name = f"PNG folder {folder} ({len(pngs)} frames, {intr.width}x{intr.height}"
    name += f", labels {labels_path.name})" if table else ")"
    return FileSequenceSource(entries, intr, read_depth, name, where=str(folder), fps=fps or camera.fps,
                              realtime=realtime, loop=loop)
