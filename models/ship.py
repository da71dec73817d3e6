"""Turn a training run into shipped weights with a model card: ``python -m models.ship``.

    python -m models.ship --run runs/deephps [--name deephps] [--engine]   # the default model (+ its ONNX engine)
    python -m models.ship --run runs/compare/sdnet --out-dir models/weights/compare   # a compared method
    python -m models.ship --subset                                          # (re)make the fixed test subset

Writes ``models/weights/<name>.pt``: {"net": NetConfig, "model": state dict in float16 (half the
size; the network runs in float32, the rounding moves joints by ~0.01 mm), "card": {...}}, with
the batch-norm statistics recomputed over 6400 augmented training crops
(``models.train.recompute_batchnorm``: the running averages of training are not good enough), and
refreshes ``models/weights/README.md`` (every card as a table). ``--engine`` also writes the
static batch-1 ONNX engine ``models/weights/<name>.onnx`` (``export``), the one the app loads.

The card: name, method, version (training step and date), what it learnt from (split, frames,
generator commit, augmentation), how (steps, batch, samples, optimiser, time, machine; for a run started
from other weights, ``models.train --init``, what they were under ``training.before``, and the
version counts both runs' steps), and its
numbers on the synthetic test split (``models.evaluate``: all 10,000 frames) and on the fixed
subset ``tests/data/synth_test_subset.npz`` (256 test frames shipped with the tests, so a clone
without data/ can check that the shipped weights reproduce them).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SUBSET_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "synth_test_subset.npz"
SUBSET_KEYS = ("patch", "joints_mm", "com_mm", "theta", "alpha", "beta", "wrist", "view", "camera", "intrinsics",
               "distortion", "coeffs")
SUBSET_SIZE = 256
BN_BATCHES = 100   # batch-norm statistics recomputed over 100 x 64 augmented training crops


def make_subset(split: str | Path = "data/synth/test", out: Path = SUBSET_PATH, n: int = SUBSET_SIZE,
                seed: int = 0) -> Path:
    """``n`` frames drawn (seeded) from the test split's shards, in one compressed npz."""
    from models.data import shard_paths
    from models.synth import load_shard

    paths = shard_paths(split)
    rng = np.random.default_rng(seed)
    shards = [load_shard(p) for p in paths]
    sizes = [len(s["patch"]) for s in shards]
    pick = np.sort(rng.choice(sum(sizes), n, replace=False))
    starts = np.cumsum([0] + sizes)
    parts: dict[str, list] = {k: [] for k in SUBSET_KEYS}
    for i in pick:
        k = int(np.searchsorted(starts, i, side="right") - 1)
        for key in SUBSET_KEYS:
            parts[key].append(shards[k][key][i - starts[k]])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **{k: np.stack(v) for k, v in parts.items()},
                        source=np.array(json.dumps({"split": str(split), "seed": seed, "indices": pick.tolist()})))
    return out


def subset_metrics(predictor: Any, path: Path = SUBSET_PATH) -> dict[str, float]:
    """Mean joint and hand-vertex error (mm) of ``predictor`` on the fixed subset."""
    from models.evaluate import predict_shards, summary_record
    from models.train import hand_vertex_mask

    pred = predict_shards(predictor, path)
    r = summary_record(pred, hand_vertex_mask().numpy())
    out = {"frames": r["frames"], "mean_mm": round(r["mean_mm"], 3)}
    if "vertices_mm" in r:
        out["vertices_mm"] = round(r["vertices_mm"], 3)
    return out


def _commit(path: str) -> str:
    f = Path(path).parent / "GENERATOR_COMMIT"
    if f.is_file():
        return f.read_text().strip()
    g = Path("data/GENERATOR_COMMIT")
    return g.read_text().strip() if g.is_file() else "unknown"


