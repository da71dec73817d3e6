"""Labels in our own format: a JSON-lines file matched to frames by ``source_id``.

Conventions: camera frame x right, y down, z forward, mm; canonical joint order
(``models.joints``). One JSON object per line::

    {"source_id": "frame_0001.png", "joints_xyz_mm": [[x, y, z], ... 21 rows]}

``layout`` may name another ``models.joints`` layout (default "canonical"); ``joints_xyz_mm``
null means "no hand in this frame" (no labels); other keys are ignored. This is the app's
``--save-poses`` output, so a poses file can serve as labels. Blank lines are skipped.

``parse_labels_jsonl`` is pure; ``read_labels_jsonl`` reads the file; ``LabelledSource``
attaches such labels to the frames of any source (recordings: source_id = frame number).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

from calib import Intrinsics, SourceError

from .frame import Frame, Labels, Source

__all__ = ["LabelledSource", "parse_labels_jsonl", "read_labels_jsonl"]


def parse_labels_jsonl(text: str, where: str = "labels") -> dict[str, Labels | None]:
    """JSON-lines text -> {source_id: Labels or None}. Raises ValueError naming the line."""
    table: dict[str, Labels | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}:{number}: not valid JSON: {exc}") from exc
        if not isinstance(record, dict) or "source_id" not in record or "joints_xyz_mm" not in record:
            raise ValueError(f"{where}:{number}: expected an object with 'source_id' and 'joints_xyz_mm'")
        source_id = str(record["source_id"])
        if source_id in table:
            raise ValueError(f"{where}:{number}: source_id {source_id!r} appears twice")
        joints = record["joints_xyz_mm"]
        try:
            table[source_id] = None if joints is None else Labels(joints, record.get("layout", "canonical"))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}:{number}: {exc}") from exc
    return table


def read_labels_jsonl(path: str | Path) -> dict[str, Labels | None]:
    """Read a labels file (see the module docstring). Raises SourceError (with the path)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read labels {path}: {exc.strerror or exc}") from exc
    try:
        return parse_labels_jsonl(text, str(path))
    except ValueError as exc:
        raise SourceError(str(exc)) from exc


class LabelledSource(Source):
    """Another source's frames with labels looked up by their ``source_id`` (None if absent).

    The wrapped source is closed with this one. Thread: the caller's.
    """

    def __init__(self, source: Source, labels: Mapping[str, Labels | None], labels_name: str = "") -> None:
        super().__init__()
        self.source = source
        self._labels = labels
        self.name = f"{source.name}, labels {labels_name}" if labels_name else source.name
        self.num_frames = source.num_frames
        self.live = source.live

    @property
    def intrinsics(self) -> Intrinsics:
        return self.source.intrinsics

    def _next_frame(self) -> Frame | None:
        frame = next(self.source, None)
        if frame is None:
            return None
        return dataclasses.replace(frame, labels=self._labels.get(frame.source_id))

    def _close(self) -> None:
        self.source.close()
