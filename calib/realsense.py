"""RealSense IO: read depth intrinsics from a device or a recording, and write small recordings.

Conventions: as ``calib.intrinsics``. librealsense reports the principal point (ppx, ppy) in
the same pixel convention we use ((0, 0) = centre of the top-left pixel; its own projection
code does u = x * fx + ppx with no half-pixel shift), so values are copied unchanged.
depth_scale is the depth sensor's "depth units" option, metres per raw z16 unit.

Lens models map one to one: rs.distortion.none / brown_conrady / inverse_brown_conrady /
kannala_brandt4 -> the same names (``calib.projection`` reproduces pyrealsense2 2.59's
projection for each). modified_brown_conrady and ftheta are not supported: with all-zero
coefficients they are read as "none", otherwise ``SourceError`` is raised.

Recordings: pyrealsense2 2.59 reads ROS1 ``.bag`` (older SDKs) and ROS2 ``.db3`` files, and
its recorder writes ``.db3`` only (it rejects other extensions: "Output file must have .db3
extension"). Beware: the recorder silently appends to an existing ``.db3`` (a read-back then
returns only part of the frames) and replaces a directory of that name, so
``write_depth_recording`` refuses an existing path unless asked to overwrite a file.

Streaming: ``open_device_stream`` / ``open_recording_stream`` start a pipeline and return a
``DepthStream`` read one frame at a time (``sources`` builds its camera and recording readers
on it); ``read_*`` below are built on the same stream.

pyrealsense2 is imported inside the functions, never at module import.
Thread: every function here blocks the calling thread until its pipeline is stopped; a
``DepthStream`` is read and closed on the thread that uses it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import SourceError
from .intrinsics import Intrinsics, SourcedIntrinsics

__all__ = [
    "RECORDING_SUFFIXES",
    "DepthRecording",
    "DepthStream",
    "RawDepthFrame",
    "intrinsics_from_rs",
    "intrinsics_to_rs",
    "open_device_stream",
    "open_recording_stream",
    "read_depth_recording",
    "read_device_intrinsics",
    "read_recording_intrinsics",
    "write_depth_recording",
]

#: File suffixes ``read_recording_intrinsics`` accepts (the writer produces ".db3" only).
RECORDING_SUFFIXES = (".bag", ".db3")

_SUPPORTED_MODELS = ("none", "brown_conrady", "inverse_brown_conrady", "kannala_brandt4")
_WAIT_MS = 100  # one wait for the next played-back frame, ms
_STALL_LIMIT_S = 10.0  # give up a playback that delivers nothing for this long, s
_DRAIN_LIMIT_S = 2.0  # at most this long reading an as-fast-as-read playback to its end on close, s


def _rs() -> Any:
    try:
        import pyrealsense2 as rs
    except ImportError as exc:  # pragma: no cover - the project pins pyrealsense2
        raise SourceError(f"pyrealsense2 is not installed ({exc}); install the project requirements") from exc
    return rs


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------- conversions


def intrinsics_from_rs(rs_intrinsics: Any, depth_scale: float, name: str = "") -> Intrinsics:
    """Convert ``pyrealsense2.intrinsics`` (+ the sensor's depth scale, m per unit)."""
    model = rs_intrinsics.model.name
    coeffs = tuple(float(c) for c in rs_intrinsics.coeffs)
    if model not in _SUPPORTED_MODELS:
        if any(c != 0.0 for c in coeffs):
            raise SourceError(
                f"unsupported RealSense distortion model {model!r} with coefficients {coeffs}; "
                f"supported: {_SUPPORTED_MODELS}"
            )
        model = "none"
    return Intrinsics(
        fx=rs_intrinsics.fx,
        fy=rs_intrinsics.fy,
        cx=rs_intrinsics.ppx,
        cy=rs_intrinsics.ppy,
        width=rs_intrinsics.width,
        height=rs_intrinsics.height,
        depth_scale=depth_scale,
        distortion=model,
        coeffs=coeffs,
        name=name,
    )


def intrinsics_to_rs(intr: Intrinsics) -> Any:
    """Convert to ``pyrealsense2.intrinsics`` (float32 inside librealsense)."""
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"intrinsics_to_rs: expected calib.Intrinsics, got {type(intr).__name__}")
    rs = _rs()
    out = rs.intrinsics()
    out.width, out.height = intr.width, intr.height
    out.fx, out.fy, out.ppx, out.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    out.model = getattr(rs.distortion, intr.distortion)
    out.coeffs = list(intr.coeffs)
    return out