def training_totals(training: dict[str, Any]) -> dict[str, Any]:
    """A card's ``training`` with the run it started from (``before``) added: steps, samples
    (crops) and minutes of both."""
    before = training.get("before") or {}
    return {"steps": training.get("steps", 0) + before.get("steps", 0),
            "samples": training.get("samples", 0) + before.get("samples", 0),
            "minutes": round(training.get("minutes", 0.0) + before.get("minutes", 0.0), 1)}


def init_summary(init: str | None) -> dict[str, Any] | None:
    """What a run started from (``models.train --init``): the weights file and, from its card,
    its version, steps, crops and minutes; None for a run from scratch. Read before shipping,
    which may overwrite that file."""
    if not init:
        return None
    out: dict[str, Any] = {"from": str(init)}
    path = Path(init)
    if path.is_file():
        c = torch.load(path, map_location="cpu", weights_only=True).get("card") or {}
        out.update(version=c.get("version"), data=c.get("data", {}).get("train"),
                   **training_totals(c.get("training", {})))
    return out


def make_card(name: str, ckpt: dict[str, Any], test: dict[str, Any] | None, subset: dict[str, float],
              before: dict[str, Any] | None = None) -> dict[str, Any]:
    """``before``: :func:`init_summary` of the weights the run started from; the version then
    counts its steps too."""
    from models.train import train_augment

    train = ckpt["train"]
    step = int(ckpt["step"])
    total = step + int((before or {}).get("steps", 0))
    card = {
        "name": name, "method": ckpt["net"]["method"], "version": f"step{total}-{time.strftime('%Y%m%d')}",
        "net": ckpt["net"],
        "data": {"train": train["train"], "generator_commit": _commit(train["train"]),
                 "augmentation": (dict(vars(train_augment(train)))
                                  if train.get("augment", 1) else None)},
        "training": {"steps": step, "planned_steps": train["steps"], "batch": train["batch"],
                     "samples": step * train["batch"], "optimizer": f"AdamW lr {train['lr']} wd {train['weight_decay']}, "
                     f"warm-up {train['warmup']}, cosine", "minutes": round(float(ckpt["elapsed_s"]) / 60, 1),
                     "threads": train["threads"], "loader_workers": train["workers"],
                     "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)",
                     "loss_weights": {k: train[k] for k in ("vertex_weight", "limit_weight", "sd_weight")}},
        "subset": subset,
        "batchnorm": f"statistics recomputed over {BN_BATCHES} x 64 augmented training crops",
    }
    if before is not None:
        card["training"]["before"] = before
    if test is not None:
        card["test"] = {k: test[k] for k in ("frames", "mean_mm", "median_mm", "vertices_mm", "success", "auc",
                                             "invalid_pose", "bone_error_mm") if k in test}
    return card


def ship(run: Path, name: str, engine: bool, test_split: str | None, max_frames: int | None,
         out_dir: Path = WEIGHTS_DIR) -> Path:
    from models.estimator import TorchPredictor
    from models.evaluate import predict_shards, summary_record
    from models.train import hand_vertex_mask, load_model

    from models.nets import HandNet, NetConfig
    from models.train import recompute_batchnorm, train_augment, training_patches

    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    before = init_summary(ckpt["train"].get("init"))
    net = HandNet(NetConfig(**ckpt["net"]))
    net.load_state_dict(ckpt["model"])
    recompute_batchnorm(net, training_patches(ckpt["train"]["train"], BN_BATCHES, train_augment(ckpt["train"])))
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.pt"
    torch.save({"net": ckpt["net"], "model": state, "card": {}}, out)
    predictor = TorchPredictor(load_model(out))  # the shipped (rounded) weights, as users get them
    test = None
    if test_split:
        test = summary_record(predict_shards(predictor, test_split, max_frames), hand_vertex_mask().numpy())
    # Names are unique across folders (the engines' metadata and file names come from them).
    card_name = name if out_dir.resolve() == WEIGHTS_DIR.resolve() else f"{out_dir.name}-{name}"
    card = make_card(card_name, ckpt, test, subset_metrics(predictor), before)
    torch.save({"net": ckpt["net"], "model": state, "card": card}, out)
    if engine:
        from export.model_export import export_engine, load_for_export

        net, info = load_for_export(out)
        export_engine(net, out_dir / f"{name}.onnx", info)
    write_cards()
    return out


