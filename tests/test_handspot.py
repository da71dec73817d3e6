"""The learnt hand spotter (models.handspot): its input, target and decoding on hand-made
cases, and the shipped network on real SR305 frames with hand-annotated palm centres."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from calib import Intrinsics, backproject
from models.handspot import (WEIGHTS_PATH, HandSpotter, Spot, SpotConfig, decode, spot_detection, spot_input,
                             spot_mass, st_from_uv, start_point, target_cells, uv_from_st)

SR305 = Path(__file__).resolve().parent / "data" / "sr305"


def _intr(width: int = 640, height: int = 480) -> Intrinsics:
    return Intrinsics(fx=476.0, fy=476.0, cx=width / 2, cy=height / 2, width=width, height=height, depth_scale=0.001)


def test_input_is_nearness_with_no_depth_as_zero():
    intr = _intr()
    depth = np.full((480, 640), 500.0, np.float32)
    depth[:, :320] = 0.0                   # no depth
    depth[:240, 320:] = np.nan             # no depth either
    depth[240:, 480:] = 2500.0             # beyond far_mm
    x = spot_input(depth, intr)
    cfg = SpotConfig()
    assert x.shape == (cfg.height, cfg.width) and x.dtype == np.float32
    assert np.all(x[:, :cfg.width // 2 - 1] == 0.0)
    assert np.all(x[:cfg.height // 2 - 1, cfg.width // 2 + 1:] == 0.0)
    assert np.allclose(x[cfg.height // 2 + 1:, cfg.width // 2 + 1:cfg.width * 3 // 4 - 1], 1.0 - 500.0 / 2000.0)
    assert np.all(x[cfg.height // 2 + 1:, cfg.width * 3 // 4 + 1:] == 0.0)
    with pytest.raises(ValueError, match="expected shape"):
        spot_input(depth[:100], intr)


def test_target_peaks_at_the_point_and_sums_to_one():
    cfg = SpotConfig()
    rows, cols = cfg.grid
    # (s, t) at the centre of cell (row 5, column 20): s = (20 + 0.5) / cols
    st = np.array([[(20 + 0.5) / cols, (5 + 0.5) / rows]])
    g = target_cells(st, cfg)[0]
    assert g.shape == (rows, cols) and abs(g.sum() - 1.0) < 1e-6
    assert np.unravel_index(g.argmax(), g.shape) == (5, 20)
    # a Gaussian of sigma 1 cell: the neighbour weighs exp(-1/2) of the peak
    assert g[5, 21] / g[5, 20] == pytest.approx(np.exp(-0.5), rel=1e-5)


def test_decode_recovers_the_point_between_cells():
    """Logits = log of a target centred between two cells: the decoded (s, t) is that point
    (the parabola through the log-probabilities is exact for a Gaussian); at the grid's corner
    the peak cell's centre."""
    cfg = SpotConfig()
    rows, cols = cfg.grid
    st = np.array([[(10.5 + 0.5) / cols, (7.3 + 0.5) / rows], [0.5 / cols, 0.5 / rows]])
    logits = np.log(target_cells(st, cfg) + 1e-30)
    got, mass = decode(logits)
    assert got[0] == pytest.approx(st[0], abs=1e-3 / cols)
    assert got[1] == pytest.approx(st[1], abs=1e-9)
    assert 0.5 < mass[0] < 1.0


def test_spot_mass_sums_the_cells_around_a_pixel():
    """The belief at a pixel: the softmax mass in the 3 x 3 cells around its cell (cut at the
    grid's edge), 0 outside the frame."""
    intr = _intr()                                   # 640 x 480: a cell is 20 x 20 px
    probs = np.zeros(SpotConfig().grid)
    probs[10, 20] = 0.5
    probs[11, 21] = 0.25
    probs[0, 0] = 0.25
    spot = Spot(np.zeros(2), 0.0, probs)
    assert spot_mass(spot, np.array([20 * 20 + 5.0, 10 * 20 + 5.0]), intr) == pytest.approx(0.75)
    assert spot_mass(spot, np.array([22 * 20 + 5.0, 10 * 20 + 5.0]), intr) == pytest.approx(0.25)
    assert spot_mass(spot, np.array([3.0, 3.0]), intr) == pytest.approx(0.25)
    assert spot_mass(spot, np.array([-30.0, 3.0]), intr) == 0.0


