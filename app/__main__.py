"""``python -m app``: the hand tracker's entry point.

The live pipeline (capture, hand finding, networks, viewer) arrives with its issue; until
then this runs what exists: the hand model animated through named poses in front of a
RealSense D435 (nominal intrinsics), ray-cast to depth frames as a camera would see them.
It prints the frame rate of model + rendering and writes a picture of the frames. With a
display and without ``--headless`` it also shows the skinned mesh in an Open3D window.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def _depth_picture(depth: np.ndarray, uv: np.ndarray) -> np.ndarray:
    import cv2

    valid = depth > 0
    img = np.zeros(depth.shape + (3,), np.uint8)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [1, 99])
        scaled = np.clip((depth - lo) / max(hi - lo, 1.0), 0, 1)
        img = cv2.applyColorMap((255 * (1 - scaled)).astype(np.uint8), cv2.COLORMAP_TURBO)
        img[~valid] = 0
    for p in uv:
        cv2.circle(img, (int(round(p[0])), int(round(p[1]))), 3, (255, 255, 255), -1, cv2.LINE_AA)
    # A 300 x 300 window around the joints.
    cu, cv_ = np.clip(np.round(uv.mean(0)).astype(int), 150, [depth.shape[1] - 150, depth.shape[0] - 150])
    return img[cv_ - 150:cv_ + 150, cu - 150:cu + 150]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--headless", action="store_true", help="no window, even with a display")
    parser.add_argument("--frames", type=int, default=60, help="frames to animate (default 60)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo.png"), help="picture of six frames")
    args = parser.parse_args(argv)
    if args.frames < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2

    import cv2
    import torch

    from calib import get_preset, project
    from models.hand_layer import HandLayer
    from models.poses import named_theta
    from models.render import raycast

    intr = get_preset("d435_848x480").intrinsics
    layer = HandLayer().eval()
    faces = layer.faces.numpy()
    keys = [named_theta(n, translation=(0.0, 60.0, 420.0)) for n in ("rest", "fist", "point", "pinch", "spread", "rest")]
    show = not args.headless and bool(os.environ.get("DISPLAY"))
    vis = mesh = None
    if show:
        import open3d as o3d

        vis = o3d.visualization.Visualizer()
        show = vis.create_window("hand model", 848, 480)
        if show:
            mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.zeros((layer.num_vertices, 3))),
                                             o3d.utility.Vector3iVector(faces))
            mesh.paint_uniform_color((0.87, 0.7, 0.59))
            vis.add_geometry(mesh)
    pictures, times = [], []
    for i in range(args.frames):
        s = i / max(args.frames - 1, 1) * (len(keys) - 1)
        k = min(int(s), len(keys) - 2)
        theta = (1 - (s - k)) * keys[k] + (s - k) * keys[k + 1]
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = layer(torch.as_tensor(theta[None], dtype=torch.float32))
        verts, joints = out.vertices[0].numpy(), out.joints[0].numpy()
        depth = raycast([(verts, faces)], intr).depth
        times.append(time.perf_counter() - t0)
        if i % max(args.frames // 6, 1) == 0 and len(pictures) < 6:
            pictures.append(_depth_picture(depth, project(joints.astype(np.float64), intr)[:, :2]))
        if show and vis is not None and mesh is not None:
            mesh.vertices = o3d.utility.Vector3dVector(verts.astype(np.float64))
            mesh.compute_vertex_normals()
            vis.update_geometry(mesh)
            if i == 0:
                vis.reset_view_point(True)
            if not vis.poll_events():
                break
            vis.update_renderer()
    if vis is not None:
        vis.destroy_window()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(pictures, 1))
    ms = 1e3 * np.median(times)
    print(f"hand model demo: {len(times)} frames, {layer.num_vertices} vertices, {intr.width}x{intr.height} depth; "
          f"model + ray-cast median {ms:.1f} ms/frame ({1e3 / ms:.0f} FPS); picture: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
