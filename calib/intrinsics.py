"""Depth-camera intrinsics: one immutable type, its validation and its file formats.

Conventions (shared by the whole ``calib`` package):

* Camera frame: x right, y down, z forward; millimetres.
* Pixel coordinates (u, v): u along columns (right), v along rows (down), with (0, 0) the
  CENTRE of the top-left pixel, so the image spans u in [-0.5, width - 0.5].
* ``fx, fy`` (pixels) and ``cx, cy`` (pixels, in the convention above) define the pinhole part;
  ``distortion`` and ``coeffs`` the lens model, applied to normalised coordinates x/z, y/z
  (see ``calib.projection``).
* Raw depth images hold integer sensor units; metres = raw * ``depth_scale``.

File formats (``to_dict`` / ``from_dict``, ``save`` / ``load`` for .json, .yaml, .yml)::

    {"name": "...", "width": 848, "height": 480, "fx": ..., "fy": ..., "cx": ..., "cy": ...,
     "depth_scale": 0.001, "distortion": "none", "coeffs": [0, 0, 0, 0, 0]}

``from_dict`` also accepts the app's short form ``{fx, fy, cx, cy, width, height, depth_scale}``
(no distortion given means ``"none"``). Unknown keys are rejected so that a typo such as
``ppx`` is reported instead of silently ignored.

This module does file IO only in ``save`` and ``load``; everything else is pure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["DISTORTION_MODELS", "Intrinsics", "SourcedIntrinsics"]

#: Lens models understood by ``calib.projection``. Coefficient order (5 floats) per model:
#:
#: * ``"none"``: pinhole; the coefficients are kept but not used.
#: * ``"brown_conrady"``: k1, k2, p1, p2, k3 (OpenCV's 5-term model; ideal -> distorted).
#: * ``"inverse_brown_conrady"``: k1, k2, p1, p2, k3 as librealsense 2.59 applies them
#:   (tangential terms on the radially distorted point; see ``calib.projection``).
#: * ``"kannala_brandt4"``: k1, k2, k3, k4, (unused) - equidistant fisheye family;
#:   all zeros is the ideal equidistant fisheye r = f * theta.
DISTORTION_MODELS: tuple[str, ...] = (
    "none",
    "brown_conrady",
    "inverse_brown_conrady",
    "kannala_brandt4",
)

_N_COEFFS = 5
_REQUIRED_KEYS = ("fx", "fy", "cx", "cy", "width", "height", "depth_scale")
_OPTIONAL_KEYS = ("distortion", "coeffs", "name")
_YAML_SUFFIXES = (".yaml", ".yml")
_JSON_SUFFIXES = (".json",)


def _as_float(field: str, value: Any) -> float:
    if type(value) is float:   # fast path (windows and scalings are made per rendered frame)
        if not math.isfinite(value):
            raise ValueError(f"Intrinsics.{field}: expected a finite number, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Intrinsics.{field}: expected a real number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"Intrinsics.{field}: expected a finite number, got {out!r}")
    return out


def _as_size(field: str, value: Any) -> int:
    if type(value) is int and value > 0:   # fast path
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Intrinsics.{field}: expected an int (pixels), got {type(value).__name__} {value!r}")
    out = int(value)
    if out <= 0:
        raise ValueError(f"Intrinsics.{field}: expected a positive number of pixels, got {out}")
    return out


@dataclass(frozen=True)
class Intrinsics:
    """Intrinsics of one depth stream at one resolution.

    fx, fy: focal lengths, pixels (> 0).
    cx, cy: principal point, pixels, (0, 0) = centre of the top-left pixel.
    width, height: image size, pixels (int > 0).
    depth_scale: metres per raw depth unit (> 0), e.g. 0.001 for RealSense D4xx.
    distortion: one of ``DISTORTION_MODELS``.
    coeffs: 5 floats, meaning per model (see ``DISTORTION_MODELS``).
    name: free text, e.g. the preset or device it came from.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    depth_scale: float
    distortion: str = "none"
    coeffs: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    name: str = ""

    def __post_init__(self) -> None:
        # Normalise numeric types (numpy scalars, ints) to Python floats/ints so that equality,
        # hashing and serialisation behave the same whatever the caller passed.
        for field in ("fx", "fy", "cx", "cy", "depth_scale"):
            object.__setattr__(self, field, _as_float(field, getattr(self, field)))
        for field in ("width", "height"):
            object.__setattr__(self, field, _as_size(field, getattr(self, field)))
        for field in ("fx", "fy"):
            if getattr(self, field) <= 0.0:
                raise ValueError(
                    f"Intrinsics.{field}: expected a positive focal length in pixels, got {getattr(self, field)}"
                )
        if self.depth_scale <= 0.0:
            raise ValueError(
                f"Intrinsics.depth_scale: expected a positive number of metres per raw unit, got {self.depth_scale}"
            )
        if not isinstance(self.distortion, str):
            raise TypeError(f"Intrinsics.distortion: expected a str, got {type(self.distortion).__name__}")
        if self.distortion not in DISTORTION_MODELS:
            raise ValueError(f"Intrinsics.distortion: expected one of {DISTORTION_MODELS}, got {self.distortion!r}")
        if isinstance(self.coeffs, (str, bytes)) or not hasattr(self.coeffs, "__len__"):
            raise TypeError(
                f"Intrinsics.coeffs: expected a sequence of {_N_COEFFS} floats, got {type(self.coeffs).__name__}"
            )
        if len(self.coeffs) != _N_COEFFS:
            raise ValueError(f"Intrinsics.coeffs: expected {_N_COEFFS} coefficients, got {len(self.coeffs)}")
        object.__setattr__(
            self, "coeffs", tuple(_as_float(f"coeffs[{i}]", c) for i, c in enumerate(self.coeffs))
        )
        if not isinstance(self.name, str):
            raise TypeError(f"Intrinsics.name: expected a str, got {type(self.name).__name__}")

    # ------------------------------------------------------------------ derived values (pure)

    def K(self) -> np.ndarray:
        """Pinhole matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``: (3, 3) float64, pixels."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )

    @property
    def has_distortion(self) -> bool:
        """True when ``calib.projection`` applies a lens model beyond the pinhole.

        Brown-Conrady variants with all-zero coefficients are the pinhole; the equidistant
        fisheye (``kannala_brandt4``) is never the pinhole, even with zero coefficients.
        """
        if self.distortion == "none":
            return False
        if self.distortion == "kannala_brandt4":
            return True
        return any(c != 0.0 for c in self.coeffs)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera (same field of view) resampled to ``width`` x ``height`` pixels.

        With pixel centres at integer coordinates, the image edge is at -0.5, so a point at
        continuous position u maps to (u + 0.5) * sx - 0.5 with sx = width / self.width:
        ``fx' = fx * sx``, ``cx' = (cx + 0.5) * sx - 0.5`` (same for y). Distortion
        coefficients act on normalised coordinates and are unchanged. ``depth_scale`` and
        ``name`` are kept.
        """
        width = _as_size("width", width)
        height = _as_size("height", height)
        sx = width / self.width
        sy = height / self.height
        return dataclasses.replace(
            self,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=width,
            height=height,
        )

    def window(self, u0: int, v0: int, width: int, height: int) -> "Intrinsics":
        """The same camera seen through the pixel window [u0, u0 + width) x [v0, v0 + height).

        Pixel (u, v) of the window is pixel (u + u0, v + v0) of the full image: ``cx' = cx - u0``,
        ``cy' = cy - v0``; focal lengths, distortion and ``depth_scale`` are unchanged. The
        window may extend past the image (its pixels there simply see nothing).
        """
        for name, value in (("u0", u0), ("v0", v0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"Intrinsics.window: {name} must be an int (pixels), got {value!r}")
        return dataclasses.replace(self, cx=self.cx - u0, cy=self.cy - v0,
                                   width=_as_size("width", width), height=_as_size("height", height))

    # ------------------------------------------------------------------ dict form (pure)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-safe types); ``Intrinsics.from_dict(d.to_dict()) == d``."""
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "depth_scale": self.depth_scale,
            "distortion": self.distortion,
            "coeffs": list(self.coeffs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Intrinsics":
        """Build from ``to_dict`` output or the app's short form (see module docstring).

        Raises ValueError naming missing or unknown keys, TypeError for a non-mapping.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"Intrinsics.from_dict: expected a mapping, got {type(data).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(
                f"Intrinsics.from_dict: missing keys {missing}; expected {list(_REQUIRED_KEYS)} "
                f"(optional {list(_OPTIONAL_KEYS)}), got {sorted(data)}"
            )
        unknown = sorted(k for k in data if k not in _REQUIRED_KEYS + _OPTIONAL_KEYS)
        if unknown:
            raise ValueError(
                f"Intrinsics.from_dict: unknown keys {unknown}; expected {list(_REQUIRED_KEYS)} "
                f"(optional {list(_OPTIONAL_KEYS)})"
            )
        sizes = {}
        for key in ("width", "height"):
            value = data[key]
            # JSON/YAML writers sometimes produce 640.0; accept integral floats only.
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            sizes[key] = value
        distortion = data.get("distortion")
        coeffs = data.get("coeffs")
        return cls(
            fx=data["fx"],
            fy=data["fy"],
            cx=data["cx"],
            cy=data["cy"],
            width=sizes["width"],
            height=sizes["height"],
            depth_scale=data["depth_scale"],
            distortion="none" if distortion is None else distortion,
            coeffs=(0.0,) * _N_COEFFS if coeffs is None else tuple(coeffs),
            name="" if data.get("name") is None else data["name"],
        )

    # ------------------------------------------------------------------ files (IO)

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict()`` to ``path`` (.json, .yaml or .yml); returns the path."""
        path = Path(path)
        suffix = _checked_suffix(path)
        if suffix in _JSON_SUFFIXES:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            import yaml  # lazy: only needed for YAML files

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Intrinsics":
        """Read a file written by ``save`` (or the app's short form).

        Raises FileNotFoundError (with the path) when it does not exist, ValueError for an
        unsupported suffix or content that is not a mapping of the expected keys.
        """
        path = Path(path)
        suffix = _checked_suffix(path)
        if not path.is_file():
            raise FileNotFoundError(f"intrinsics file not found: {path}")
        text = path.read_text(encoding="utf-8")
        if suffix in _JSON_SUFFIXES:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        else:
            import yaml  # lazy: only needed for YAML files

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping of intrinsics keys, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class SourcedIntrinsics:
    """Intrinsics together with a one-line account of where they were read from.

    intrinsics: the values.
    source: e.g. "READ FROM RECORDING /path/x.db3 (...)", "PRESET nyu: READ FROM A REAL ...",
        "FILE /path/intr.json".
    """

    intrinsics: Intrinsics
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.intrinsics, Intrinsics):
            raise TypeError(f"SourcedIntrinsics.intrinsics: expected Intrinsics, got {type(self.intrinsics).__name__}")
        if not isinstance(self.source, str):
            raise TypeError(f"SourcedIntrinsics.source: expected a str, got {type(self.source).__name__}")


def _checked_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _JSON_SUFFIXES + _YAML_SUFFIXES:
        raise ValueError(
            f"intrinsics file: expected a suffix in {_JSON_SUFFIXES + _YAML_SUFFIXES}, got {path.name!r}"
        )
    return suffix
