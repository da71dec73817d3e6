"""The default model on real sensors, as a picture: ``python -m app.real_pictures``.

    python -m app.real_pictures [--model models/weights/deephps.onnx] [--out docs/real_frames.png]
                                [--nyu ../shared/data/nyu_sample] [--fit]

Runs the app's pipeline (``models.estimator``: find the hand, crop, network, with ``--fit`` the
model fit; no temporal refinement, every frame on its own) on the real RealSense SR305 clip
that ships with the app (19 frames, MIT) and, when the folder is given and present, on NYU
test frame 1 with its labels (academic use only: read from ../shared, never copied into the
project). Each tile is
the region around the hand with the predicted skeleton (finger colours as in the viewer) and,
for NYU, the 14 labelled points in white. The mean error on NYU frame 1 is printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from app.__main__ import SR305_SOURCE


def tile(depth_mm: np.ndarray, intr, est, label_uv: np.ndarray | None, title: str, size: int = 240) -> np.ndarray:
    """(size, size, 3) RGB: the square of the frame around the hand, depth colourised, skeleton drawn."""
    import cv2

    from app.viewer import ViewState, depth_panel

    state = ViewState(depth_mm=depth_mm.astype(np.float32), intrinsics=intr,
                      joints_mm=None if est.joints_mm is None else est.joints_mm.astype(np.float64),
                      com_mm=None if est.com_mm is None else est.com_mm.astype(np.float64))
    scale = 2
    panel = depth_panel(state, (intr.width * scale, intr.height * scale))
    if label_uv is not None:
        for u, v in label_uv:
            cv2.circle(panel, (int(round((u + 0.5) * scale - 0.5)), int(round((v + 0.5) * scale - 0.5))), 4,
                       (255, 255, 255), 1, cv2.LINE_AA)
    if est.com_mm is not None:
        from calib import project

        cu, cv_ = (project(est.com_mm[None], intr)[0, :2] + 0.5) * scale - 0.5
    else:
        cu, cv_ = panel.shape[1] / 2, panel.shape[0] / 2
    half = int(0.28 * min(panel.shape[:2]))
    pad = np.pad(panel, ((half, half), (half, half), (0, 0)))
    u0, v0 = int(cu), int(cv_)
    crop = pad[v0:v0 + 2 * half, u0:u0 + 2 * half]
    out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    cv2.putText(out, title, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    import cv2

    from calib import project
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from models.joints import get_layout
    from sources import open_source

    ap = argparse.ArgumentParser(prog="python -m app.real_pictures", description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/weights/deephps.onnx"))
    ap.add_argument("--out", type=Path, default=Path("docs/real_frames.png"))
    ap.add_argument("--nyu", type=Path, default=Path("../shared/data/nyu_sample"))
    ap.add_argument("--columns", type=int, default=5)
    ap.add_argument("--fit", action="store_true", help="the app's --fit: the hand model fitted to the depth")
    a = ap.parse_args(argv)
    cfg = EstimatorConfig(track=False, fit=a.fit)
    predictor = load_predictor(a.model, "cpu")
    tiles = []
    if a.nyu.is_dir():
        with open_source(f"nyu:{a.nyu}") as src:
            for f in src:
                est = Estimator(predictor, cfg)(f.depth_mm, f.intrinsics)
                uv = project(f.labels.xyz_mm, f.intrinsics)[:, :2] if f.labels is not None else None
                err = ""
                if f.labels is not None and est.hand_found:
                    mapped = get_layout(f.labels.layout).matrix @ est.joints_mm
                    e = np.linalg.norm(mapped - f.labels.xyz_mm, axis=-1).mean()
                    print(f"NYU {f.source_id}: mean error {e:.1f} mm over the 14 NYU points")
                    err = f"  {e:.0f} mm"
                tiles.append(tile(f.depth_mm, f.intrinsics, est, uv, f"NYU frame 1{err}"))
    with open_source(str(SR305_SOURCE)) as src:
        for k, f in enumerate(src):
            est = Estimator(predictor, cfg)(f.depth_mm, f.intrinsics)
            tiles.append(tile(f.depth_mm, f.intrinsics, est, None, f"SR305 #{k}" + ("" if est.hand_found else " no hand")))
    cols = a.columns
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    sheet = np.concatenate(rows, 0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), sheet[..., ::-1])
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
