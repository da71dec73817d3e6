"""Pictures of the hand model for the README: ``python -m models.pictures [--out docs/hand_model.png]``.

Renders the rest pose and three other poses from the front (palm) and a three-quarter
back view, with the skeleton drawn over the mesh.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from calib import Intrinsics, project
from models.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from models.hand_layer import HandLayer
from models.joints import CONNECTIONS, JOINT_FINGER
from models.poses import named_theta
from models.render import raycast, shade

FINGER_BGR = [(60, 60, 220), (60, 170, 60), (200, 120, 40), (170, 60, 170), (40, 160, 200)]


def _camera(size: int) -> Intrinsics:
    """A square pinhole camera with a 35° field of view."""
    return Intrinsics(fx=1.6 * size, fy=1.6 * size, cx=(size - 1) / 2.0, cy=(size - 1) / 2.0,
                      width=size, height=size, depth_scale=0.001, name="pictures")


def render_pose(layer: HandLayer, theta: np.ndarray, size: int = 360, skeleton: bool = True) -> np.ndarray:
    """(size, size, 3) uint8 RGB picture of the hand posed by ``theta`` (26,), camera at origin."""
    out = layer(torch.as_tensor(theta[None], dtype=torch.float32))
    verts = out.vertices[0].numpy()
    joints = out.joints[0].numpy()
    cam = _camera(size)
    img = shade(raycast([(verts, layer.faces.numpy())], cam))
    if skeleton:
        uv = project(joints.astype(np.float64), cam)[:, :2]
        bgr = np.ascontiguousarray(img[..., ::-1])
        for a, b in CONNECTIONS:
            color = FINGER_BGR[JOINT_FINGER[b]]
            cv2.line(bgr, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), color, 2, cv2.LINE_AA)
        for p in uv:
            cv2.circle(bgr, tuple(np.round(p).astype(int)), 3, (30, 30, 30), -1, cv2.LINE_AA)
        img = np.ascontiguousarray(bgr[..., ::-1])
    return img


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/hand_model.png"))
    parser.add_argument("--size", type=int, default=300)
    args = parser.parse_args(argv)
    layer = HandLayer()
    rows = []
    # Back view, three-quarter: hand z (palmar) away from the camera, turned and tilted.
    back = (axis_angle_to_matrix(torch.tensor([0.0, 0.0, np.pi], dtype=torch.float64))
            @ axis_angle_to_matrix(torch.tensor([0.0, -0.6, 0.0], dtype=torch.float64))
            @ axis_angle_to_matrix(torch.tensor([0.35, 0.0, 0.0], dtype=torch.float64)))
    views = {"palm": np.array([np.pi, 0.0, 0.0]), "back, 3/4": matrix_to_axis_angle(back).numpy()}
    for view, rot in views.items():
        row = []
        for name in ("rest", "fist", "point", "pinch"):
            theta = named_theta(name, rotation=tuple(rot), translation=(0.0, 80.0, 400.0))
            img = render_pose(layer, theta, args.size)
            cv2.putText(img, f"{name} ({view})", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (40, 40, 40), 1, cv2.LINE_AA)
            row.append(img)
        rows.append(np.concatenate(row, 1))
    sheet = np.concatenate(rows, 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), sheet[..., ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
