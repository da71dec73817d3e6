"""The live loop: capture thread -> bounded queue -> estimator -> refinement -> outputs.

Threads and queues. The source (``sources``) is read in its own thread (:class:`Capture`),
which stamps every frame with its arrival time (``Frame.arrival_s``, ``time.perf_counter``) and
puts it in a bounded queue (``queue_size``, default 2). A live camera must never wait for us:
when the queue is full the OLDEST frame is dropped (counted) and the newest kept, so the
tracker always works on the freshest frame. A replay read as fast as possible (``--as-fast-as-
possible``) instead blocks until there is room: no frame of a recording is lost. The main
thread takes frames, runs the estimator and the refinement, and writes the outputs (poses,
recording, viewer, video). Errors of the source end the capture thread and reach the main
thread through the queue; Ctrl-C or a closed window stops both, and :meth:`Pipeline.run`
always joins the capture thread and closes the outputs (nothing is left running, files are
flushed).

Latency of a frame (ms) = pose ready - ``arrival_s``: ``queue`` (waiting in the queue), then the
estimator's stages ``find``, ``crop``, ``network``, then ``refine``, ``output`` (writing the
pose), and ``total`` from arrival to pose ready. The viewer's drawing comes after and is not part
of it (reported separately as ``draw``). A camera's frame arrives when the capture thread reads
it; a replay read as fast as possible has no arrival clock (its frames are read ahead and wait
for the tracker), so its frames arrive when the tracker takes them and ``queue`` is 0.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import numpy as np

from models.estimator import Estimate, Estimator

STAGES = ("queue", "find", "crop", "network", "fit", "refine", "output", "total")


class SourceStalled(RuntimeError):
    """No frame arrived for ``Pipeline.stall_s`` seconds."""


class _End:
    """Queue sentinel: the source ended (``error`` None) or failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Capture(threading.Thread):
    """Reads ``frames`` into a bounded queue; see the module docstring for the drop policy.

    Thread: runs the source on its own thread ("capture"), and closes it there too when the
    reading ends (a source is read and closed on one thread: closing a RealSense playback from
    another thread while it is being read can deadlock librealsense). The queue is the only
    thing it shares with the tracking thread (and the counters, read after ``join``)."""

    def __init__(self, frames: Iterable[Any], queue_size: int = 2, drop_stale: bool = True,
                 max_frames: int | None = None) -> None:
        super().__init__(name="capture", daemon=True)
        self.frames, self.drop_stale, self.max_frames = frames, drop_stale, max_frames
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.stop_event = threading.Event()
        self.read = 0
        self.dropped = 0

    def run(self) -> None:
        err: BaseException | None = None
        try:
            for frame in self.frames:
                if self.stop_event.is_set():
                    break
                self.read += 1
                self._put(frame)
                if self.max_frames is not None and self.read >= self.max_frames:
                    break
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            err = exc
        finally:
            close = getattr(self.frames, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 -- reported, the run is ending anyway
                    err = err or exc
        self._put_final(_End(err))

    def _put_waiting(self, item: Any) -> bool:
        """Put, waiting for room until the run is stopped; False if it was."""
        while not self.stop_event.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _put_dropping(self, item: Any) -> None:
        """Put now, dropping the oldest queued frames (counted) to make room."""
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _put(self, item: Any) -> None:
        if self.drop_stale:
            self._put_dropping(item)
        else:
            self._put_waiting(item)

    def _put_final(self, item: _End) -> None:
        """The end marker is never dropped: it waits for room like a frame (replays), and
        only a live source's stale frame, or a stopped run's, makes room for it."""
        if self.drop_stale or not self._put_waiting(item):
            self._put_dropping(item)

    def stop(self) -> None:
        self.stop_event.set()


# --------------------------------------------------------------------------- outputs


def pose_record(index: int, frame: Any, est: Estimate, latency_ms: dict[str, float]) -> dict[str, Any]:
    """One line of ``--save-poses`` (README "Output formats")."""
    rec: dict[str, Any] = {"frame": index, "source_id": str(frame.source_id),
                           "timestamp_ms": round(float(frame.timestamp_ms), 3), "hand_found": bool(est.hand_found)}
    if est.hand_found:
        rec["joints_xyz_mm"] = np.round(est.joints_mm, 2).tolist()
        rec["joints_uvd"] = np.round(est.joints_uvd, 2).tolist()
    else:
        rec["joints_xyz_mm"] = None
        rec["joints_uvd"] = None
    rec["spread_mm"] = None if est.spread_mm is None else round(float(est.spread_mm), 2)
    rec["latency_ms"] = {k: round(v, 3) for k, v in latency_ms.items()}
    return rec


class PosesWriter:
    """``--save-poses``: JSON lines, one per input frame, flushed as they are written.
    Thread: the tracking thread only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"--save-poses: folder not found: {self.path.parent}")
        self.file: TextIO = self.path.open("w")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- statistics


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    v = np.asarray(values)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99))}


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


#: Latency percentiles are over the last WINDOW frames (memory stays flat on long runs).
WINDOW = 10_000
#: The first and last DRIFT frames' median total latency are compared (growth over a run).
DRIFT = 1000


@dataclass
class Stats:
    """What the summary at exit reports. Latencies in ms per stage (module docstring)."""

    frames_in: int = 0
    processed: int = 0
    dropped: int = 0
    hand_found: int = 0
    first_s: float | None = None
    last_s: float | None = None
    latency: dict[str, collections.deque] = field(default_factory=dict)
    draw_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=WINDOW))
    first_totals: list[float] = field(default_factory=list)
    rss_start_mb: float = field(default_factory=rss_mb)
    rss_after_first_mb: float = float("nan")

    def add(self, ms: dict[str, float], found: bool, now: float) -> None:
        self.processed += 1
        self.hand_found += bool(found)
        self.first_s = now if self.first_s is None else self.first_s
        self.last_s = now
        for k, v in ms.items():
            self.latency.setdefault(k, collections.deque(maxlen=WINDOW)).append(v)
        if len(self.first_totals) < DRIFT and "total" in ms:
            self.first_totals.append(ms["total"])
        if self.processed == DRIFT:
            self.rss_after_first_mb = rss_mb()

    @property
    def fps(self) -> float:
        if self.first_s is None or self.last_s is None or self.processed < 2 or self.last_s <= self.first_s:
            return float("nan")
        return (self.processed - 1) / (self.last_s - self.first_s)

    def summary(self, provider: str) -> dict[str, Any]:
        out = {"fps": self.fps, "frames": self.processed, "frames_in": self.frames_in, "dropped": self.dropped,
               "hand_found": self.hand_found / self.processed if self.processed else float("nan"),
               "provider": provider,
               "latency_ms": {k: percentiles(v) for k, v in self.latency.items() if v}}
        if self.draw_ms:
            out["latency_ms"]["draw"] = percentiles(list(self.draw_ms))
        out["memory_mb"] = {"start": self.rss_start_mb, "after_1000_frames": self.rss_after_first_mb,
                            "end": rss_mb()}
        if self.processed >= 2 * DRIFT:
            last = list(self.latency["total"])[-DRIFT:]
            out["latency_drift_ms"] = {"first_1000_p50": float(np.median(self.first_totals)),
                                       "last_1000_p50": float(np.median(last))}
        return out


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"frames in {s['frames_in']}, processed {s['frames']}, dropped {s['dropped']}, "
             f"hand found {100 * s['hand_found']:.1f} %, {s['fps']:.1f} FPS, provider {s['provider']}",
             f"{'latency ms':<12}{'p50':>10}{'p95':>10}{'p99':>10}"]
    for k, v in s["latency_ms"].items():
        lines.append(f"{k:<12}{v['p50']:10.2f}{v['p95']:10.2f}{v['p99']:10.2f}")
    m = s.get("memory_mb")
    if m:
        mid = m["after_1000_frames"]
        mid_text = "" if mid != mid else f", after 1000 frames {mid:.0f}"  # NaN: fewer than 1000 frames
        lines.append(f"resident memory MB: start {m['start']:.0f}{mid_text}, end {m['end']:.0f}")
    d = s.get("latency_drift_ms")
    if d:
        lines.append(f"total latency p50: first 1000 frames {d['first_1000_p50']:.2f} ms, "
                     f"last 1000 {d['last_1000_p50']:.2f} ms")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the loop


@dataclass
class Outputs:
    """Where results go; each optional. ``on_frame(frame, est, ms)`` hooks the viewer/video/recorder."""

    poses: PosesWriter | None = None
    hooks: list[Callable[[Any, Estimate, dict[str, float]], bool | None]] = field(default_factory=list)

    def close(self) -> None:
        """Close every output (each even if another fails), so files are complete."""
        errors = []
        for out in [self.poses, *self.hooks]:
            close = getattr(out, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001 -- reported after the others are closed
                errors.append(exc)
        if errors:
            raise errors[0]


class Pipeline:
    """Runs the loop of the module docstring over a source's frames.

    Thread: the caller's (the main thread: the viewer's window must live there); it starts and
    joins the capture thread itself."""

    def __init__(self, estimator: Estimator, refiner: Any | None = None, outputs: Outputs | None = None,
                 clock: Callable[[], float] = time.perf_counter, stall_s: float = 10.0) -> None:
        """stall_s: a source that delivers no frame for this long (s) has stalled: the run ends
        with :class:`SourceStalled` (outputs closed, what was written kept)."""
        self.estimator, self.refiner, self.outputs, self.clock = estimator, refiner, outputs or Outputs(), clock
        self.stall_s = stall_s
        self.stats = Stats()

    def process(self, index: int, frame: Any) -> tuple[Estimate, dict[str, float]]:
        """One frame through estimator, refinement and pose output; returns its result and latency."""
        t_start = self.clock()
        est = self.estimator(frame.depth_mm, frame.intrinsics)
        t_est = self.clock()
        if self.refiner is not None:
            if est.hand_found:
                joints = self.refiner(est.joints_mm, frame.depth_mm, frame.intrinsics, frame.timestamp_ms)
                est = est._replace(joints_mm=joints, joints_uvd=_project(joints, frame.intrinsics))
            else:
                self.refiner.reset()
        t_ref = self.clock()
        ms = {"queue": 1e3 * (t_start - frame.arrival_s)}
        ms.update({k: est.latency_ms.get(k, 0.0) for k in ("find", "crop", "network", "fit")})
        ms["refine"] = 1e3 * (t_ref - t_est)
        if self.outputs.poses is not None:
            ms["output"] = 0.0
            ms["total"] = 1e3 * (self.clock() - frame.arrival_s)
            self.outputs.poses.write(pose_record(index, frame, est, ms))
            t_out = self.clock()
            ms["output"] = 1e3 * (t_out - t_ref)
        ms["total"] = 1e3 * (self.clock() - frame.arrival_s)
        return est, ms

    def run(self, capture: Capture) -> dict[str, Any]:
        """Consume the capture thread's queue until the source ends, a hook returns False or
        Ctrl-C; the capture thread is always stopped and joined, the outputs closed."""
        capture.start()
        index = 0
        error: BaseException | None = None
        try:
            while True:
                try:
                    item = capture.queue.get(timeout=self.stall_s)
                except queue.Empty:
                    raise SourceStalled(f"the source delivered no frame for {self.stall_s:g} s (stalled or "
                                        f"disconnected)") from None
                if isinstance(item, _End):
                    error = item.error
                    break
                if not capture.drop_stale:
                    # A replay read as fast as possible has no arrival clock: its frames are
                    # read ahead and wait for the tracker, so a frame arrives when it is taken.
                    item = dataclasses.replace(item, arrival_s=self.clock())
                est, ms = self.process(index, item)
                self.stats.add(ms, est.hand_found, self.clock())
                index += 1
                keep_going = True
                t_draw = self.clock()
                for hook in self.outputs.hooks:
                    if hook(item, est, ms) is False:
                        keep_going = False
                if self.outputs.hooks:
                    self.stats.draw_ms.append(1e3 * (self.clock() - t_draw))
                if not keep_going:
                    break
        except KeyboardInterrupt:
            error = None
        finally:
            capture.stop()
            _drain(capture)
            # A source blocked inside a read cannot be interrupted: the capture thread is a daemon
            # and ends with the process; every other case joins here.
            capture.join(timeout=5.0)
            self.outputs.close()
            self.stats.frames_in = capture.read
            self.stats.dropped = capture.dropped
        if error is not None:
            raise error
        return self.stats.summary("")


def _drain(capture: Capture) -> None:
    """Empty the queue so a capture thread blocked on put() sees the stop flag."""
    try:
        while True:
            capture.queue.get_nowait()
    except queue.Empty:
        pass


def _project(joints_mm: np.ndarray, intr: Any) -> np.ndarray:
    from calib import project

    return project(joints_mm, intr)
