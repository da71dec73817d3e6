"""Shared test fixtures."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest


class OffsetPredictor:
    """A fake ``models.estimator.Predictor``: every joint at a fixed offset (mm) from the crop
    centre, no vertices; ``patches`` keeps each call's batch (B, S, S)."""

    def __init__(self, offset_mm) -> None:
        from models.crop import CropConfig

        self.crop, self.offset, self.patches = CropConfig(), np.asarray(offset_mm, np.float32), []

    def __call__(self, patches):
        self.patches.append(patches[:, 0].copy())
        return np.broadcast_to(self.offset, (len(patches), 21, 3)).copy(), None


@pytest.fixture
def offset_predictor():
    """The :class:`OffsetPredictor` class (call it with the offset)."""
    return OffsetPredictor


@pytest.fixture(scope="session")
def display():
    """A private Xvfb server for the test session; DISPLAY points at it until the session ends."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (setup.sh installs the xvfb package); the OpenGL viewer needs a display")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()       # Xvfb writes its display number once it accepts clients
    if not number:
        proc.kill()
        proc.wait()
        pytest.skip("Xvfb did not start")
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield os.environ["DISPLAY"]
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def read_video_frames():
    """A function: path -> every frame of that video, in order, (H, W, 3) uint8 BGR (cv2's order)."""
    return _read_video_frames


def _read_video_frames(path) -> list:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        cap.release()
