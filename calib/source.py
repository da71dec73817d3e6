"""Resolve a camera SOURCE string to intrinsics (the one parser the CLI and the app share).

Conventions: as ``calib.intrinsics``. SOURCE forms:

* ``realsense``            first connected RealSense (depth stream, default mode)
* ``realsense:SERIAL``     the connected RealSense with that serial number
* ``PATH.bag`` / ``PATH.db3``   a RealSense recording
* ``PATH.json`` / ``PATH.yaml`` / ``PATH.yml``   an intrinsics file (``Intrinsics.save``)
* ``preset:NAME``          a named preset (``calib.presets``)

Reading a device or recording is IO (pyrealsense2, imported lazily); nothing happens at import.
"""

from __future__ import annotations

from pathlib import Path

from .intrinsics import Intrinsics, SourcedIntrinsics
from .presets import get_preset

__all__ = ["SOURCE_FORMS", "intrinsics_from_source"]

SOURCE_FORMS = (
    "realsense",
    "realsense:SERIAL",
    "PATH.bag",
    "PATH.db3",
    "PATH.json",
    "PATH.yaml",
    "PATH.yml",
    "preset:NAME",
)

_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def intrinsics_from_source(source: str) -> SourcedIntrinsics:
    """Intrinsics named by ``source`` (see the module docstring), with where they came from.

    Raises ValueError for a malformed source or unknown preset, FileNotFoundError (with the
    path) for a missing file, ``calib.SourceError`` when a device/recording cannot be read.
    """
    if not isinstance(source, str):
        raise TypeError(f"source: expected a str, got {type(source).__name__}")
    spec = source.strip()
    lowered = spec.lower()
    if lowered.startswith("preset:"):
        preset = get_preset(spec.split(":", 1)[1])
        return SourcedIntrinsics(preset.intrinsics, f"PRESET {preset.name}: {preset.source}")
    if lowered == "realsense" or lowered.startswith("realsense:"):
        from .realsense import read_device_intrinsics  # lazy: pyrealsense2

        serial = spec.split(":", 1)[1].strip() if ":" in spec else None
        if serial == "":
            raise ValueError("source: expected 'realsense' or 'realsense:SERIAL', got an empty serial")
        return read_device_intrinsics(serial)
    suffix = Path(spec).suffix.lower()
    if suffix in (".bag", ".db3"):
        from .realsense import read_recording_intrinsics  # lazy: pyrealsense2

        return read_recording_intrinsics(spec)
    if suffix in _FILE_SUFFIXES:
        path = Path(spec)
        return SourcedIntrinsics(Intrinsics.load(path), f"FILE {path}")
    raise ValueError(f"source: expected one of {', '.join(SOURCE_FORMS)}; got {source!r}")