def test_pixel_and_normalised_coordinates_round_trip():
    intr = _intr(848, 480)
    uv = np.array([[0.0, 0.0], [847.0, 479.0], [423.5, 100.25]])
    st = st_from_uv(uv, intr)
    assert st[0] == pytest.approx([0.5 / 848, 0.5 / 480])
    assert st[1] == pytest.approx([847.5 / 848, 479.5 / 480])
    assert uv_from_st(st, intr) == pytest.approx(uv)


def test_start_point_takes_the_near_surface_around_the_pixel():
    """A hand-sized square at 400 mm over a wall at 900 mm: from a pixel at the square's edge
    the start lies on the square (the low percentile), on the pixel's ray."""
    intr = _intr()
    depth = np.full((480, 640), 900.0, np.float32)
    depth[200:280, 300:380] = 400.0
    p = start_point(depth, intr, np.array([300.0, 240.0]))
    assert p is not None and p[2] == pytest.approx(400.0)
    assert p == pytest.approx(backproject(np.array([300.0, 240.0, 400.0]), intr))
    assert start_point(np.zeros_like(depth), intr, np.array([300.0, 240.0])) is None
    assert start_point(depth, intr, np.array([-5.0, 240.0])) is None


@pytest.fixture(scope="module")
def real_frames():
    meta = json.loads((SR305 / "hand_centres.json").read_text())
    k = meta["intrinsics"]
    intr = Intrinsics(fx=k["fx"], fy=k["fy"], cx=k["cx"], cy=k["cy"], width=k["width"], height=k["height"],
                       depth_scale=meta["depth_unit_mm"] / 1000.0)
    frames = []
    for name, uv in meta["palm_centre_uv"].items():
        raw = cv2.imread(str(SR305 / name), cv2.IMREAD_UNCHANGED)
        frames.append((name, raw.astype(np.float32) * meta["depth_unit_mm"], np.array(uv)))
    return intr, frames


def test_shipped_spotter_finds_the_palm_on_real_sr305_frames(real_frames):
    """The shipped network, trained on our renders only, on the 19 real frames: the spot lies
    within 35 px of the hand-annotated palm centre in every one, 20 px at the median
    (annotations ~10 px uncertain; the palm is ~150 px across there; measured: 24 and 15 px)."""
    intr, frames = real_frames
    spotter = HandSpotter()
    errors = [float(np.linalg.norm(spotter(depth, intr).uv - uv)) for _, depth, uv in frames]
    assert max(errors) < 35.0 and np.median(errors) < 20.0, errors   # px


def test_spot_detection_is_centred_by_the_finder(real_frames):
    """From a spot near the annotated palm the candidate is the finder's refined centre, method
    "learnt"; from a spot on empty space there is none."""
    from models.handfind import HandFinderConfig

    intr, frames = real_frames
    _, depth, uv = frames[0]
    det = spot_detection(depth, intr, Spot(uv + 15.0, 0.9, np.zeros((24, 32))), HandFinderConfig())
    assert det is not None and det.method == "learnt"
    assert np.linalg.norm(det.com_uvd[:2] - uv) < 40.0
    empty = np.zeros_like(depth)
    assert spot_detection(empty, intr, Spot(uv, 0.9, np.zeros((24, 32))), HandFinderConfig()) is None


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no hand-spotting network"):
        HandSpotter(tmp_path / "none.onnx")
    assert WEIGHTS_PATH.name == "handspot.onnx"


