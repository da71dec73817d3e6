"""The README's comparison table from the shipped weights: ``python scripts/compare_table.py``.

For every ``models/weights/compare/*.pt`` (the methods trained at one budget; or the files given): the test-split numbers of its card
(``python -m models.ship`` measured them with ``models.evaluate`` on the same split), its
parameter count, and its CPU latency: the static batch-1 ONNX engine (``export``), ONNX Runtime
CPU provider, 2 threads, median of 300 runs after 30 warm-up runs. Prints a Markdown table.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from export.model_export import export_engine, load_for_export  # noqa: E402
from export.runtime import Engine  # noqa: E402
from models.nets import count_parameters  # noqa: E402

ORDER = ("deephps", "deepmodel", "deepmodel_nolimit", "direct_params", "direct_joints", "sdnet", "hand3d",
         "hand3d_refine", "dense")
WHAT = {
    "deephps": "DeepHPS: θ, α, β → hand layer (joints + mesh)",
    "deepmodel": "DeepModel: θ → FK, template bones, limit loss",
    "deepmodel_nolimit": "DeepModel without the limit loss",
    "direct_params": "direct parameters (loss on θ, α, β)",
    "direct_joints": "direct joints (SDNet's baseline, SD weight 0)",
    "sdnet": "SDNet: direct joints + skeleton difference (weight 1)",
    "hand3d": "Hand3D: TSDF 32³ → 3D CNN",
    "hand3d_refine": "Hand3D with the TSDF refinement FCN",
    "dense": "dense: per-cell votes (A2J-style), trained from scratch",
}


def latency_ms(engine_path: Path, runs: int = 300) -> float:
    engine = Engine(engine_path, provider="cpu", threads=2, log=lambda *_: None)
    x = np.ones((1, 1, engine.metadata.input_size, engine.metadata.input_size), np.float32)
    for _ in range(30):
        engine.run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        engine.run(x)
        times.append(1e3 * (time.perf_counter() - t))
    return float(np.median(times))


def row(path: Path, tmp: Path) -> str:
    card = torch.load(path, map_location="cpu", weights_only=True)["card"]
    net, info = load_for_export(path)
    onnx = export_engine(net, tmp / f"{path.stem}.onnx", info)
    t = card.get("test", {})
    s = t.get("success", {})
    vert = f"{t['vertices_mm']:.1f}" if "vertices_mm" in t else "-"
    tr = card["training"]
    return (f"| `{path.stem}` | {WHAT.get(path.stem, card['method'])} | **{t['mean_mm']:.1f}** | {t['median_mm']:.1f} | "
            f"{vert} | {100 * s.get('20', float('nan')):.0f} % | {100 * s.get('40', float('nan')):.0f} % | "
            f"{100 * t.get('invalid_pose', float('nan')):.1f} % | {latency_ms(onnx):.2f} | "
            f"{count_parameters(net) / 1e6:.2f} M | {tr['steps']} x {tr['batch']} |")


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted((ROOT / "models" / "weights" / "compare").glob("*.pt"),
                                              key=lambda p: ORDER.index(p.stem) if p.stem in ORDER else 99)
    print("| weights | method | joints mean mm | median mm | vertices mm | frames < 20 mm | < 40 mm | "
          "invalid poses | CPU ms | parameters | steps x batch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:
            print(row(p, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
