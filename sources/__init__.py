"""Every way a depth frame enters the app: cameras, recordings, folders, public datasets.

``open_source(spec)`` parses the ``--source`` string and returns a ``Source``: a plain
iterator of ``Frame`` (depth in float32 mm, 0 = no depth, the camera's ``calib.Intrinsics``,
sensor or file timestamps, labels where the source has them), a context manager that leaves
no thread behind when closed. IO only: no hand finding, no networks.

Conventions: camera frame x right, y down, z forward, millimetres; pixels (u, v) with (0, 0)
the centre of the top-left pixel (``calib``). Readers report skipped frames and repaired
depth on the ``sources`` logger, one line each.

Importing ``sources`` imports neither torch nor pyrealsense2 nor openni.
"""

from .frame import Frame, Labels, Source
from .labels import LabelledSource, parse_labels_jsonl, read_labels_jsonl
from .open import SOURCE_FORMS, open_source

__all__ = [
    "Frame",
    "Labels",
    "LabelledSource",
    "SOURCE_FORMS",
    "Source",
    "open_source",
    "parse_labels_jsonl",
    "read_labels_jsonl",
]
