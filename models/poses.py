"""Named hand poses (articulations only), for pictures, tests and the pose sampler.

Angles in degrees, in the order of ``models.skeleton.ARTICULATIONS`` (four per finger,
thumb first: base flexion, base abduction, middle flexion, distal flexion).
"""
from __future__ import annotations

import math

import numpy as np

from models.skeleton import ARTICULATION, THETA_DIM

NAMED_POSES_DEG: dict[str, tuple[float, ...]] = {
    "rest": (0,) * 20,
    "relaxed": (10, 5, 15, 15,  15, 3, 20, 10,  18, 0, 25, 12,  22, -2, 28, 14,  26, -5, 30, 15),
    "fist": (35, -10, 45, 40,  85, 0, 100, 60,  90, 0, 100, 65,  90, 0, 100, 65,  85, -5, 95, 60),
    "point": (35, -10, 45, 40,  0, 5, 0, 0,  90, 0, 100, 65,  90, 0, 100, 65,  85, -5, 95, 60),
    "pinch": (25, 15, 20, 25,  45, 0, 45, 30,  10, 0, 10, 5,  8, -5, 8, 5,  6, -12, 6, 5),
    "spread": (-10, -10, -5, 0,  0, 22, 0, 0,  0, 5, 0, 0,  0, -12, 0, 0,  0, -25, 0, 0),
    "victory": (35, -10, 45, 40,  0, 15, 0, 0,  0, -8, 0, 0,  90, 0, 100, 65,  85, -5, 95, 60),
}


def named_theta(name: str, rotation: tuple[float, float, float] = (math.pi, 0.0, 0.0),
                translation: tuple[float, float, float] = (0.0, 60.0, 450.0)) -> np.ndarray:
    """θ (26,) float64 of a named pose; by default palm towards a camera 45 cm away."""
    if name not in NAMED_POSES_DEG:
        raise ValueError(f"unknown pose {name!r}; expected one of {sorted(NAMED_POSES_DEG)}")
    theta = np.zeros(THETA_DIM)
    theta[0:3] = rotation
    theta[3:6] = translation
    theta[ARTICULATION] = np.radians(NAMED_POSES_DEG[name])
    return theta