# ---------------------------------------------------------------------------- reading


def _info(device: Any, field: str) -> str:
    rs = _rs()
    key = getattr(rs.camera_info, field)
    return device.get_info(key) if device.supports(key) else ""


def _depth_from_profile(pipeline_profile: Any, what: str) -> tuple[Intrinsics, str]:
    """Depth intrinsics + a description from a started pipeline's profile."""
    rs = _rs()
    try:
        stream = pipeline_profile.get_stream(rs.stream.depth).as_video_stream_profile()
    except RuntimeError as exc:
        raise SourceError(f"{what}: no depth stream ({_one_line(exc)})") from exc
    return _depth_from_device(pipeline_profile.get_device(), stream, what)


def _depth_from_device(device: Any, stream: Any, what: str) -> tuple[Intrinsics, str]:
    """Depth intrinsics + a description from a device and its depth video stream profile."""
    try:
        depth_scale = device.first_depth_sensor().get_depth_scale()
    except RuntimeError as exc:
        raise SourceError(f"{what}: no depth sensor ({_one_line(exc)})") from exc
    name = _info(device, "name") or "RealSense"
    serial = _info(device, "serial_number") or "unknown"
    firmware = _info(device, "firmware_version")
    rs_intr = stream.get_intrinsics()
    intr = intrinsics_from_rs(rs_intr, depth_scale, name=name)
    details = f"{name}, serial {serial}"
    if firmware:
        details += f", firmware {firmware}"
    details += f"; depth {intr.width}x{intr.height} @ {stream.fps()} fps, {stream.format().name}"
    return intr, details


