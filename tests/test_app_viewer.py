"""python -m app with the viewer under Xvfb: the tracked hand is drawn (issue: demo under Xvfb)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.viewer import FINGER_COLORS, SKIN, layout

ROOT = Path(__file__).resolve().parent.parent


def _near(img: np.ndarray, rgb, tol: float = 40.0) -> np.ndarray:
    return np.linalg.norm(img.astype(np.float64) - 255.0 * np.asarray(rgb), axis=-1) < tol


def test_app_draws_the_tracked_hand_in_the_window(display, tmp_path, read_video_frames):
    video = tmp_path / "app.mp4"
    proc = subprocess.run([sys.executable, "-m", "app", "--max-frames", "12", "--as-fast-as-possible",
                           "--video", str(video)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "DISPLAY": display})
    assert proc.returncode == 0, proc.stderr
    assert "hand found 100.0 %" in proc.stdout
    frames = [bgr[..., ::-1] for bgr in read_video_frames(video)]
    assert len(frames) == 12
    img = frames[-1]
    h, w = img.shape[:2]
    lay = layout(w, h, (240, 424))
    view = img.copy()
    p, u = lay.panel, lay.hud
    view[p.y:p.y + p.h, p.x:p.x + p.w] = 0
    view[u.y:u.y + u.h, u.x:u.x + u.w] = 0
    # The 3D view shows the mesh (skin) and the skeleton (finger colours), in one place.
    skin = _near(view, SKIN, 60.0)
    fingers = np.any([_near(view, c) for c in FINGER_COLORS], axis=0)
    assert skin.sum() > 300 and fingers.sum() > 100, (skin.sum(), fingers.sum())
    ys, xs = np.nonzero(skin | fingers)
    assert np.ptp(xs) < 0.5 * w and np.ptp(ys) < 0.8 * h        # a hand, not noise all over the view
    # The depth panel holds the frame with the skeleton drawn on it; the HUD has white text.
    panel = img[p.y:p.y + p.h, p.x:p.x + p.w]
    assert (panel.sum(-1) > 30).mean() > 0.05
    hud = img[u.y:u.y + u.h, u.x:u.x + u.w]
    assert (hud.min(-1) > 200).sum() > 50