def write_cards() -> Path:
    """models/weights/README.md from the cards of every shipped .pt."""
    rows = []
    for p in sorted(WEIGHTS_DIR.rglob("*.pt")):
        c = torch.load(p, map_location="cpu", weights_only=True).get("card") or {}
        if not c:
            continue
        t, tr = c.get("test", {}), c["training"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        total, before = training_totals(tr), (tr.get("before") or {}).get("steps", 0)
        steps = f"{before} + {tr['steps']}" if before else f"{tr['steps']}"
        rows.append(f"| `{p.relative_to(WEIGHTS_DIR)}` | {c['method']} | {c['version']} | {steps} x {tr['batch']} "
                    f"({total['samples']:,} crops) | {total['minutes']} | "
                    f"{fmt(t.get('mean_mm'))} | {fmt(t.get('vertices_mm'))} | "
                    f"{c['subset']['mean_mm']:.2f} | {p.stat().st_size / 1e6:.1f} MB |")
    text = ("# Shipped weights\n\nWritten by `python -m models.ship`; each `.pt` holds its full card "
            "(`torch.load(p)['card']`: data, augmentation, optimiser, machine, all test metrics). Test numbers "
            "are the network on one crop (`python -m models.evaluate --rotations 1`); the app also runs each "
            "crop turned and averages (its rotation ensemble, 2-3 mm better: the project README, \"Results\").\n\n"
            "| file | method | version | steps x batch | train min | test joints mm | test vertices mm "
            "| subset joints mm | size |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
            + _spotter_card())
    path = WEIGHTS_DIR / "README.md"
    path.write_text(text)
    return path


def _spotter_card() -> str:
    """The learnt hand spotter's card (``models/handspot.py``, in the ONNX file's metadata) as a
    README section; empty without the file."""
    import onnx

    path = WEIGHTS_DIR / "handspot.onnx"
    if not path.is_file():
        return ""
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    c = json.loads(meta.get("card", "{}"))
    v = c.get("val", {})
    return ("\n## `handspot.onnx`: the learnt hand spotter\n\nWritten by `python -m models.handspot ship` "
            "(card in the file's metadata, `models.handspot.HandSpotter(...).card`). Where the palm centre is in the "
            "whole frame; the app checks its spot with the finder's candidates (project README, \"A learnt hand "
            "spotter\").\n\n| steps x batch | training frames | train min | machine | parameters | validation: "
            "within 5 % of the frame | median | size |\n|---|---|---|---|---|---|---|---|\n"
            f"| {c.get('step')} x {c.get('batch')} | {c.get('frames')} | {c.get('train_minutes')} | {c.get('machine')} "
            f"| {c.get('parameters', 0):,} | {100 * v.get('within5_pct', float('nan')):.1f} % "
            f"| {v.get('median_pct')} % | {path.stat().st_size / 1e3:.0f} KB |\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.ship", description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="run directory with last.pt")
    ap.add_argument("--name", default=None, help="shipped name (default: the run directory's name)")
    ap.add_argument("--engine", action="store_true", help="also write the batch-1 ONNX engine")
    ap.add_argument("--test", default="data/synth/test", help="test split to put in the card ('' to skip)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR, help="where to write (default models/weights; "
                    "the compared methods go to models/weights/compare)")
    ap.add_argument("--subset", action="store_true", help="(re)make tests/data/synth_test_subset.npz")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.subset:
        print(make_subset())
    if a.run:
        print(ship(a.run, a.name or a.run.name, a.engine, a.test or None, a.max_frames, a.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
