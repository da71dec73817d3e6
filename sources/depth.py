"""Depth images into the one form frames carry: (H, W) float32 millimetres, 0 = no depth.

Conventions: raw depth images hold integer sensor units, metres = raw * depth_scale, so
mm = raw * depth_scale * 1000. Invalid depth (NaN, inf, negative) becomes 0.

The conversions are pure; ``DepthCheck`` keeps the per-source state of "warn once" and
reports through the ``sources`` logger.
"""

from __future__ import annotations

import numpy as np

from calib import Intrinsics

from .frame import logger

__all__ = ["DepthCheck", "clean_depth_mm", "raw_to_depth_mm"]


def raw_to_depth_mm(raw: np.ndarray, depth_scale: float) -> np.ndarray:
    """(H, W) integer raw units -> (H, W) float32 mm (raw * depth_scale * 1000; 0 stays 0).

    depth_scale: metres per raw unit. Exact for integer raw values when depth_scale * 1000 is
    a power of two times an integer that float32 holds (0.001 -> 1, 0.000125 -> 0.125).
    """
    if not isinstance(raw, np.ndarray) or raw.ndim != 2:
        raise ValueError(f"raw depth: expected a (H, W) array, got {getattr(raw, 'shape', type(raw).__name__)}")
    if not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(f"raw depth: expected integer sensor units, got {raw.dtype}")
    return raw.astype(np.float32) * np.float32(depth_scale * 1000.0)


def clean_depth_mm(depth_mm: np.ndarray) -> tuple[np.ndarray, int]:
    """(H, W) float mm -> ((H, W) float32 mm with NaN, inf and negatives set to 0, how many were).

    Returns the input itself (no copy) when it is float32 and nothing needed fixing.
    """
    depth = depth_mm if depth_mm.dtype == np.float32 else depth_mm.astype(np.float32)
    bad = ~(depth >= 0.0) | ~np.isfinite(depth)  # NaN fails every comparison
    count = int(np.count_nonzero(bad))
    if count:
        depth = depth.copy() if depth is depth_mm else depth
        depth[bad] = 0.0
    return depth, count


class DepthCheck:
    """The last step of every reader: size against the intrinsics, invalid values to 0.

    A frame of the wrong size is skipped (``__call__`` returns None) with one warning line
    each time; invalid values are set to 0 with one warning line per source (the first time).
    Thread: the reader's.
    """

    def __init__(self, intrinsics: Intrinsics, where: str) -> None:
        self.intrinsics = intrinsics
        self.where = where
        self._warned_invalid = False

    def __call__(self, depth_mm: np.ndarray, source_id: str) -> np.ndarray | None:
        """(H, W) float mm -> (H, W) float32 mm, or None (warned) when the size is wrong."""
        expected = (self.intrinsics.height, self.intrinsics.width)
        if depth_mm.shape != expected:
            logger.warning("%s: skipped %s: depth has shape %s, the intrinsics say (H, W) = %s",
                           self.where, source_id, depth_mm.shape, expected)
            return None
        depth, bad = clean_depth_mm(depth_mm)
        if bad and not self._warned_invalid:
            self._warned_invalid = True
            logger.warning("%s: %s: %d NaN/inf/negative depth pixels set to 0 (reported once per source)",
                           self.where, source_id, bad)
        return depth
