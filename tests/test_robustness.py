"""Bad input and faults: clear errors, no crash, nothing written is lost (issue: robustness)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.__main__ import DEMO_SOURCE, main as app_main
from calib import read_depth_recording
from sources import open_source


@pytest.fixture(scope="module")
def demo_frames():
    """The first 12 frames of the shipped demo (raw uint16) and its intrinsics."""
    rec = read_depth_recording(DEMO_SOURCE, max_frames=12)
    return rec.frames, rec.intrinsics


def _folder(tmp_path: Path, frames, intr, extra: dict[str, bytes] | None = None) -> Path:
    d = tmp_path / "pngs"
    d.mkdir()
    (d / "intrinsics.json").write_text(json.dumps({"fx": intr.fx, "fy": intr.fy, "cx": intr.cx, "cy": intr.cy,
                                                   "width": intr.width, "height": intr.height,
                                                   "depth_scale": intr.depth_scale}))
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"frame_{i:03d}.png"), f)
    for name, data in (extra or {}).items():
        (d / name).write_bytes(data)
    return d


def _poses(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def test_bad_frames_are_skipped_or_empty_and_the_run_goes_on(demo_frames, tmp_path, caplog):
    frames, intr = demo_frames
    zeros = np.zeros_like(frames[0])
    wrong_size = np.ones((10, 10), np.uint16)
    ok, png8 = cv2.imencode(".png", np.full(frames[0].shape, 7, np.uint8))
    d = _folder(tmp_path, [frames[0], zeros, frames[1], wrong_size, frames[2]], intr,
                {"frame_005.png": b"\x89PNG\r\n\x1a\n broken", "frame_006.png": png8.tobytes(),
                 "frame_007.png": cv2.imencode(".png", frames[3])[1].tobytes()[:200]})
    out = tmp_path / "poses.jsonl"
    assert app_main(["--source", str(d), "--headless", "--no-refine", "--save-poses", str(out)]) == 0
    rows = _poses(out)
    # Read: frames 0, 1 (zeros), 2, 4; skipped with a warning: 3 (size), 5 (corrupt), 6 (8-bit), 7 (truncated).
    assert [r["source_id"] for r in rows] == ["frame_000.png", "frame_001.png", "frame_002.png", "frame_004.png"]
    assert [r["hand_found"] for r in rows] == [True, False, True, True]
    assert rows[1]["joints_xyz_mm"] is None
    skipped = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for name in ("frame_003.png", "frame_005.png", "frame_006.png", "frame_007.png"):
        assert any(name in m for m in skipped), (name, skipped)


def test_nan_and_inf_depth_count_as_no_depth(demo_frames):
    from models.estimator import Estimator, load_predictor

    frames, intr = demo_frames
    depth = frames[0].astype(np.float32) * 1000 * intr.depth_scale
    est = Estimator(load_predictor(Path("models/weights/deephps.onnx"), "cpu"))
    clean = est(depth, intr)
    est.reset()
    noisy = depth.copy()
    noisy[::7, ::5] = np.nan
    noisy[0, :] = np.inf
    for bad in (np.full_like(depth, np.nan), np.full_like(depth, np.inf), np.zeros_like(depth)):
        assert not est(bad, intr).hand_found      # no invented hand
    est.reset()
    res = est(noisy, intr)
    assert res.hand_found and np.linalg.norm(res.com_mm - clean.com_mm) < 15.0   # mm


def test_folder_without_intrinsics_is_a_one_line_error(demo_frames, tmp_path, capsys):
    frames, intr = demo_frames
    d = _folder(tmp_path, frames[:2], intr)
    (d / "intrinsics.json").unlink()
    assert app_main(["--source", str(d), "--headless"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "intrinsics.json" in err[0]


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", b"\x08\x07" * 100])
def test_corrupt_model_file_is_a_one_line_error(tmp_path, capsys, content):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(content)
    assert app_main(["--headless", "--model", str(bad), "--max-frames", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "model.onnx" in err[-1]


def test_truncated_recording_is_a_one_line_error(tmp_path, capsys):
    cut = tmp_path / "cut.db3"
    cut.write_bytes(DEMO_SOURCE.read_bytes()[:50_000])
    code = app_main(["--source", str(cut), "--headless", "--max-frames", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and err[-1].startswith("error:") and "cut.db3" in " ".join(err)


def test_source_failing_mid_stream_keeps_poses_and_recording(demo_frames, tmp_path, monkeypatch, capsys):
    """A camera unplugged after 6 frames: exit status 1, one error line, and the poses file and
    the --record recording hold the frames the tracker processed (a live source drops stale
    frames, so up to 6), readable."""
    import app.__main__ as cli
    import sources

    real = sources.open_source

    class Unplugged:
        live, num_frames, name = True, None, "a camera that gets unplugged"

        def __init__(self):
            self.inner = real(str(DEMO_SOURCE))

        def __iter__(self):
            for k, f in enumerate(self.inner):
                if k == 6:
                    from calib import SourceError

                    raise SourceError("realsense: no frame for 5000 ms (camera unplugged?)")
                yield f

        def close(self):
            self.inner.close()

    monkeypatch.setattr(sources, "open_source", lambda *a, **k: Unplugged())
    poses, rec = tmp_path / "p.jsonl", tmp_path / "r.db3"
    code = cli.main(["--headless", "--no-refine", "--save-poses", str(poses), "--record", str(rec)])
    assert code == 1
    assert "unplugged" in capsys.readouterr().err
    rows = _poses(poses)
    assert 1 <= len(rows) <= 6 and [r["frame"] for r in rows] == list(range(len(rows)))
    ids = [int(r["source_id"]) for r in rows]
    assert ids == sorted(ids) and ids[-1] <= 5
    got = read_depth_recording(rec)
    assert len(got.frames) == len(rows)
    demo = read_depth_recording(DEMO_SOURCE, max_frames=6).frames
    assert all(np.array_equal(g, demo[i]) for g, i in zip(got.frames, ids))


def test_no_hand_then_hand_returns(demo_frames, tmp_path):
    """Empty frames between hand frames: hand_found false there, found again at once after."""
    frames, intr = demo_frames
    zeros = np.zeros_like(frames[0])
    d = _folder(tmp_path, [frames[0], frames[1], zeros, zeros, zeros, frames[2], frames[3]], intr)
    out = tmp_path / "poses.jsonl"
    assert app_main(["--source", str(d), "--headless", "--save-poses", str(out)]) == 0
    assert [r["hand_found"] for r in _poses(out)] == [True, True, False, False, False, True, True]


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly_and_keeps_what_was_written(tmp_path, how):
    """SIGINT to a looping replay: the process ends by itself (no thread left running), exit 0
    with the summary, every pose line complete, the recording readable with the same frames."""
    import signal
    import subprocess
    import sys
    import time

    poses, rec = tmp_path / "p.jsonl", tmp_path / "r.db3"
    # A shell without job control starts background jobs with SIGINT ignored, and Python then
    # installs no Ctrl-C handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "app", "--headless", "--loop", "--max-frames", "1000000",
                             "--no-refine", "--save-poses", str(poses), "--record", str(rec)],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and (not poses.exists() or len(poses.read_text().splitlines()) < 20):
        time.sleep(0.2)
    proc.send_signal(getattr(signal, how))   # Ctrl-C, or kill
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:              # never leave a looping app behind
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "processed" in out
    rows = _poses(poses)                       # every line is complete JSON
    assert len(rows) >= 20 and [r["frame"] for r in rows] == list(range(len(rows)))
    # Ctrl-C can land between a frame's pose line and its recording: at most that frame differs.
    assert len(rows) - 1 <= len(read_depth_recording(rec).frames) <= len(rows)


def test_hand_closer_than_the_minimum_range_is_not_invented(demo_frames):
    from models.estimator import Estimator, load_predictor

    frames, intr = demo_frames
    depth = frames[0].astype(np.float32) * 1000 * intr.depth_scale
    too_close = np.where(depth > 0, depth * 0.15, 0).astype(np.float32)   # 60-140 mm: inside the sensor's minimum
    est = Estimator(load_predictor(Path("models/weights/deephps.onnx"), "cpu"))
    assert not est(too_close, intr).hand_found


def test_hand_at_the_image_border_and_two_hands(demo_frames):
    """A hand cut by the image border is still found (the crop pads with background); with a
    second, nearer hand-sized blob the tracker keeps to the hand it had."""
    from models.estimator import Estimator, load_predictor

    frames, intr = demo_frames
    depth = frames[4].astype(np.float32) * 1000 * intr.depth_scale
    est = Estimator(load_predictor(Path("models/weights/deephps.onnx"), "cpu"))
    first = est(depth, intr)
    assert first.hand_found
    u = int(round(first.joints_uvd[9, 0]))
    cut = np.zeros_like(depth)
    cut[:, : intr.width - u + 10] = depth[:, u - 10:]          # the hand moved to the left border
    est.reset()
    r = est(cut, intr)
    assert r.hand_found and np.isfinite(r.joints_mm).all()
    # Two hands: the same hand copied 150 px to the right and 80 mm nearer.
    est.reset()
    assert est(depth, intr).hand_found
    two = depth.copy()
    shifted = np.zeros_like(depth)
    shifted[:, 150:] = depth[:, :-150]
    near = (shifted > 0) & (shifted < first.com_mm[2] + 100)
    two[near] = shifted[near] - 80.0
    r2 = est(two, intr)
    assert r2.hand_found and np.linalg.norm(r2.com_mm - first.com_mm) < 60.0   # mm: the same hand


def test_killed_process_leaves_readable_poses_and_recording(tmp_path):
    """kill -9 mid-run: every pose line but possibly the last is complete JSON, and the
    recording (SQLite, written frame by frame) still plays back."""
    import subprocess
    import sys
    import time

    poses, rec = tmp_path / "p.jsonl", tmp_path / "r.db3"
    proc = subprocess.Popen([sys.executable, "-m", "app", "--headless", "--loop", "--max-frames", "1000000",
                             "--no-refine", "--save-poses", str(poses), "--record", str(rec)],
                            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not poses.exists() or len(poses.read_text().splitlines()) < 30):
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=30)
    lines = poses.read_text().splitlines()  # (the process is gone: killed above)
    rows = [json.loads(s) for s in lines[:-1]]
    assert len(rows) >= 29 and [r["frame"] for r in rows] == list(range(len(rows)))
    assert len(read_depth_recording(rec).frames) >= len(rows) - 1


def test_model_with_the_wrong_inputs_is_a_one_line_error(tmp_path, capsys):
    """An ONNX file that is not a hand engine (here the hand layer alone: θ, α, β in, no crop)
    is refused with one line naming it."""
    from export.onnx_export import export_hand_layer

    wrong = export_hand_layer(tmp_path / "layer.onnx", dynamic_batch=False)
    assert app_main(["--headless", "--model", str(wrong), "--max-frames", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "layer.onnx" in err[-1]