def _with_boxes(depth: np.ndarray, uv: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """The frame with 70 mm square boxes 150 mm nearer than the hand in the image's corners and
    at its top centre (those more than 150 px from the palm): objects nearer than the hand."""
    v0, u0 = int(uv[1]), int(uv[0])
    around = depth[v0 - 10:v0 + 10, u0 - 10:u0 + 10]
    z = float(np.median(around[around > 0])) - 150.0
    half = int(35.0 * intr.fx / z)
    out = depth.copy()
    for bu, bv in ((80, 80), (560, 80), (80, 400), (560, 400), (320, 60)):
        if np.hypot(bu - uv[0], bv - uv[1]) >= 150.0:
            out[bv - half:bv + half, bu - half:bu + half] = z
    return out


def test_spotter_keeps_the_hand_among_nearer_objects_on_real_frames(real_frames):
    """Real SR305 frames with four or five boxes nearer than the hand: the finder's candidates
    are the boxes, and without the spotter the pipeline crops a box in most frames; with it (the
    default) the spotter's candidate and belief keep the crop on the hand."""
    from calib import project
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    intr, frames = real_frames
    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    on_hand = {}
    for spot in (False, True):
        est = Estimator(predictor, EstimatorConfig(track=False, spot=spot))
        hits = 0
        for _, depth, uv in frames:
            e = est(_with_boxes(depth, uv, intr), intr)
            hits += e.hand_found and float(np.linalg.norm(project(e.com_mm, intr)[:2] - uv)) < 40.0   # px
        on_hand[spot] = hits
    assert on_hand[False] <= 6 and on_hand[True] >= 17, on_hand   # measured: 2 and 19 of 19


def test_missing_spotter_weights_leave_detection_to_the_finder(real_frames, monkeypatch, caplog):
    """Without models/weights/handspot.onnx the estimator says so once and detects as before."""
    import logging

    from models import estimator as estimator_module
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    def missing(*_args, **_kwargs):
        raise FileNotFoundError("handspot.onnx: no hand-spotting network")

    monkeypatch.setattr(estimator_module, "HandSpotter", missing)
    intr, frames = real_frames
    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    est = Estimator(predictor, EstimatorConfig(track=False))
    with caplog.at_level(logging.WARNING, logger="models.estimator"):
        for _, depth, uv in frames[:3]:
            e = est(depth, intr)
            assert e.hand_found and np.linalg.norm(e.joints_uvd[:, :2].mean(0) - uv) < 80.0   # px
    assert sum("hand spotter off" in r.message for r in caplog.records) == 1


def test_a_tracked_hand_that_jumps_is_found_again_among_nearer_objects(real_frames):
    """Tracking on frames that are not a sequence (the two real SR305 sequences interleaved, the
    boxes of the test above pasted in): each frame the hand is elsewhere and the tracker loses it
    or follows the wrong object; detection with the spotter finds it again (measured: 19 of 19
    frames on the hand; 9 with session 12's logic, where a lost hand went to the finder's first
    answer unchecked and only that answer was checked against a tracked one)."""
    from calib import project
    from models.estimator import Estimator, EstimatorConfig, load_predictor

    intr, frames = real_frames
    first = [f for f in frames if f[0].startswith("20210326-230536")]
    second = [f for f in frames if f[0].startswith("20210326-231615")]
    order = [f for pair in zip(second, first) for f in pair] + second[len(first):]
    predictor = load_predictor(Path(__file__).resolve().parents[1] / "models/weights/deephps.onnx", "cpu")
    est = Estimator(predictor, EstimatorConfig(track=True))
    hits = 0
    for _, depth, uv in order:
        e = est(_with_boxes(depth, uv, intr), intr)
        hits += e.hand_found and float(np.linalg.norm(project(e.com_mm, intr)[:2] - uv)) < 40.0   # px
    assert len(order) == 19 and hits >= 17, hits
