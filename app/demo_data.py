"""The shipped recordings: a moving hand rendered by us, and a real SR305 clip.

    python -m app.demo_data [--out app/assets/demo.db3] [--frames 150] [--camera d435_848x480 --size 424x240]
    python -m app.demo_data --png DIR            # the same demo frames as a labelled PNG folder
    python -m app.demo_data --sr305 ../shared/data/realsense_sr305 [--out app/assets/sr305.db3]

A right hand (an adult, 185 mm long) moves in front of the camera along a smooth path 380-520 mm
away, turns, and goes through a sequence of named poses (``models/poses.py``: relaxed, point,
fist, pinch, spread, victory...), at 30 FPS. The scene (body, arm, wall, table: ``models.scene``)
and the sensor model (noise, edge dropout, holes: ``models.sensor``) are those of the training
data, seeded once, so the recording is reproducible byte for byte.

The demo is a RealSense recording (``.db3``, written through ``calib.write_depth_recording``:
rs.software_device + rs.recorder; librealsense compresses the depth, 3.6 MB for 150 frames)
with its labels beside it, ``demo.labels.jsonl``: one object per frame with source_id (the
recording's frame number), timestamp_ms, joints_xyz_mm (21 x 3, camera frame, canonical order)
and theta, alpha, beta (the hand layer's input). ``--png DIR`` writes the same frames as a PNG
folder (the ``sources`` PNG-folder format: frame_00000.png..., intrinsics.json, labels.jsonl).

The SR305 clip: the 19 real frames of ``../shared/data/realsense_sr305`` (MIT licence, copied
beside the clip as ``sr305.LICENSE``), both sequences one after the other in name order,
640 x 480, depth_scale 0.000125 m, at 10 FPS, without labels.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_RECORDING = ASSETS / "demo.db3"
SR305_RECORDING = ASSETS / "sr305.db3"
FPS = 30
KEEP_KINDS = ("body", "upper_arm", "table")
KEY_POSES = ("relaxed", "point", "fist", "pinch", "spread", "victory", "relaxed", "point", "rest")


def _smooth(s: float) -> float:
    return s * s * (3.0 - 2.0 * s)


def demo_thetas(frames: int) -> np.ndarray:
    """(frames, 26) θ of the demo motion (pure): key poses blended with smoothstep, the wrist
    on a Lissajous path, the palm turning slowly around the camera axis and towards the side."""
    from models.poses import NAMED_POSES_DEG
    from models.skeleton import ARTICULATION, THETA_DIM

    keys = np.radians(np.array([NAMED_POSES_DEG[k] for k in KEY_POSES]))
    out = np.zeros((frames, THETA_DIM))
    for i in range(frames):
        s = i / max(frames - 1, 1) * (len(keys) - 1)
        k = min(int(s), len(keys) - 2)
        w = _smooth(s - k)
        out[i, ARTICULATION] = (1 - w) * keys[k] + w * keys[k + 1]
        t = i / FPS
        # Palm towards the camera (a half turn about x), rolled about the camera axis and
        # tilted sideways a little.
        roll = 0.5 * math.sin(2 * math.pi * t / 6.0)
        tilt = 0.35 * math.sin(2 * math.pi * t / 4.5)
        from scipy.spatial.transform import Rotation

        r = Rotation.from_rotvec([0.0, 0.0, roll]) * Rotation.from_rotvec([0.0, tilt, 0.0]) \
            * Rotation.from_rotvec([math.pi, 0.0, 0.0])
        out[i, 0:3] = r.as_rotvec()
        out[i, 3:6] = (60.0 * math.sin(2 * math.pi * t / 5.0), 70.0 + 30.0 * math.sin(2 * math.pi * t / 3.7),
                       450.0 + 70.0 * math.sin(2 * math.pi * t / 7.0))
    return out


def render_demo(frames: int, camera: str, size: tuple[int, int] | None = None,
                seed: int = 7) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Render the demo: (raw uint16 depth frames, joints (frames, 21, 3) mm, extra labels)."""
    import torch

    from calib import get_preset
    from models.hand_layer import HandLayer
    from models.render import raycast
    from models.scene import build_scene
    from models.sensor import apply_sensor, sample_sensor

    intr = get_preset(camera).intrinsics
    if size is not None:
        intr = intr.scaled(*size)  # a lower-resolution mode of the same camera (same field of view)
    layer = HandLayer().eval()
    faces = layer.faces.numpy().astype(np.int32)
    theta = demo_thetas(frames)
    alpha = np.ones((frames, 6))
    beta = np.zeros((frames, 7))
    with torch.inference_mode():
        out = layer(*(torch.as_tensor(x, dtype=torch.float32) for x in (theta, alpha, beta)))
    verts, joints = out.vertices.numpy(), out.joints.numpy().astype(np.float64)
    sensor = sample_sensor(np.random.default_rng(seed), camera)
    raw = []
    for i in range(frames):
        scene = build_scene(np.random.default_rng(seed), verts[i], joints[i], intr, "third_person")
        # The person (body, upper arm) and a table; no wall: a room deeper than the sensor's
        # range, which keeps the PNGs small (a noisy wall doubles their size).
        keep = [m for m, k in zip(scene.meshes, scene.kinds) if k in KEEP_KINDS]
        hit = raycast([(verts[i], faces)] + [(m.vertices, m.faces) for m in keep], intr)
        depth = apply_sensor(hit.depth, intr, sensor, np.random.default_rng([seed, i]), normals=hit.normals)
        units = np.round(depth / (intr.depth_scale * 1000.0))
        raw.append(np.clip(units, 0, 65535).astype(np.uint16))
    return raw, joints, {"theta": theta, "alpha": alpha, "beta": beta, "intrinsics": intr}