def _checked_recording_path(path: str | Path, what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() not in RECORDING_SUFFIXES:
        raise ValueError(f"{what}: expected a recording ending in {RECORDING_SUFFIXES}, got {path.name!r}")
    if not path.is_file():
        raise FileNotFoundError(f"recording not found: {path}")
    return path


def _start_playback(path: Path, what: str, *, real_time: bool = True) -> tuple[Any, Any]:
    """Start a pipeline on ``path`` (depth only, no looping); returns (pipeline, profile).

    real_time=False switches the playback device to "as fast as the consumer reads" BEFORE
    the pipeline starts: switching after ``start`` races with the playback thread, which can
    push a burst of frames into the pipeline's small queue and drop all but the last.
    """
    rs = _rs()
    config = rs.config()
    config.enable_device_from_file(str(path), repeat_playback=False)
    config.enable_stream(rs.stream.depth)
    pipeline = rs.pipeline()
    try:
        if not real_time:
            resolved = config.resolve(rs.pipeline_wrapper(pipeline))
            resolved.get_device().as_playback().set_real_time(False)
        profile = pipeline.start(config)
    except RuntimeError as exc:
        raise SourceError(f"{what}: cannot play {path}: {_one_line(exc)}") from exc
    return pipeline, profile


@dataclass(frozen=True)
class RawDepthFrame:
    """One depth frame as librealsense delivered it.

    depth: (H, W) uint16, raw units (metres = raw * depth_scale); a copy owned by the caller.
    timestamp_ms: the frame's sensor timestamp, ms.
    frame_number: the sensor's (or the recording's) frame counter.
    """

    depth: np.ndarray
    timestamp_ms: float
    frame_number: int


class DepthStream:
    """A started pyrealsense2 depth pipeline, from a device or a recording, read frame by frame.

    Made by ``open_device_stream`` or ``open_recording_stream``; ``close()`` (or ``with``)
    stops the pipeline. intrinsics: depth intrinsics + depth scale of the stream; details:
    one line (device name, serial, firmware, mode); fps: the stream's nominal rate.
    Thread: ``read`` and ``close`` block the calling thread; librealsense's own threads end
    with ``close``.
    """

    def __init__(self, pipeline: Any, profile: Any, what: str, playback: Any | None) -> None:
        self._pipeline: Any | None = pipeline
        self._what = what
        self._playback = playback
        try:
            self.intrinsics, self.details = _depth_from_profile(profile, what)
            self.fps = int(profile.get_stream(_rs().stream.depth).fps())
        except BaseException:
            self.close()
            raise

    @property
    def is_recording(self) -> bool:
        return self._playback is not None

    def read(self, timeout_ms: int = 5000) -> RawDepthFrame | None:
        """The next depth frame; None at the end of a recording (never for a device).

        timeout_ms: how long a DEVICE may deliver nothing before ``SourceError`` (unplugged,
        stalled). A recording ends when nothing arrives and its playback has stopped; one
        that delivers nothing for ``_STALL_LIMIT_S`` while still playing raises SourceError.
        """
        if self._pipeline is None:
            raise SourceError(f"{self._what}: the stream is closed")
        rs = _rs()
        stalled_s = 0.0
        while True:
            wait_ms = _WAIT_MS if self._playback is not None else int(timeout_ms)
            try:
                ok, frameset = self._pipeline.try_wait_for_frames(wait_ms)
            except RuntimeError as exc:
                raise SourceError(f"{self._what}: {_one_line(exc)}") from exc
            if ok:
                depth = frameset.get_depth_frame()
                if not depth:
                    continue  # a frameset without depth (cannot happen with depth only enabled)
                return RawDepthFrame(
                    depth=np.array(depth.get_data(), dtype=np.uint16, copy=True),
                    timestamp_ms=float(depth.get_timestamp()),
                    frame_number=int(depth.get_frame_number()),
                )
            if self._playback is None:
                raise SourceError(f"{self._what}: no depth frame for {timeout_ms} ms (camera unplugged?)")
            # Nothing arrived for _WAIT_MS: done if the playback has reached the end.
            if self._playback.current_status() == rs.playback_status.stopped:
                return None
            stalled_s += _WAIT_MS / 1000.0
            if stalled_s > _STALL_LIMIT_S:
                raise SourceError(f"{self._what}: playback delivered no frame for {_STALL_LIMIT_S:g} s")

    def close(self) -> None:
        """Stop the pipeline (idempotent)."""
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                if self._playback is not None:
                    self._wind_down(pipeline, self._playback)
                pipeline.stop()
            except RuntimeError:
                pass  # already stopped (e.g. the device was unplugged)

    @staticmethod
    def _wind_down(pipeline: Any, playback: Any) -> None:
        """Bring a playback to rest before its pipeline is stopped. librealsense 2.59 corrupts
        its heap now and then (SIGSEGV / SIGABRT, a few times in a hundred right after start)
        when a playback that is still running is stopped. A real-time playback is paused first;
        pausing one that plays as fast as it is read can hang the stop instead, so that one is
        read to its end, for at most ``_DRAIN_LIMIT_S``."""
        if playback.is_real_time():
            playback.pause()
            return
        rs = _rs()
        deadline = time.perf_counter() + _DRAIN_LIMIT_S
        while time.perf_counter() < deadline:
            ok, _ = pipeline.try_wait_for_frames(_WAIT_MS)
            if not ok and playback.current_status() == rs.playback_status.stopped:
                return  # "stopped" also before the first frame, so only once nothing comes

    def __enter__(self) -> "DepthStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recording_stream(path: str | Path, *, real_time: bool = False, what: str = "recording") -> DepthStream:
    """Play a RealSense recording (.bag or .db3) from its start, depth only, no looping.

    real_time=False: as fast as the consumer reads, no frame dropped; True: at the pace it
    was recorded (a slow consumer then misses frames, as with a camera).
    Raises FileNotFoundError (with the path), ValueError for another suffix, SourceError
    (with the path) when pyrealsense2 cannot play it (e.g. a truncated file).
    """
    path = _checked_recording_path(path, what)
    pipeline, profile = _start_playback(path, what, real_time=real_time)
    playback = profile.get_device().as_playback()
    if playback.is_real_time() != real_time:  # resolve() and start() should share one device
        pipeline.stop()
        raise SourceError(f"{what}: {path}: could not set the playback's real-time mode to {real_time}")
    return DepthStream(pipeline, profile, f"{what}: {path}", playback)


def open_device_stream(
    serial: str | None = None,
    *,
    width: int = 0,
    height: int = 0,
    fps: int = 0,
    what: str = "RealSense",
) -> DepthStream:
    """Start the depth stream of a connected RealSense (first one, or by serial).

    width, height, fps: requested depth mode; 0 = the device's default.
    Raises SourceError when no (matching) device is connected or it cannot stream.
    """
    for field, value in (("width", width), ("height", height), ("fps", fps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}: {field} expected an int >= 0 (0 = default), got {value!r}")
    rs = _rs()
    devices = rs.context().query_devices()
    serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
    if not serials:
        raise SourceError("no RealSense device connected")
    if serial is not None and serial not in serials:
        raise SourceError(f"no RealSense device with serial {serial!r} connected (connected: {', '.join(serials)})")
    config = rs.config()
    config.enable_device(serial if serial is not None else serials[0])
    config.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
    pipeline = rs.pipeline()
    try:
        profile = pipeline.start(config)
    except RuntimeError as exc:
        raise SourceError(f"cannot start the RealSense depth stream: {_one_line(exc)}") from exc
    return DepthStream(pipeline, profile, what, None)


def read_recording_intrinsics(path: str | Path) -> SourcedIntrinsics:
    """Depth intrinsics and depth scale stored in a RealSense recording (.bag or .db3).

    Raises FileNotFoundError (with the path) when it does not exist, ValueError for another
    suffix, SourceError when pyrealsense2 cannot play it or it has no depth stream.
    """
    what = "read_recording_intrinsics"
    path = _checked_recording_path(path, what)
    # The recording is opened as a device and its stream profiles read, without streaming:
    # starting a real-time playback and stopping it at once corrupts librealsense 2.59's heap
    # now and then (a crash in a few calls in a hundred on a 4-frame clip).
    rs = _rs()
    context = rs.context()
    try:
        device = context.load_device(str(path))
    except RuntimeError as exc:
        raise SourceError(f"{what}: cannot play {path}: {_one_line(exc)}") from exc
    try:
        try:
            sensor = device.first_depth_sensor()
        except RuntimeError as exc:
            raise SourceError(f"{what}: {path}: no depth sensor ({_one_line(exc)})") from exc
        depth = [p for p in sensor.get_stream_profiles()
                 if p.stream_type() == rs.stream.depth and p.is_video_stream_profile()]
        if not depth:
            raise SourceError(f"{what}: {path}: no depth stream")
        intr, details = _depth_from_device(device, depth[0].as_video_stream_profile(), f"{what}: {path}")
    finally:
        context.unload_device(str(path))
    return SourcedIntrinsics(intr, f"READ FROM RECORDING {path} ({details})")


def read_device_intrinsics(
    serial: str | None = None,
    *,
    width: int = 0,
    height: int = 0,
    fps: int = 0,
) -> SourcedIntrinsics:
    """Depth intrinsics and depth scale of a connected RealSense (first one, or by serial).

    width, height, fps: requested depth mode; 0 = the device's default. The pipeline is
    started briefly (the intrinsics of the mode actually streamed are returned) and always
    stopped. Raises SourceError when no (matching) device is connected or it cannot stream.
    """
    with open_device_stream(serial, width=width, height=height, fps=fps, what="read_device_intrinsics") as stream:
        return SourcedIntrinsics(stream.intrinsics, f"READ FROM DEVICE ({stream.details})")


@dataclass(frozen=True)
class DepthRecording:
    """Depth frames played back from a recording.

    intrinsics: depth intrinsics + depth scale stored in the recording.
    frames: tuple of (H, W) uint16 arrays, raw units (metres = raw * depth_scale).
    timestamps_ms: tuple of float, the frames' sensor timestamps, ms.
    frame_numbers: tuple of int, as recorded.
    source: one line saying where it came from.
    """

    intrinsics: Intrinsics
    frames: tuple[np.ndarray, ...]
    timestamps_ms: tuple[float, ...]
    frame_numbers: tuple[int, ...]
    source: str


def read_depth_recording(path: str | Path, max_frames: int | None = None) -> DepthRecording:
    """Play a recording back as fast as possible (not in real time, so no frame is dropped)
    and copy out its depth frames. Meant for tests and tools; the live app streams instead
    (``open_recording_stream``, ``sources``).

    Raises as ``read_recording_intrinsics``.
    """
    what = "read_depth_recording"
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"{what}: max_frames expected None or an int >= 1, got {max_frames!r}")
    read: list[RawDepthFrame] = []
    with open_recording_stream(path, real_time=False, what=what) as stream:
        while max_frames is None or len(read) < max_frames:
            frame = stream.read()
            if frame is None:
                break
            read.append(frame)
    return DepthRecording(
        intrinsics=stream.intrinsics,
        frames=tuple(f.depth for f in read),
        timestamps_ms=tuple(f.timestamp_ms for f in read),
        frame_numbers=tuple(f.frame_number for f in read),
        source=f"READ FROM RECORDING {Path(path)} ({stream.details})",
    )


# ---------------------------------------------------------------------------- writing


def _checked_frames(depth_frames: Sequence[Any], intr: Intrinsics) -> list[np.ndarray]:
    if isinstance(depth_frames, np.ndarray) or not isinstance(depth_frames, Sequence):
        raise TypeError(
            f"write_depth_recording: depth_frames expected a list of (H, W) uint16 arrays, "
            f"got {type(depth_frames).__name__}"
        )
    if len(depth_frames) == 0:
        raise ValueError("write_depth_recording: depth_frames expected at least one frame, got 0")
    expected = (intr.height, intr.width)
    out = []
    for i, frame in enumerate(depth_frames):
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"write_depth_recording: frame {i} expected a numpy array, got {type(frame).__name__}")
        if frame.dtype != np.uint16:
            raise TypeError(f"write_depth_recording: frame {i} expected dtype uint16 (raw z16), got {frame.dtype}")
        if frame.shape != expected:
            raise ValueError(
                f"write_depth_recording: frame {i} expected shape (H, W) = {expected} from the "
                f"intrinsics, got {frame.shape}"
            )
        out.append(np.ascontiguousarray(frame))
    return out


