"""SynHand-style synthetic depth data: ``python -m models.synth``.

Frames and units: camera frame x right, y down, z forward, millimetres; pixels (u, v) with
(0, 0) the centre of the top-left pixel. Depth images are float32 mm inside the pipeline
(0 = invalid) and the sensor's raw units only where a camera would quantise them.

One frame, end to end (:func:`render_chunk`):
  1. a camera: a preset of a real depth camera (RealSense D4xx / SR300 / SR305, Kinect v1/v2,
     Azure Kinect, Creative Senz3D) at its full resolution, focal length and principal point
     jittered per chunk of 64 frames (real units differ from nominal by several percent);
  2. a hand: pose, shape and viewpoint from ``models.sampling`` (pose bank + synergies,
     children to large adults, third-person and head-mounted views);
  3. the skinned mesh from the hand layer, and a scene around it from ``models.scene``
     (body, arm, wall, table, other objects), ray-cast together at the camera's full
     resolution inside the window the hand finder and crop look at (``Intrinsics.window``:
     the pixels are exactly those of the full frame; the rest of the frame is not rendered;
     a window wider than the crop is cast at one ray per crop pixel, see ``Renderer._raycast``);
  4. the sensor model of that camera family (``models.sensor``): noise, quantisation, edge
     dropout, shadows, flying pixels, holes, range limits, invalid = 0;
  5. the app's own hand finder and crop (``models.handfind``, ``models.crop``: the same
     functions the live app runs) on the noisy frame, detection falling back to tracking as
     in the app (:class:`FramePolicy`); a frame where the finder still misses the hand is
     counted and dropped, as the app would have no crop for it.

Written per shard (``shard_00000.npz``, compressed), N frames each:
  patch (N, S, S) float16       normalised crop, [-1, 1] (models.crop)
  mask (N, S, S) bool           hand pixels in the crop (ideal render)
  joints_mm (N, 21, 3) float32  canonical joints, camera frame
  joints_uvd (N, 21, 3) float32 pixels of the full frame and depth mm
  com_mm (N, 3) float32         the hand finder's centre of mass (crop centre)
  crop_from_image (N, 3, 3) float32
  intrinsics (N, 6) float32     fx, fy, cx, cy, width, height of the full frame
  distortion (N,) int8, coeffs (N, 5) float32: the lens model (index into
                                calib.DISTORTION_MODELS) and its coefficients
  theta (N, 26), alpha (N, 6), beta (N, 7), wrist (N, 2) float32: the hand layer's input;
                                the mesh vertices are ``HandLayer()(theta, alpha, beta, wrist)``
                                exactly (stored on request with --vertices)
  view, pose_source (N,) int8; subject, posebank_index, camera (N,) int32
Shards are independent and seeded from (seed, split, shard index): generation resumes by
skipping shards already written, and the same seed gives the same bytes.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from calib import DISTORTION_MODELS, Intrinsics, get_preset, project

SPLITS = ("train", "val", "test")

#: Cameras users have, with the share of chunks each gets.
DEFAULT_CAMERAS: tuple[tuple[str, float], ...] = (
    ("d435_848x480", 0.20), ("d435_640x480", 0.08), ("d415_640x480", 0.07), ("d455_848x480", 0.05),
    ("sr305_640x480", 0.15), ("sr300_640x480", 0.10), ("kinect_v1_640x480", 0.10),
    ("kinect_v2_512x424", 0.07), ("azure_kinect_nfov_unbinned", 0.08), ("senz3d_320x240", 0.10),
)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Lengths in mm, angles in degrees."""

    frames_per_shard: int = 2000
    chunk: int = 64                      # frames sharing one camera draw
    hands_per_draw: int = 256            # hands sampled together (one layer call), in groups of chunk
    cameras: tuple[tuple[str, float], ...] = DEFAULT_CAMERAS
    focal_jitter: float = 0.04           # relative, uniform ±
    principal_jitter_px: float = 6.0     # uniform ±, at 640 px width (scaled with the width)
    window_margin: float = 1.1           # rendered window = margin × the crop cube's projection
    max_rays_per_crop_px: float = 1.0    # ray-cast resolution cap, see Renderer._raycast
    full_frames: bool = False            # render and keep whole frames ("frame"; pictures, evaluation; slow)
    store_vertices: bool = False
    seed: int = 0


