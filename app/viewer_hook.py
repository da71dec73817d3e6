"""Pipeline output hook: the viewer window and/or ``--video`` (``app/viewer.py``, ``app/video.py``).

Called on the tracking thread after each processed frame (``hook(frame, estimate, latency_ms)``):
it builds a :class:`app.viewer.ViewState`, draws it, writes the drawn image to the video, and
handles the viewer's keys: space pauses (the hook then waits, drawing, until space again or a
step key), ``r`` toggles the recorder, ``q``/Esc or closing the window ends the run (returns
False). The heads-up line shows the FPS over the last second, the latency of the frame (arrival
to pose, and its p95 over the last 100 frames) and whether a hand is found.
"""
from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import numpy as np


class ViewerHook:
    """See the module docstring. Thread: the main thread only (GLFW windows live there)."""

    def __init__(self, faces: np.ndarray | None, visible: bool, video: Path | None = None,
                 size: tuple[int, int] = (960, 540), fps: float = 30.0, recorder: Any = None) -> None:
        from app.viewer import open_viewer

        self.viewer = open_viewer(size[0], size[1], faces=None if faces is None else np.asarray(faces),
                                  visible=visible, headless=not visible)
        self.faces = None if faces is None else np.asarray(faces)
        self.video_path, self.fps, self.size = video, fps, size
        self.video = None
        self.recorder = recorder
        self.times: collections.deque[float] = collections.deque(maxlen=120)
        self.totals: collections.deque[float] = collections.deque(maxlen=100)

    def hud(self, est: Any, ms: dict[str, float]) -> str:
        now = time.perf_counter()
        self.times.append(now)
        recent = [t for t in self.times if now - t <= 1.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 else float("nan")
        self.totals.append(ms.get("total", float("nan")))
        p95 = float(np.nanpercentile(np.asarray(self.totals), 95))
        hand = "hand found" if est.hand_found else "no hand"
        rec = ""
        if self.recorder is not None:
            rec = "  [R]ecording" if self.recorder.enabled else "  recording paused"
        return f"{fps:5.1f} FPS  latency {ms.get('total', float('nan')):5.1f} ms (p95 {p95:5.1f})  {hand}{rec}"

    def __call__(self, frame: Any, est: Any, ms: dict[str, float]) -> bool:
        from app.viewer import ViewState

        state = ViewState(
            depth_mm=np.ascontiguousarray(frame.depth_mm, dtype=np.float32), intrinsics=frame.intrinsics,
            joints_mm=None if est.joints_mm is None else np.asarray(est.joints_mm, dtype=np.float64),
            vertices_mm=None if est.vertices_mm is None else np.asarray(est.vertices_mm, dtype=np.float64),
            faces=self.faces if est.vertices_mm is not None else None,
            com_mm=None if est.com_mm is None else np.asarray(est.com_mm, dtype=np.float64),
            hud=self.hud(est, ms))
        self.viewer.update(state)
        self._write_video()
        if not self._keys():
            return False
        while self.viewer.paused:       # paused: keep drawing and polling until resumed or stepped
            time.sleep(0.02)
            if not self._keys():
                return False
            if self.viewer.step_requested():
                break
        return True

    def _keys(self) -> bool:
        if not self.viewer.poll():
            return False
        if self.recorder is not None and self.viewer.recording_toggled():
            self.recorder.enabled = not self.recorder.enabled
        return True

    def _write_video(self) -> None:
        if self.video_path is None:
            return
        image = self.viewer.capture()
        if self.video is None:
            from app.video import VideoWriter

            self.video = VideoWriter(self.video_path, self.fps, (image.shape[1], image.shape[0]))
        self.video.write(image)

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
        self.viewer.close()