def _checked_timestamps(timestamps_ms: Sequence[float] | None, n: int, fps: int) -> list[float]:
    if timestamps_ms is None:
        return [i * 1000.0 / fps for i in range(n)]
    stamps = [float(t) for t in timestamps_ms]
    if len(stamps) != n:
        raise ValueError(f"write_depth_recording: expected {n} timestamps (one per frame), got {len(stamps)}")
    if not all(math.isfinite(t) for t in stamps):
        raise ValueError("write_depth_recording: timestamps_ms expected finite values, got a NaN or inf")
    if any(b <= a for a, b in zip(stamps, stamps[1:])):
        raise ValueError("write_depth_recording: timestamps_ms expected strictly increasing values")
    return stamps


def write_depth_recording(
    path: str | Path,
    depth_frames: Sequence[np.ndarray],
    intr: Intrinsics,
    fps: int = 30,
    timestamps_ms: Sequence[float] | None = None,
    *,
    overwrite: bool = False,
    pace: bool = True,
    device_name: str = "calib software depth camera",
    serial: str = "000000000000",
) -> Path:
    """Write depth frames as a RealSense recording (ROS2 ``.db3``) through a software device.

    path: must end in ".db3" (the only format pyrealsense2 2.59 records); its folder must exist.
    depth_frames: list of (H, W) uint16 arrays, raw units; (H, W) = (intr.height, intr.width).
    intr: stored as the depth stream's intrinsics (float32 inside librealsense); its
        depth_scale becomes the sensor's depth-units option.
    fps: nominal stream rate, frames per second (int > 0).
    timestamps_ms: per-frame sensor timestamps, ms, strictly increasing; default i * 1000 / fps.
    overwrite: replace an existing FILE at path (the recorder would append to it otherwise).
    pace: push the frames at the pace of their timestamps (sleeping in between). The recorder
        stamps each message with its ARRIVAL time, and a real-time playback replays that
        clock, so an unpaced recording replays as one burst (a live consumer then sees only
        the last frames). Writing a paced recording takes as long as it lasts. Non-real-time
        readers (``read_depth_recording``) get every frame either way.
    returns the path. Raises ValueError/TypeError for bad input, FileExistsError,
    FileNotFoundError for a missing folder, SourceError if librealsense fails.
    """
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"write_depth_recording: fps expected a positive int, got {fps!r}")
    if not isinstance(intr, Intrinsics):
        raise TypeError(f"write_depth_recording: intr expected calib.Intrinsics, got {type(intr).__name__}")
    frames = _checked_frames(depth_frames, intr)
    stamps = _checked_timestamps(timestamps_ms, len(frames), fps)
    writer = DepthRecordingWriter(path, intr, fps, overwrite=overwrite, device_name=device_name, serial=serial,
                                  what="write_depth_recording")
    written = False
    try:
        clock0 = time.perf_counter()
        for frame, stamp in zip(frames, stamps):
            if pace:
                delay_s = (stamp - stamps[0]) / 1000.0 - (time.perf_counter() - clock0)
                if delay_s > 0:
                    time.sleep(delay_s)
            writer.write(frame, stamp)
        written = True
    finally:
        writer.close()
        if not written and writer.path.is_file():
            writer.path.unlink()  # do not leave a partial recording behind
    return writer.path