class Frame(NamedTuple):
    """One labelled frame before it is batched into a shard."""

    patch: np.ndarray
    mask: np.ndarray
    joints_mm: np.ndarray
    joints_uvd: np.ndarray
    com_mm: np.ndarray
    crop_from_image: np.ndarray
    intrinsics: np.ndarray


def shard_seed(seed: int, split: str, shard: int) -> int:
    """A 63-bit seed for one shard, stable across runs and platforms."""
    digest = hashlib.sha256(f"synhand/{seed}/{split}/{shard}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample_camera(rng: np.random.Generator, cfg: SynthConfig) -> tuple[int, Intrinsics]:
    """A camera preset (index into cfg.cameras) with jittered focal length and principal point."""
    weights = np.array([w for _, w in cfg.cameras], dtype=np.float64)
    k = int(rng.choice(len(cfg.cameras), p=weights / weights.sum()))
    base = get_preset(cfg.cameras[k][0]).intrinsics
    f = 1.0 + rng.uniform(-cfg.focal_jitter, cfg.focal_jitter)
    aspect = 1.0 + rng.uniform(-0.005, 0.005)
    jitter = cfg.principal_jitter_px * base.width / 640.0
    intr = dataclasses.replace(
        base, fx=base.fx * f, fy=base.fy * f * aspect,
        cx=base.cx + rng.uniform(-jitter, jitter), cy=base.cy + rng.uniform(-jitter, jitter))
    return k, intr


def render_window(palm_mm: np.ndarray, intr: Intrinsics, cube_mm: float, margin: float) -> tuple[int, int, int, int]:
    """Pixel window (u0, v0, width, height) around the palm: ``margin`` × the cube's projection."""
    half = 0.5 * margin * cube_mm / max(float(palm_mm[2]), 1.0)
    uv = project(palm_mm.astype(np.float64), intr)
    hu, hv = half * intr.fx, half * intr.fy
    u0 = int(np.floor(max(uv[0] - hu, 0.0)))
    v0 = int(np.floor(max(uv[1] - hv, 0.0)))
    u1 = int(np.ceil(min(uv[0] + hu, intr.width - 1.0))) + 1
    v1 = int(np.ceil(min(uv[1] + hv, intr.height - 1.0))) + 1
    return u0, v0, max(u1 - u0, 1), max(v1 - v0, 1)


@dataclass
class ChunkStats:
    """Counts over rendered frames (what was kept and why the rest was dropped)."""

    out_of_range: int = 0    # palm outside the sampled sensor's range: skipped before rendering
    rendered: int = 0
    kept: int = 0
    no_hand: int = 0         # the hand finder / tracker returned None
    wrong_object: int = 0    # it found something else: centre farther than max_com_error_mm from the palm
    detected: int = 0        # kept frames whose centre came from find_hand
    tracked: int = 0         # kept frames whose centre came from track_hand
    com_error_mm: list = field(default_factory=list)

    def add(self, other: "ChunkStats") -> None:
        for f in ("out_of_range", "rendered", "kept", "no_hand", "wrong_object", "detected", "tracked"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.com_error_mm.extend(other.com_error_mm)


@dataclass(frozen=True)
class FramePolicy:
    """How the app's finder is applied to a rendered frame.

    track_share: share of third-person frames centred by ``track_hand`` from the previous
        frame's joints alone; the others run ``find_hand`` first and, as the app does
        (``models.estimator.Estimator.locate``), fall back to tracking when it finds nothing
        or something farther than half a cube from the previous hand. Egocentric frames are
        always tracked, since detection assumes the hand is nearer than its forearm.
    track_noise_mm: the previous frame's joints = ground truth + a common offset of this
        standard deviation per axis (hand motion between frames) + 3 mm per joint.
    max_com_error_mm: a centre farther than this from the palm centre means the finder
        locked onto something else; the frame is dropped (the app would crop the wrong thing).
    range_margin_mm: hands whose palm centre is not this far inside the sensor's range
        (e.g. nearer than a Kinect's 500 mm) are skipped before rendering.
    """

    track_share: float = 0.5
    track_noise_mm: float = 15.0
    max_com_error_mm: float = 60.0
    range_margin_mm: float = 40.0


class Renderer:
    """Renders labelled frames. Holds the hand layer and configs; one per worker process."""

    def __init__(self, cfg: SynthConfig = SynthConfig(), policy: FramePolicy = FramePolicy(), threads: int = 0) -> None:
        import torch

        from models.crop import CropConfig
        from models.hand_layer import HandLayer
        from models.handfind import HandFinderConfig
        from models.scene import SceneConfig

        self.cfg, self.policy, self.threads = cfg, policy, threads
        self.layer = HandLayer(dtype=torch.float32).eval()
        self.faces = self.layer.faces.numpy().astype(np.int32)
        self.crop_cfg, self.finder_cfg, self.scene_cfg = CropConfig(), HandFinderConfig(), SceneConfig()
        # Whole frames are padded with 0 (no depth) to the largest camera's size so that frames
        # of every camera stack into one array; "intrinsics" holds each frame's own width and height.
        lenses = [get_preset(name).intrinsics for name, _ in cfg.cameras]
        self.frame_shape = (max(i.height for i in lenses), max(i.width for i in lenses))

    def render_chunk(self, rng: np.random.Generator, split: str, max_hands: int | None = None
                     ) -> tuple[dict[str, np.ndarray], ChunkStats]:
        """``cfg.hands_per_draw`` hands (at most ``max_hands``) drawn together, seen in groups of
        ``cfg.chunk`` by one camera draw each: (arrays of the kept frames, stats)."""
        import torch

        from models.sampling import hand_sampler
        from models.sensor import range_envelope_mm

        cfg = self.cfg
        sampler = hand_sampler()
        n = cfg.hands_per_draw if max_hands is None else max(1, min(cfg.hands_per_draw, max_hands))
        bodies = sampler.bodies(rng, n, split)
        groups = []
        for start in range(0, n, cfg.chunk):
            cam, intr = sample_camera(rng, cfg)
            # hands no sensor of this camera could see are not drawn (the range check in
            # _frame would skip them): palm depths within the envelope of the sensor ranges
            near, far = range_envelope_mm(cfg.cameras[cam][0])
            margin = self.policy.range_margin_mm
            hands = sampler.place(rng, bodies.take(slice(start, start + cfg.chunk)), intr,
                                  (near + margin, far - margin))
            groups.append((cam, intr, hands))
        theta, alpha, beta, wrist = (np.concatenate([getattr(h, k) for _, _, h in groups])
                                     for k in ("theta", "alpha", "beta", "wrist"))
        with torch.inference_mode():
            out = self.layer(*(torch.as_tensor(x) for x in (theta, alpha, beta)), wrist=torch.as_tensor(wrist))
        verts, joints = out.vertices.numpy(), out.joints.numpy().astype(np.float64)
        stats = ChunkStats()
        kept: dict[str, list] = {k: [] for k in _FRAME_KEYS}
        i = -1
        for cam, intr, hands in groups:
            for k in range(hands.theta.shape[0]):
                i += 1
                frame = self._frame(rng, cam, intr, verts[i], joints[i], int(hands.view[k]), stats)
                if frame is None:
                    continue
                frame.update({key: getattr(hands, key)[k] for key in _HAND_KEYS})
                if cfg.store_vertices:
                    frame["vertices"] = verts[i].astype(np.float32)
                for key, value in frame.items():
                    kept[key].append(value)
        arrays = {k: np.stack(v) for k, v in kept.items() if v}
        return arrays, stats

    def _frame(self, rng: np.random.Generator, cam: int, intr: Intrinsics, verts: np.ndarray, joints: np.ndarray,
               view: int, stats: ChunkStats) -> dict[str, np.ndarray] | None:
        """One hand through scene, ray cast, sensor, finder and crop; None (and counted) if dropped."""
        from models.crop import crop_depth, crop_window
        from models.handfind import detection_agrees, find_hand, track_hand
        from models.joints import palm_centre
        from models.sampling import View
        from models.sensor import sample_sensor

        cfg, policy = self.cfg, self.policy
        palm = palm_centre(joints)
        sensor = sample_sensor(rng, cfg.cameras[cam][0])
        if not sensor.min_range_mm + policy.range_margin_mm < palm[2] < sensor.max_range_mm - policy.range_margin_mm:
            stats.out_of_range += 1  # this camera cannot see a hand there: not rendered
            return None
        stats.rendered += 1
        if cfg.full_frames:
            u0, v0, w, h = 0, 0, intr.width, intr.height
        else:
            u0, v0, w, h = render_window(palm, intr, self.crop_cfg.cube_mm, cfg.window_margin)
        win = intr.window(u0, v0, w, h)
        egocentric = view == int(View.EGOCENTRIC)
        depth, hand = self.render_depth(rng, sensor, intr, (u0, v0, w, h), verts, joints, egocentric)
        previous = joints + rng.normal(0.0, policy.track_noise_mm, 3) + rng.normal(0.0, 3.0, (21, 3))
        det = None
        if not egocentric and rng.random() >= policy.track_share:
            det = find_hand(depth, win, self.finder_cfg)
            if not detection_agrees(det, palm_centre(previous), self.crop_cfg.cube_mm):
                det = None  # as in the app (models.estimator): the tracker takes over
        if det is None:
            det = track_hand(depth, win, previous, self.finder_cfg)
        if det is None:
            stats.no_hand += 1
            return None
        err = float(np.linalg.norm(det.com_mm - palm))
        if err > policy.max_com_error_mm:
            stats.wrong_object += 1
            return None
        stats.kept += 1
        stats.com_error_mm.append(err)
        stats.tracked += det.method == "track"
        stats.detected += det.method != "track"
        crop = crop_depth(depth, win, det.com_mm, self.crop_cfg)
        mask = cv2_warp_nearest(hand.view(np.uint8), crop.crop_from_image, self.crop_cfg.size)
        frame = {
            "patch": crop.patch.astype(np.float16),
            "mask": mask > 0,
            "joints_mm": joints.astype(np.float32),
            "joints_uvd": project(joints, intr).astype(np.float32),
            "com_mm": det.com_mm.astype(np.float32),
            "crop_from_image": crop_window(det.com_mm, intr, self.crop_cfg).astype(np.float32),
            "intrinsics": np.array([intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height], np.float32),
            "distortion": np.int8(DISTORTION_MODELS.index(intr.distortion)),
            "coeffs": np.asarray(intr.coeffs, np.float32),
            "camera": np.int32(cam),
        }
        if cfg.full_frames:
            frame["frame"] = np.zeros(self.frame_shape, np.float32)
            frame["frame"][:depth.shape[0], :depth.shape[1]] = depth
        return frame

    def render_depth(self, rng: np.random.Generator, sensor, intr: Intrinsics, window: tuple[int, int, int, int],
                     verts: np.ndarray, joints: np.ndarray, egocentric: bool) -> tuple[np.ndarray, np.ndarray]:
        """The hand in a sampled scene, ray-cast inside ``window`` and seen through ``sensor``.

        sensor: a ``models.sensor.SensorModel``; intr: the full frame's intrinsics; window:
        (u0, v0, width, height) pixels of it; verts (V, 3), joints (21, 3): the hand, mm,
        camera frame. Returns (depth (h, w) float32 mm with 0 = invalid, hand (h, w) bool: the
        pixels whose ideal ray hits the hand). The live source ``sources.synthetic`` renders
        whole frames with it.
        """
        from models.scene import merge_meshes, sample_scene
        from models.sensor import apply_sensor

        u0, v0, w, h = window
        win = intr.window(u0, v0, w, h)
        scene = sample_scene(rng, verts, joints, intr, "egocentric" if egocentric else "third_person", self.scene_cfg)
        meshes = [(verts, self.faces)]
        if scene:  # one geometry for the whole background: Open3D adds each geometry at ~0.1 ms
            meshes.append(merge_meshes(scene))
        cast = self._raycast(meshes, win)
        return apply_sensor(cast.depth, win, sensor, rng, normals=cast.normals, window_u0=u0), cast.geometry_id == 0

    def _raycast(self, meshes: list, win: Intrinsics) -> WindowCast:
        """Ray-cast the window; at most ``max_rays_per_crop_px`` rays per crop pixel across.

        The crop resamples the window to ``crop.size`` pixels with nearest neighbours, so a
        window wider than ``max_rays_per_crop_px x size x window_margin`` pixels is cast on a
        coarser grid of that width (``Intrinsics.scaled``: same field of view, any ratio) and
        its depth and mesh ids brought back to the camera's pixel grid with nearest neighbours.
        The sensor model then still works in the camera's own pixels (its edge bands, shadows
        and holes keep their real size); only the hand's silhouette is quantised to the coarser
        grid. The normals stay on the cast grid (the sensor model samples them per 2x2 block).
        """
        from models.render import raycast

        across = self.cfg.max_rays_per_crop_px * self.crop_cfg.size * self.cfg.window_margin
        longest = max(win.width, win.height)
        if longest <= across:
            hit = raycast(meshes, win, self.threads)
            return WindowCast(hit.depth, hit.geometry_id, hit.normals)
        s = across / longest
        coarse = win.scaled(max(1, round(win.width * s)), max(1, round(win.height * s)))
        hit = raycast(meshes, coarse, self.threads)
        up = lambda a: cv2_resize_nearest(a, win.width, win.height)  # noqa: E731
        return WindowCast(up(hit.depth), up(hit.geometry_id), hit.normals)


class WindowCast(NamedTuple):
    """A window's ideal ray cast (see ``Renderer._raycast``)."""

    depth: np.ndarray        # (H, W) float32 mm at the window's pixels, 0 = no hit
    geometry_id: np.ndarray  # (H, W) int32 index into the mesh list, -1 = no hit
    normals: np.ndarray      # (h, w, 3) float32 on the cast grid (h <= H, w <= W), 0 = no hit


def cv2_resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)  # pixel centres aligned


_HAND_KEYS = ("theta", "alpha", "beta", "wrist", "view", "pose_source", "subject", "posebank_index")
_FRAME_KEYS = ("patch", "mask", "joints_mm", "joints_uvd", "com_mm", "crop_from_image", "intrinsics",
               "theta", "alpha", "beta", "wrist", "view", "pose_source", "subject", "posebank_index",
               "distortion", "coeffs", "camera", "vertices", "frame")


def cv2_warp_nearest(image: np.ndarray, crop_from_image: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` into the size x size crop with nearest neighbours (0 outside)."""
    import cv2

    return cv2.warpAffine(image, crop_from_image[:2].astype(np.float64), (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --------------------------------------------------------------------------- shards (IO)

def shard_path(out_dir: Path, split: str, shard: int) -> Path:
    return out_dir / split / f"shard_{shard:05d}.npz"


def render_shard(renderer: Renderer, split: str, shard: int, frames: int) -> tuple[dict[str, np.ndarray], ChunkStats]:
    """Exactly ``frames`` kept frames for one shard, seeded from (seed, split, shard)."""
    rng = np.random.default_rng(shard_seed(renderer.cfg.seed, split, shard))
    parts, stats = [], ChunkStats()
    have = 0
    while have < frames:
        need = frames - have  # about 88 % of the drawn hands are kept: do not draw many more
        arrays, s = renderer.render_chunk(rng, split, max_hands=need + need // 4 + 4)
        stats.add(s)
        if arrays:
            parts.append(arrays)
            have += len(arrays["patch"])
    merged = {k: np.concatenate([p[k] for p in parts])[:frames] for k in parts[0]}
    return merged, stats


def write_shard(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write an ``.npz`` (``np.load`` reads it) atomically: temp file + rename, so an interrupted
    run never leaves a half shard. Deflate level 3: as fast as level 1 here and 6 % larger
    than ``np.savez_compressed``'s level 6, which takes twice as long."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    members = {"meta": np.array(json.dumps(meta)), **arrays}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=3) as archive:
        for name, value in members.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    os.replace(tmp, path)


def _worker_init(cfg: SynthConfig, started: float | None = None) -> None:
    """Load everything a worker needs (torch, Open3D, the hand layer); ``started``: the
    ``time.time()`` the pool was asked for, to report how long start-up took."""
    import open3d  # noqa: F401  (the first ray cast would load it: ~1-2 s, counted as start-up here)
    import torch

    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    global _RENDERER, _READY_S
    _RENDERER = Renderer(cfg, threads=1)
    _READY_S = None if started is None else time.time() - started


_RENDERER: Renderer | None = None
_READY_S: float | None = None    # this worker's start-up, s; reported with its first shard


def _worker_shard(job: tuple[Path, str, int, int]) -> tuple[int, int, dict]:
    global _READY_S
    out_dir, split, shard, frames = job
    assert _RENDERER is not None
    t0 = time.perf_counter()
    arrays, stats = render_shard(_RENDERER, split, shard, frames)
    meta = {"split": split, "shard": shard, "seed": _RENDERER.cfg.seed, "frames": frames,
            "cameras": [c for c, _ in _RENDERER.cfg.cameras], "rendered": stats.rendered,
            "no_hand": stats.no_hand, "wrong_object": stats.wrong_object, "tracked": stats.tracked,
            "detected": stats.detected, "seconds": time.perf_counter() - t0}
    write_shard(shard_path(out_dir, split, shard), arrays, meta)
    summary = {k: meta[k] for k in ("rendered", "no_hand", "wrong_object", "tracked", "detected")}
    summary["com_error_mm"] = stats.com_error_mm
    summary["start_s"] = [] if _READY_S is None else [_READY_S]
    _READY_S = None
    return shard, frames, summary


class _Progress:
    """A one-line progress bar on stderr (frames, rate, time left)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done, self.t0 = total, label, 0, time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        left = (self.total - self.done) / max(rate, 1e-9)
        bar = "#" * int(30 * self.done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} frames, {rate:.0f} fps, "
                         f"{left / 60:.1f} min left ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def generate(out_dir: Path, split: str, frames: int, cfg: SynthConfig, workers: int) -> dict:
    """Write ``frames`` frames of ``split`` as shards under ``out_dir/split``; skip shards already there."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    shards = -(-frames // cfg.frames_per_shard)
    jobs = []
    for s in range(shards):
        n = min(cfg.frames_per_shard, frames - s * cfg.frames_per_shard)
        if not shard_path(out_dir, split, s).exists():
            jobs.append((out_dir, split, s, n))
    todo = sum(j[3] for j in jobs)
    totals = {"rendered": 0, "no_hand": 0, "wrong_object": 0, "tracked": 0, "detected": 0, "com_error_mm": [],
              "start_s": []}
    progress = _Progress(todo, f"{split}: {len(jobs)} of {shards} shards to write")
    t0, started = time.perf_counter(), time.time()
    if workers <= 1:
        _worker_init(cfg, started)
        results = map(_worker_shard, jobs)
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(cfg, started))
        results = pool.imap_unordered(_worker_shard, jobs)
    for _, n, summary in results:
        for k in totals:
            totals[k] = totals[k] + summary[k]
        progress.update(n)
    progress.close()
    if workers > 1:
        pool.close()
        pool.join()
    seconds = time.perf_counter() - t0
    errors = np.asarray(totals.pop("com_error_mm"), dtype=np.float64)
    start = totals.pop("start_s")
    report = dict(totals, frames=todo, seconds=seconds, fps=todo / max(seconds, 1e-9),
                  start_s=max(start) if start else None,
                  com_error_mm_median=float(np.median(errors)) if errors.size else None,
                  com_error_mm_p90=float(np.percentile(errors, 90)) if errors.size else None)
    return report


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of one shard (and ``meta`` as a dict)."""
    with np.load(path) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def contact_sheet(shard: dict[str, np.ndarray], count: int = 24, columns: int = 8, scale: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 BGR grid of crops with their joints (white) and the camera name."""
    import cv2

    from models.joints import CONNECTIONS

    tiles = []
    names = shard["meta"].get("cameras", [])
    for i in range(min(count, len(shard["patch"]))):
        patch = shard["patch"][i].astype(np.float32)
        gray = (255 * (1.0 - (patch + 1.0) / 2.0)).astype(np.uint8)
        tile = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)
        tile[patch >= 1.0] = 0
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        uv1 = np.concatenate((shard["joints_uvd"][i][:, :2], np.ones((21, 1), np.float32)), 1)
        uv = (shard["crop_from_image"][i] @ uv1.T).T[:, :2] * scale + (scale - 1) / 2.0
        for a, b in CONNECTIONS:
            cv2.line(tile, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), (255, 255, 255), 1,
                     cv2.LINE_AA)
        view = "ego" if int(shard["view"][i]) == 1 else "3rd"
        cam = names[int(shard["camera"][i])] if names else str(int(shard["camera"][i]))
        cv2.putText(tile, f"{cam.split('_')[0]} {view}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r:r + columns], 1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, 0)


def _colour(depth_mm: np.ndarray, near: float, far: float) -> np.ndarray:
    import cv2

    scaled = np.clip((depth_mm - near) / max(far - near, 1.0), 0.0, 1.0)
    img = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)
    img[depth_mm <= 0] = 0
    return img


def _tile(img: np.ndarray, height: int, label: str) -> np.ndarray:
    import cv2

    out = cv2.resize(img, (int(round(img.shape[1] * height / img.shape[0])), height), interpolation=cv2.INTER_NEAREST)
    cv2.putText(out, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _patch_image(patch: np.ndarray, scale: int = 2) -> np.ndarray:
    import cv2

    p = patch.astype(np.float32)
    img = cv2.applyColorMap((255 * (1.0 - (p + 1.0) / 2.0)).astype(np.uint8), cv2.COLORMAP_TURBO)
    img[p >= 1.0] = 0
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def compare_picture(real_dir: Path, seed: int = 0, height: int = 240) -> np.ndarray:
    """Synthetic full frames and crops (several cameras, both views) above real SR305 ones.

    Rows: synthetic frames with their joints; their crops; real frames; their crops (the
    real crops come from the same hand finder and crop). BGR uint8.
    """
    import cv2

    from calib import get_preset
    from models.crop import crop_depth
    from models.handfind import find_hand

    renderer = Renderer(SynthConfig(chunk=6, hands_per_draw=6, full_frames=True, seed=seed))
    frames, crops = [], []
    rng = np.random.default_rng(seed)
    views_seen: dict[int, int] = {0: 0, 1: 0}
    while len(frames) < 6:
        arrays, _ = renderer.render_chunk(rng, "val")
        if not arrays:
            continue
        names = [c for c, _ in renderer.cfg.cameras]
        for i in range(len(arrays["patch"])):
            view = int(arrays["view"][i])
            if views_seen[view] >= 3 or len(frames) >= 6:
                continue
            views_seen[view] += 1
            w, h = (int(x) for x in arrays["intrinsics"][i][4:6])
            depth, uvd = arrays["frame"][i][:h, :w], arrays["joints_uvd"][i]
            img = _colour(depth, uvd[:, 2].min() - 50.0, uvd[:, 2].max() + 500.0)
            for u, v, _ in uvd:
                cv2.circle(img, (int(round(u)), int(round(v))), 2, (255, 255, 255), -1)
            label = f"synthetic {names[int(arrays['camera'][i])]} {'head-mounted' if view else 'third-person'}"
            frames.append(_tile(img, height, label))
            crops.append(_patch_image(arrays["patch"][i]))
            break
    intr = get_preset("sr305_640x480").intrinsics
    real, real_crops = [], []
    for path in sorted(real_dir.glob("*/*.png"))[::3][:6]:
        depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) * intr.depth_scale * 1000.0
        det = find_hand(depth, intr)
        img = _colour(depth, 350.0, 1400.0)
        if det is not None:
            u, v, _ = det.com_uvd
            cv2.drawMarker(img, (int(round(u)), int(round(v))), (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
            real_crops.append(_patch_image(crop_depth(depth, intr, det.com_mm).patch))
        real.append(_tile(img, height, f"real SR305 {path.parent.name[-6:]}/{path.name}"))
    rows = [np.concatenate(frames, 1), np.concatenate(crops, 1), np.concatenate(real, 1), np.concatenate(real_crops, 1)]
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows], 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.synth", description="Synthetic labelled depth data.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write shards of a split (resumes: existing shards are kept)")
    gen.add_argument("--out", type=Path, default=Path("data/synth"))
    gen.add_argument("--split", choices=SPLITS, default="train")
    gen.add_argument("--frames", type=int, required=True)
    gen.add_argument("--shard-size", type=int, default=SynthConfig.frames_per_shard)
    gen.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--vertices", action="store_true", help="also store the mesh vertices (7 KB a frame)")
    gen.add_argument("--full-frames", action="store_true",
                     help="also store each whole frame, ray-cast at the camera's resolution (evaluation through "
                          "the app's pipeline, models.evaluate; ~1 MB a frame)")
    bench = sub.add_parser("bench", help="frames per second, end to end to disk (median of --runs runs)")
    bench.add_argument("--frames", type=int, default=30000,
                       help="frames per run (default 30000: start-up is then ~3 %% of a run, as in a real job)")
    bench.add_argument("--runs", type=int, default=3)
    bench.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    sheet = sub.add_parser("sheet", help="contact sheet of a shard's crops with their joints")
    sheet.add_argument("shard", type=Path)
    sheet.add_argument("--out", type=Path, default=Path("runs/synth_sheet.png"))
    sheet.add_argument("--count", type=int, default=32)
    compare = sub.add_parser("compare", help="picture: synthetic frames and crops above real SR305 ones")
    compare.add_argument("--real", type=Path, default=Path("tests/data/sr305"))
    compare.add_argument("--out", type=Path, default=Path("docs/synth_vs_real.png"))
    compare.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "compare":
        import cv2

        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), compare_picture(args.real, args.seed))
        print(f"wrote {args.out}")
    elif args.command == "generate":
        cfg = SynthConfig(frames_per_shard=args.shard_size, seed=args.seed, store_vertices=args.vertices,
                          full_frames=args.full_frames, max_rays_per_crop_px=1e9 if args.full_frames else 1.0)
        report = generate(args.out, args.split, args.frames, cfg, args.workers)
        print(json.dumps(report))
    elif args.command == "bench":
        import shutil
        import statistics
        import tempfile

        rates = []
        for run in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="synth_bench_"))
            try:
                cfg = SynthConfig(frames_per_shard=max(args.frames // (2 * args.workers), 1), seed=1000 + run)
                report = generate(tmp, "train", args.frames, cfg, args.workers)
                size = sum(p.stat().st_size for p in tmp.rglob("*.npz"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rates.append(report["fps"])
            start = report["start_s"] or 0.0
            print(f"run {run + 1}: {report['frames']} frames in {report['seconds']:.1f} s = {report['fps']:.1f} fps "
                  f"({size / max(report['frames'], 1) / 1024:.1f} KiB/frame on disk; workers started in {start:.1f} s, "
                  f"{report['frames'] / max(report['seconds'] - start, 1e-9):.1f} fps after that; dropped: "
                  f"{report['no_hand']} no hand, {report['wrong_object']} wrong object of {report['rendered']})")
        print(f"median {statistics.median(rates):.1f} labelled frames/s over {args.runs} runs, "
              f"{args.workers} workers, {os.cpu_count()} cores")
    else:
        import cv2

        img = contact_sheet(load_shard(args.shard), args.count)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), img)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
