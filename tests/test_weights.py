"""The shipped weights load and reproduce their cards' numbers on the fixed test subset.

tests/data/synth_test_subset.npz holds 256 frames of the synthetic test split (hands and
pose-bank poses not in training); ``python -m models.ship`` measured each card's numbers on it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.estimator import TorchPredictor, load_predictor
from models.ship import SUBSET_PATH, WEIGHTS_DIR, subset_metrics
from models.train import load_model

SHIPPED = sorted(WEIGHTS_DIR.rglob("*.pt"))


def test_the_default_model_and_its_engine_ship():
    assert (WEIGHTS_DIR / "deephps.pt").is_file() and (WEIGHTS_DIR / "deephps.onnx").is_file()
    assert SUBSET_PATH.is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(WEIGHTS_DIR)) for p in SHIPPED])
def test_shipped_weights_reproduce_their_card(path: Path):
    card = torch.load(path, map_location="cpu", weights_only=True)["card"]
    got = subset_metrics(TorchPredictor(load_model(path)))
    assert got["frames"] == card["subset"]["frames"] == 256
    assert got["mean_mm"] == pytest.approx(card["subset"]["mean_mm"], abs=0.5)        # mm
    if "vertices_mm" in card["subset"]:
        assert got["vertices_mm"] == pytest.approx(card["subset"]["vertices_mm"], abs=0.5)  # mm
    assert card["training"]["steps"] > 0 and card["data"]["train"]


def test_default_engine_matches_its_weights_on_the_subset():
    with np.load(SUBSET_PATH) as z:
        patch = z["patch"][:32].astype(np.float32)[:, None]
    engine = load_predictor(WEIGHTS_DIR / "deephps.onnx", "cpu")
    torch_pred = TorchPredictor(load_model(WEIGHTS_DIR / "deephps.pt"))
    joints = np.concatenate([engine(p[None])[0] for p in patch])
    ref, ref_v = torch_pred(patch)
    assert np.abs(joints - ref).max() < 0.01                                          # mm
    verts = np.concatenate([engine(p[None])[1] for p in patch[:4]])
    assert np.abs(verts - ref_v[:4]).max() < 0.01                                     # mm
