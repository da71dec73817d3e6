"""Ray-cast depth rendering of triangle meshes with Open3D, and shaded pictures.

Camera frame: x right, y down, z forward; millimetres. Pixel (u, v) is the centre of
column u, row v. Depth is z (not the ray length), 0 where no surface is hit.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from calib import Intrinsics, backproject


class RaycastResult(NamedTuple):
    depth: np.ndarray        # (H, W) float32 mm, 0 = no hit
    normals: np.ndarray      # (H, W, 3) float32 unit normals, camera frame (0 = no hit)
    geometry_id: np.ndarray  # (H, W) int32 index into the mesh list, -1 = no hit
    triangle_id: np.ndarray  # (H, W) int32, -1 = no hit


def pixel_rays(intr: Intrinsics) -> np.ndarray:
    """(H, W, 6) float32 rays from the camera centre through each pixel centre; direction z = 1.

    With a lens model the directions are the back-projections of the pixel centres (the
    inverse of ``calib.project``), so what is rendered is what ``project`` predicts.
    """
    rays = np.zeros((intr.height, intr.width, 6), dtype=np.float32)
    if intr.has_distortion:
        u, v = np.meshgrid(np.arange(intr.width, dtype=np.float64), np.arange(intr.height, dtype=np.float64))
        rays[..., 3:] = backproject(np.stack((u, v, np.ones_like(u)), -1), intr)
        return rays
    rays[..., 3] = ((np.arange(intr.width, dtype=np.float32) - np.float32(intr.cx)) / np.float32(intr.fx))[None, :]
    rays[..., 4] = ((np.arange(intr.height, dtype=np.float32) - np.float32(intr.cy)) / np.float32(intr.fy))[:, None]
    rays[..., 5] = 1.0
    return rays


def raycast(meshes: Sequence[tuple[np.ndarray, np.ndarray]], intr: Intrinsics, threads: int = 0) -> RaycastResult:
    """Render (vertices (V, 3) mm camera frame, faces (F, 3)) meshes seen by ``intr``.

    Rays follow ``intr``'s lens model (:func:`pixel_rays`). ``threads``: 0 lets
    Open3D use every core; worker processes that already run one per core pass 1.
    """
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=threads)
    for verts, faces in meshes:
        verts = np.ascontiguousarray(verts, dtype=np.float32)
        faces = np.ascontiguousarray(faces, dtype=np.uint32)
        if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"expected vertices (V, 3) and faces (F, 3), got {verts.shape} and {faces.shape}")
        scene.add_triangles(o3d.core.Tensor(verts), o3d.core.Tensor(faces))
    hit = scene.cast_rays(o3d.core.Tensor(pixel_rays(intr)), nthreads=threads)
    # Misses: t_hit is inf, normals are 0 and the ids are 0xFFFFFFFF (-1 as int32).
    t = hit["t_hit"].numpy()
    depth = np.where(np.isfinite(t), t, np.float32(0.0))  # ray direction has z = 1: t is depth
    normals = hit["primitive_normals"].numpy()
    gid = hit["geometry_ids"].numpy().view(np.int32)
    tid = hit["primitive_ids"].numpy().view(np.int32)
    return RaycastResult(depth, normals, gid, tid)


def shade(result: RaycastResult, colors: Sequence[tuple[int, int, int]] | None = None,
          background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """(H, W, 3) uint8 RGB picture: Lambert shading with a head light, one colour per mesh."""
    colors = colors or [(222, 178, 150)]
    palette = np.asarray(colors, dtype=np.float32)
    hit = result.geometry_id >= 0
    base = palette[np.clip(result.geometry_id, 0, len(palette) - 1) % len(palette)]
    light = np.array([-0.3, -0.4, -1.0], dtype=np.float32)
    light /= np.linalg.norm(light)
    lambert = np.abs(result.normals @ light)  # faces may point either way in a union of parts
    img = base * (0.25 + 0.75 * lambert[..., None])
    img[~hit] = background
    return np.clip(img, 0, 255).astype(np.uint8)
