"""The learnt hand / not-hand score of the estimator's candidates (models/handcheck.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from calib import Intrinsics
from models.crop import crop_depth
from models.handcheck import ASSET_PATH, FEATURES, SPOT_FLOOR, HandCheck, candidate_features, fit_logistic, load

INTR = Intrinsics(500.0, 500.0, 159.5, 119.5, 320, 240, 0.001, name="test")


def test_logistic_fit_recovers_the_weights_of_its_data():
    """Labels drawn from a known logistic model: the fit finds its weights (per standardised
    feature) to within 0.15 and its bias to within 0.15, from 20,000 samples."""
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 0.0], [1.0, 2.0, 0.5], size=(20000, 3))
    w, b = np.array([1.5, -0.5, 2.0]), 0.3
    y = rng.random(len(x)) < 1.0 / (1.0 + np.exp(-(x @ w + b)))
    check = fit_logistic(x, y, l2=1e-6)
    np.testing.assert_allclose(check.weights / check.scale, w, atol=0.15)
    assert abs(check.bias - float(check.mean @ (check.weights / check.scale)) - b) < 0.15
    # The score is the log-odds: for the true model's mean point, about x̄·w + b.
    assert abs(float(check(x.mean(0))) - float(x.mean(0) @ w + b)) < 0.15
    with pytest.raises(ValueError):
        fit_logistic(np.zeros((3, 2)), np.zeros(4))


def test_candidate_features_by_hand():
    """A surface at 500 mm filling the right half of the view, nothing on the left; the crop
    cube (250 mm) centred on it. Of eight vertices, four lie on the surface, two 50 mm in front
    of it (free space: the surface is more than FREE_MM behind them) and two over the empty
    left half (free): free = 4 / 8. The crop's filled share is that of its patch pixels with a
    surface, which here is the right half of the window: 0.5 to within two patch columns
    (the window is resampled to 96 x 96 by nearest neighbour)."""
    depth = np.zeros((INTR.height, INTR.width), np.float32)
    depth[:, 160:] = 500.0
    crop = crop_depth(depth, INTR, np.array([0.0, 0.0, 500.0]))

    def at(u: float, v: float, z: float) -> list[float]:
        return [(u - INTR.cx) / INTR.fx * z, (v - INTR.cy) / INTR.fy * z, z]

    verts = np.array([at(170, 110, 500), at(180, 120, 505), at(190, 130, 495), at(175, 125, 500),
                      at(170, 115, 450), at(185, 118, 450),
                      at(140, 110, 500), at(150, 125, 500)])
    f = candidate_features(crop, INTR, verts, fit_mm=7.0, spread_mm=9.0, first=True, spare=False)
    assert f.shape == (len(FEATURES),)
    assert f[0] == pytest.approx(math.log(7.0)) and f[1] == pytest.approx(math.log(10.0))
    assert f[2] == pytest.approx(0.5)
    assert abs(f[3] - 0.5) <= 2.0 / crop.patch.shape[0] + 1e-9                  # two of 96 columns
    assert (f[4], f[5]) == (1.0, 0.0)
    assert f[6] == pytest.approx(math.log(SPOT_FLOOR))                          # no spotter: the floor
    g = candidate_features(crop, INTR, verts, fit_mm=0.0, spread_mm=0.0, first=False, spare=True, spot_mass=0.25)
    assert g[0] == pytest.approx(math.log(0.1)) and g[1] == 0.0 and (g[4], g[5]) == (0.0, 1.0)
    assert g[6] == pytest.approx(math.log(0.25))


def test_the_shipped_scores_prefer_what_a_hand_looks_like(tmp_path):
    """The fitted weights (models/assets/hand_check.json) lean the way the features were
    chosen for: a worse surface fit lowers the score, the finder's own answer is preferred
    to a spare starting point and the spotter's belief raises it, everything else equal; with
    the ensemble, a larger spread lowers it. The file records its data and how often each
    score's pick was right: better than the finder's first on both splits."""
    record = json.loads(ASSET_PATH.read_text())
    for ensemble in (True, False):
        check = load(ensemble=ensemble)
        assert isinstance(check, HandCheck)
        w = dict(zip(FEATURES, check.weights))
        assert w["log_fit"] < 0.0 and w["first"] > 0.0 > w["spare"] and w["log_spot"] > 0.0, w
        kind = record["ensemble" if ensemble else "single"]
        for split in (kind["picked_right"], kind["picked_right"]["evaluate"]):
            assert split["first"] < split["score"] <= split["any"] <= split["frames"], split
    check = load(ensemble=True)
    assert dict(zip(FEATURES, check.weights))["log_spread"] < 0.0
    floor = math.log(SPOT_FLOOR)                                                  # no spotter
    hand = np.array([math.log(6.0), math.log1p(8.0), 0.27, 0.15, 0.0, 0.0, floor])     # medians on hands
    box = np.array([math.log(16.0), math.log1p(32.0), 0.08, 0.25, 1.0, 0.0, floor])    # and on the rest
    assert float(check(hand)) > float(check(box)) + 2.0                                  # log-odds
    # the same box where the spotter puts most of its belief (0.6) beats the hand it missed
    assert float(check(np.r_[box[:6], math.log(0.6)])) > float(check(hand))
    bad = tmp_path / "check.json"
    bad.write_text(json.dumps({**record, "features": ["log_fit"]}))
    with pytest.raises(ValueError, match="refit"):
        load(bad)