class DepthRecordingWriter:
    """Writes depth frames one at a time to a RealSense recording (ROS2 ``.db3``) through a
    software device and ``rs.recorder`` (what ``write_depth_recording`` and the app's
    ``--record`` use). ``write(raw, timestamp_ms)`` records a frame as soon as it is given;
    ``close()`` finalises the file (also on ``with`` exit). The frames are stamped with the
    given sensor timestamps; the recorder stamps messages with their ARRIVAL time, which a
    real-time playback replays (see ``write_depth_recording``'s ``pace``).

    path: must end in ".db3"; its folder must exist; an existing file is refused unless
    ``overwrite`` (the recorder would append to it). Raises ValueError / TypeError for bad
    arguments, FileExistsError, FileNotFoundError, SourceError if librealsense fails.
    """

    def __init__(self, path: str | Path, intr: Intrinsics, fps: int = 30, *, overwrite: bool = False,
                 device_name: str = "calib software depth camera", serial: str = "000000000000",
                 what: str = "DepthRecordingWriter") -> None:
        path = Path(path)
        if path.suffix != ".db3":
            raise ValueError(
                f"{what}: pyrealsense2 2.59 records ROS2 .db3 files only; expected a "
                f"path ending in '.db3', got {path.name!r}"
            )
        if not isinstance(intr, Intrinsics):
            raise TypeError(f"{what}: intr expected calib.Intrinsics, got {type(intr).__name__}")
        if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
            raise ValueError(f"{what}: fps expected a positive int, got {fps!r}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"{what}: folder not found: {path.parent}")
        if path.exists() or path.is_symlink():
            if not (overwrite and path.is_file()):
                raise FileExistsError(
                    f"{what}: {path} exists (the recorder would append to it); "
                    f"pass overwrite=True to replace a file"
                )
            path.unlink()
        self.path, self.intr, self.what, self.frames = path, intr, what, 0
        rs = _rs()
        self._rs = rs
        device = rs.software_device()
        device.register_info(rs.camera_info.name, device_name)
        device.register_info(rs.camera_info.serial_number, serial)
        self._sensor = sensor = device.add_sensor("Depth")
        stream = rs.video_stream()
        stream.type = rs.stream.depth
        stream.index = 0
        stream.uid = 0
        stream.width, stream.height = intr.width, intr.height
        stream.fps = fps
        stream.bpp = 2
        stream.fmt = rs.format.z16
        stream.intrinsics = intrinsics_to_rs(intr)
        self._profile = sensor.add_video_stream(stream).as_video_stream_profile()
        sensor.add_read_only_option(rs.option.depth_units, intr.depth_scale)
        self._recorder = rs.recorder(str(path), device)
        self._queue = rs.frame_queue(2)
        self._opened = self._started = False
        try:
            sensor.open(self._profile)
            self._opened = True
            sensor.start(self._queue)
            self._started = True
        except RuntimeError as exc:
            self.close()
            raise SourceError(f"{what}: librealsense failed: {_one_line(exc)}") from exc

    def write(self, raw: np.ndarray, timestamp_ms: float) -> None:
        """Record one (H, W) uint16 frame (raw units) with its sensor timestamp (ms)."""
        if self._recorder is None:
            raise ValueError(f"{self.what}: {self.path} is closed")
        frame = _checked_frames([raw], self.intr)[0]
        rs = self._rs
        soft = rs.software_video_frame()
        soft.pixels = frame
        soft.bpp = 2
        soft.stride = self.intr.width * 2
        soft.timestamp = float(timestamp_ms)
        soft.domain = rs.timestamp_domain.hardware_clock
        soft.frame_number = self.frames
        soft.profile = self._profile
        soft.depth_units = self.intr.depth_scale
        try:
            self._sensor.on_video_frame(soft)
            # The recorder writes a frame while dispatching it; waiting for it here keeps the
            # pixel buffer alive until then and keeps the queue from dropping anything.
            self._queue.wait_for_frame(5000)  # raises RuntimeError after 5 s
        except RuntimeError as exc:
            raise SourceError(f"{self.what}: librealsense failed: {_one_line(exc)}") from exc
        self.frames += 1

    def close(self) -> None:
        """Finalise the recording (idempotent)."""
        if self._started:
            self._sensor.stop()
            self._started = False
        if self._opened:
            self._sensor.close()
            self._opened = False
        self._recorder = None  # the recording is finalised when the recorder is destroyed

    def __enter__(self) -> "DepthRecordingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