def write_folder(out: Path, raw: list[np.ndarray], joints: np.ndarray, extra: dict) -> None:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    intr = extra["intrinsics"]
    info = {"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy, "width": intr.width, "height": intr.height,
            "depth_scale": intr.depth_scale, "distortion": intr.distortion, "coeffs": list(intr.coeffs),
            "name": intr.name, "fps": FPS}
    (out / "intrinsics.json").write_text(json.dumps(info, indent=1) + "\n")
    with (out / "labels.jsonl").open("w") as f:
        for i, frame in enumerate(raw):
            name = f"frame_{i:05d}.png"
            if not cv2.imwrite(str(out / name), frame, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
                raise OSError(f"could not write {out / name}")
            f.write(json.dumps({
                "frame": i, "source_id": name, "timestamp_ms": round(i * 1000.0 / FPS, 3), "hand_found": True,
                "joints_xyz_mm": np.round(joints[i], 3).tolist(),
                "theta": np.round(extra["theta"][i], 6).tolist(), "alpha": extra["alpha"][i].tolist(),
                "beta": extra["beta"][i].tolist(),
            }) + "\n")


def labels_path(recording: Path) -> Path:
    """demo.db3 -> demo.labels.jsonl."""
    return recording.with_name(recording.stem + ".labels.jsonl")


def write_db3(out: Path, raw: list[np.ndarray], joints: np.ndarray, extra: dict) -> Path:
    """The frames as a .db3 recording and the labels beside it (source_id = frame number)."""
    from calib import write_depth_recording

    stamps = [i * 1000.0 / FPS for i in range(len(raw))]
    write_depth_recording(out, raw, extra["intrinsics"], fps=FPS, timestamps_ms=stamps, overwrite=True, pace=False)
    with labels_path(out).open("w") as f:
        for i in range(len(raw)):
            f.write(json.dumps({
                "frame": i, "source_id": str(i), "timestamp_ms": round(stamps[i], 3), "hand_found": True,
                "joints_xyz_mm": np.round(joints[i], 3).tolist(),
                "theta": np.round(extra["theta"][i], 6).tolist(), "alpha": extra["alpha"][i].tolist(),
                "beta": extra["beta"][i].tolist(),
            }) + "\n")
    return out


SR305_INTRINSICS = dict(fx=476.007, fy=476.007, cx=313.683, cy=242.755, width=640, height=480,
                        depth_scale=0.000125)   # ../shared/data/README.md
SR305_FPS = 10


def sr305_clip(src: Path, out: Path) -> Path:
    """The real SR305 frames (PNG, raw units of 0.125 mm) as a .db3 clip, with the licence."""
    import shutil

    import cv2

    from calib import Intrinsics, write_depth_recording

    pngs = sorted(src.glob("*/*.png"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else p.stem))
    if not pngs:
        raise FileNotFoundError(f"no PNG frames under {src}/*/")
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs]
    intr = Intrinsics(**SR305_INTRINSICS, name="Intel RealSense SR305 (shared/data/realsense_sr305)")
    stamps = [i * 1000.0 / SR305_FPS for i in range(len(frames))]
    write_depth_recording(out, frames, intr, fps=SR305_FPS, timestamps_ms=stamps, overwrite=True, pace=False)
    shutil.copyfile(src / "LICENSE", out.with_name(out.stem + ".LICENSE"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.demo_data", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="the .db3 to write (default app/assets/demo.db3 "
                    "or app/assets/sr305.db3)")
    ap.add_argument("--png", type=Path, default=None, help="write the demo as a labelled PNG folder instead")
    ap.add_argument("--sr305", type=Path, default=None, help="make the SR305 clip from this folder")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--camera", default="d435_848x480", help="camera preset (python -m calib list)")
    ap.add_argument("--size", default="424x240", help="WxH: the preset scaled to this mode")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    if a.sr305 is not None:
        out = sr305_clip(a.sr305, a.out or SR305_RECORDING)
        print(f"{out}: {out.stat().st_size / 1e6:.2f} MB")
        return 0
    size = tuple(int(x) for x in a.size.lower().split("x"))
    raw, joints, extra = render_demo(a.frames, a.camera, size, a.seed)
    if a.png is not None:
        write_folder(a.png, raw, joints, extra)
        out = a.png
        size = sum(p.stat().st_size for p in a.png.iterdir())
    else:
        out = write_db3(a.out or DEMO_RECORDING, raw, joints, extra)
        size = out.stat().st_size + labels_path(out).stat().st_size
    print(f"{out}: {len(raw)} frames {extra['intrinsics'].width}x{extra['intrinsics'].height}, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
