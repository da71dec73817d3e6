"""Tests of sources/: every reader against fixtures written here (values, order, ids, labels),
and the errors a user sees. Nothing here needs ../shared or a camera."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from calib import Intrinsics, SourceError, backproject, get_preset, project
from sources import Frame, Labels, open_source, parse_labels_jsonl
from sources.depth import DepthCheck, clean_depth_mm, raw_to_depth_mm
from sources.files import natural_key
from sources.icvl import parse_icvl_labels
from sources.msra import msra_to_camera, parse_msra_bin, parse_msra_joints
from sources.nyu import NYU14_SUBSET, decode_nyu_depth, encode_nyu_depth, parse_joints14_txt

REPO = Path(__file__).resolve().parents[1]
NYU_SAMPLE = REPO.parent / "shared" / "data" / "nyu_sample"


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sources" and r.levelno == logging.WARNING]


# ---------------------------------------------------------------------------- frame, depth


def test_frame_and_labels_check_their_fields():
    intr = Intrinsics(100.0, 100.0, 15.5, 11.5, 32, 24, 0.001)
    depth = np.zeros((24, 32), np.float32)
    frame = Frame(0, "a", 0.0, 0.0, depth, intr, Labels(np.zeros((21, 3)), "canonical"))
    assert frame.labels.xyz_mm.dtype == np.float64 and not frame.labels.xyz_mm.flags.writeable
    with pytest.raises(ValueError, match=r"\(H, W\) = \(24, 32\).*\(32, 24\)"):
        Frame(0, "a", 0.0, 0.0, np.zeros((32, 24), np.float32), intr)
    with pytest.raises(TypeError, match="float32"):
        Frame(0, "a", 0.0, 0.0, np.zeros((24, 32), np.uint16), intr)
    with pytest.raises(ValueError, match=r"\(14, 3\) for layout 'nyu14'"):
        Labels(np.zeros((21, 3)), "nyu14")
    with pytest.raises(ValueError, match="unknown joint layout"):
        Labels(np.zeros((21, 3)), "mano")


def test_raw_to_depth_mm_is_exact_for_integer_units():
    raw = np.array([[0, 1, 1234, 65535]], np.uint16)
    np.testing.assert_array_equal(raw_to_depth_mm(raw, 0.001), raw.astype(np.float32))
    np.testing.assert_array_equal(raw_to_depth_mm(raw, 0.000125), raw.astype(np.float32) * np.float32(0.125))
    assert raw_to_depth_mm(raw, 0.001).dtype == np.float32


def test_invalid_depth_becomes_zero_with_one_warning_per_source(caplog):
    intr = Intrinsics(100.0, 100.0, 1.5, 0.5, 4, 2, 0.001)
    check = DepthCheck(intr, "test source")
    bad = np.array([[1.0, np.nan, np.inf, -3.0], [-np.inf, 0.0, 5.5, 7.0]], np.float32)
    with caplog.at_level(logging.WARNING, logger="sources"):
        first = check(bad, "f0")
        second = check(bad.copy(), "f1")
        wrong_size = check(np.zeros((4, 2), np.float32), "f2")
    np.testing.assert_array_equal(first, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.5, 7.0]])
    np.testing.assert_array_equal(second, first)
    assert wrong_size is None
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages
    assert "4 NaN/inf/negative" in messages[0] and "f0" in messages[0]
    assert "skipped f2" in messages[1] and "(2, 4)" in messages[1]
    clean = np.ones((2, 2), np.float32)
    assert clean_depth_mm(clean)[0] is clean  # nothing to fix: no copy


def test_natural_sort():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "frame_1.png", "frame_2.png", "frame_10.png"]


# ---------------------------------------------------------------------------- PNG folder


def canonical_joints(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-80, 80, (21, 3)) + [0.0, 0.0, 450.0]


def write_png_folder(folder: Path, scale: float = 0.001, use_save: bool = False, fps: float | None = None) -> dict:
    """Three 16-bit PNGs (written out of name order), intrinsics.json, labels for two."""
    folder.mkdir(parents=True, exist_ok=True)
    intr = Intrinsics(60.5, 61.0, 19.25, 14.75, 40, 30, scale, name="png test")
    if use_save:
        intr.save(folder / "intrinsics.json")
    else:
        short = {k: getattr(intr, k) for k in ("fx", "fy", "cx", "cy", "width", "height", "depth_scale")}
        if fps is not None:
            short["fps"] = fps
        (folder / "intrinsics.json").write_text(json.dumps(short))
    rng = np.random.default_rng(3)
    raws = {}
    for name in ("frame_10.png", "frame_2.png", "frame_1.png"):
        raw = rng.integers(0, 65536, (30, 40), dtype=np.uint16)
        raw[0, :3] = (0, 1, 65535)
        assert cv2.imwrite(str(folder / name), raw)
        raws[name] = raw
    joints = {"frame_1.png": canonical_joints(1), "frame_10.png": canonical_joints(10)}
    lines = [json.dumps({"source_id": "frame_10.png", "joints_xyz_mm": joints["frame_10.png"].tolist(),
                         "timestamp_ms": 12.0, "fps": 30}),  # extra keys, as --save-poses writes
             "",
             json.dumps({"source_id": "frame_1.png", "joints_xyz_mm": joints["frame_1.png"].tolist()}),
             json.dumps({"source_id": "frame_2.png", "joints_xyz_mm": None})]  # no hand
    (folder / "labels.jsonl").write_text("\n".join(lines) + "\n")
    return {"intr": intr, "raws": raws, "joints": joints}


@pytest.mark.parametrize("scale, use_save, fps", [(0.001, False, 15), (0.000125, True, None)])
def test_png_folder_reads_back_exactly(tmp_path, scale, use_save, fps):
    fixture = write_png_folder(tmp_path / "clip", scale, use_save, fps)
    with open_source(str(tmp_path / "clip")) as source:
        assert source.num_frames == 3 and "\n" not in source.name
        assert (source.intrinsics.fx, source.intrinsics.cy, source.intrinsics.depth_scale) == (60.5, 14.75, scale)
        frames = list(source)
    assert [f.source_id for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]  # natural order
    assert [f.index for f in frames] == [0, 1, 2]
    period_ms = 1000 / (fps or 30)  # intrinsics.json's "fps", else 30
    assert [f.timestamp_ms for f in frames] == pytest.approx([0.0, period_ms, 2 * period_ms])  # ms
    for frame in frames:
        raw = fixture["raws"][frame.source_id]
        assert frame.depth_mm.dtype == np.float32 and frame.depth_mm.shape == (30, 40)
        np.testing.assert_array_equal(frame.depth_mm, raw.astype(np.float32) * np.float32(scale * 1000))
        assert frame.intrinsics == source.intrinsics
    assert frames[1].labels is None
    for frame in (frames[0], frames[2]):
        assert frame.labels.layout == "canonical"
        np.testing.assert_array_equal(frame.labels.xyz_mm, fixture["joints"][frame.source_id])
    assert frames[0].arrival_s <= frames[1].arrival_s <= frames[2].arrival_s


def test_png_folder_labels_argument_and_realtime_pace(tmp_path):
    fixture = write_png_folder(tmp_path / "clip")
    other = tmp_path / "poses.jsonl"
    other.write_text(json.dumps({"source_id": "frame_2.png", "joints_xyz_mm": canonical_joints(2).tolist()}) + "\n")
    start = time.perf_counter()
    with open_source(str(tmp_path / "clip"), labels=str(other), realtime=True) as source:
        frames = list(source)
    elapsed = time.perf_counter() - start
    assert elapsed >= 2 / 30 - 0.005  # s: three frames at 30 fps span two periods
    assert [f.labels is not None for f in frames] == [False, True, False]
    np.testing.assert_array_equal(frames[1].labels.xyz_mm, canonical_joints(2))
    assert fixture["raws"]  # the folder's own labels.jsonl was not used


def test_png_folder_loop_keeps_counting(tmp_path):
    write_png_folder(tmp_path / "clip")
    with open_source(str(tmp_path / "clip"), loop=True) as source:
        assert source.num_frames is None
        frames = [next(source) for _ in range(7)]
    assert [f.source_id for f in frames][3:6] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [f.index for f in frames] == list(range(7))
    assert frames[6].timestamp_ms == pytest.approx(6000 / 30)  # ms


def test_bad_pngs_are_skipped_with_one_warning_each(tmp_path, caplog):
    fixture = write_png_folder(tmp_path / "clip")
    folder = tmp_path / "clip"
    (folder / "frame_3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)  # corrupt
    good = (folder / "frame_1.png").read_bytes()
    (folder / "frame_4.png").write_bytes(good[: len(good) // 2])  # truncated
    cv2.imwrite(str(folder / "frame_5.png"), np.zeros((30, 40), np.uint8))  # 8-bit
    cv2.imwrite(str(folder / "frame_6.png"), np.zeros((30, 41), np.uint16))  # wrong size
    with caplog.at_level(logging.WARNING, logger="sources"), open_source(str(folder)) as source:
        frames = list(source)
    assert [f.source_id for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[2].depth_mm, fixture["raws"]["frame_10.png"].astype(np.float32))
    messages = warnings_of(caplog)
    assert len(messages) == 4, messages
    for name, fragment in (("frame_3", "corrupt"), ("frame_4", "corrupt"), ("frame_5", "16-bit"),
                           ("frame_6", "(30, 41)")):
        assert sum(name in m and fragment in m for m in messages) == 1, (name, messages)
    assert all("\n" not in m for m in messages)


def test_png_folder_errors(tmp_path):
    with pytest.raises(SourceError, match="no such folder.*nope"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError) as info:
        open_source(str(tmp_path / "empty"))
    message = str(info.value)
    assert "missing intrinsics.json" in message and "depth_scale" in message and "fx" in message
    (tmp_path / "empty" / "intrinsics.json").write_text('{"fx": 1, "fy": 1, "cx": 0, "cy": 0, "width": 4}')
    with pytest.raises(SourceError, match=r"missing keys \['height', 'depth_scale'\]"):
        open_source(str(tmp_path / "empty"))
    write_png_folder(tmp_path / "clip")
    (tmp_path / "clip" / "labels.jsonl").write_text('{"source_id": "frame_1.png", "joints_xyz_mm": [[1, 2, 3]]}\n')
    with pytest.raises(SourceError, match=r"labels.jsonl:1: .*\(21, 3\)"):
        open_source(str(tmp_path / "clip"))


def test_parse_labels_jsonl_errors():
    row = json.dumps({"source_id": "a", "joints_xyz_mm": [[0, 0, 1]] * 14, "layout": "nyu14"})
    table = parse_labels_jsonl(row + "\n")
    assert table["a"].layout == "nyu14" and table["a"].xyz_mm.shape == (14, 3)
    with pytest.raises(ValueError, match="x:2: source_id 'a' appears twice"):
        parse_labels_jsonl(row + "\n" + row, "x")
    with pytest.raises(ValueError, match="x:1: not valid JSON"):
        parse_labels_jsonl("{", "x")
    with pytest.raises(ValueError, match="x:1: expected an object with 'source_id'"):
        parse_labels_jsonl('{"id": 1}', "x")


# ---------------------------------------------------------------------------- spec errors


@pytest.mark.parametrize("spec, fragment", [
    ("webcam", "unknown 'webcam'; expected one of: realsense"),
    ("", "empty"),
    ("nyu:", "expected nyu:DIR"),
    ("clip.mp4", "no such folder or supported file"),
    ("synthetic:seed=x", "seed: expected an integer"),
    ("synthetic:colour=red", "expected key=value"),
])
def test_unknown_or_malformed_spec(spec, fragment):
    with pytest.raises(SourceError) as info:
        open_source(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("scheme", ["nyu", "icvl", "msra"])
def test_dataset_folder_missing(tmp_path, scheme):
    with pytest.raises(SourceError, match=f"{scheme}: folder not found: .*nope"):
        open_source(f"{scheme}:{tmp_path / 'nope'}")


def test_labels_file_missing(tmp_path):
    write_png_folder(tmp_path / "clip")
    with pytest.raises(SourceError, match="labels file not found: .*none.jsonl"):
        open_source(str(tmp_path / "clip"), labels=str(tmp_path / "none.jsonl"))


def test_import_has_no_heavy_side_effects():
    code = ("import sys, sources; print(*(m in sys.modules for m in ('torch', 'pyrealsense2', 'openni', 'cv2')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False"] * 4, result.stderr


# ---------------------------------------------------------------------------- NYU


def test_nyu_packing_round_trip_and_channel_order():
    depth = np.array([[0, 1, 255, 256], [731, 2001, 40000, 65535]], np.uint16)
    bgr = encode_nyu_depth(depth)
    assert bgr.shape == (2, 4, 3) and bgr.dtype == np.uint8
    # NYU's RGB PNG: depth = G * 256 + B; OpenCV's BGR order puts B in channel 0, G in 1, R (0) in 2.
    assert tuple(bgr[1, 0]) == (731 % 256, 731 // 256, 0)
    np.testing.assert_array_equal(decode_nyu_depth(bgr), depth.astype(np.float32))


def nyu_folder(tmp_path: Path, numbers=(1, 3), with_mat: bool = True) -> dict:
    folder = tmp_path / "nyu_test"
    folder.mkdir()
    rng = np.random.default_rng(5)
    depths = {}
    for n in numbers:
        depth = rng.integers(500, 2002, (480, 640)).astype(np.uint16)
        assert cv2.imwrite(str(folder / f"depth_1_{n:07d}.png"), encode_nyu_depth(depth))
        depths[n] = depth
    uvd = np.empty((3, 4, 36, 3))
    uvd[..., 0] = rng.uniform(100, 540, (3, 4, 36))
    uvd[..., 1] = rng.uniform(80, 400, (3, 4, 36))
    uvd[..., 2] = rng.uniform(600, 900, (3, 4, 36))
    if with_mat:
        scipy.io.savemat(folder / "joint_data.mat", {"joint_uvd": uvd, "joint_xyz": uvd * 0})
    return {"folder": folder, "depths": depths, "uvd": uvd}


def test_nyu_folder_with_joint_data_mat(tmp_path):
    fixture = nyu_folder(tmp_path)
    intr = get_preset("nyu").intrinsics
    with open_source(f"nyu:{fixture['folder']}") as source:
        assert source.intrinsics == intr and source.num_frames == 2
        frames = list(source)
    assert [f.source_id for f in frames] == ["depth_1_0000001.png", "depth_1_0000003.png"]
    for frame, n in zip(frames, (1, 3)):
        np.testing.assert_array_equal(frame.depth_mm, fixture["depths"][n].astype(np.float32))
        assert frame.labels.layout == "nyu14"
        expected = backproject(fixture["uvd"][0, n - 1, list(NYU14_SUBSET)], intr)  # kinect 1, frame n
        np.testing.assert_allclose(frame.labels.xyz_mm, expected, rtol=0, atol=1e-9)  # mm


def test_nyu_folder_with_per_frame_txt(tmp_path):
    fixture = nyu_folder(tmp_path, numbers=(1, 2), with_mat=False)
    uvd = fixture["uvd"][0, 0, list(NYU14_SUBSET)]
    text = " ".join(f"{v:.3f}" for v in uvd.ravel())
    (fixture["folder"] / "depth_1_0000001_joints14_uvd.txt").write_text(text + " \n")
    with open_source(f"nyu:{fixture['folder']}") as source:
        frames = list(source)
    np.testing.assert_allclose(frames[0].labels.xyz_mm, backproject(parse_joints14_txt(text), source.intrinsics))
    assert frames[1].labels is None
    with pytest.raises(ValueError, match="42 numbers"):
        parse_joints14_txt("1 2 3")


def test_nyu_real_sample_labels_lie_just_behind_the_surface():
    if not (NYU_SAMPLE / "depth_1_0000001.png").is_file():
        pytest.skip("../shared/data/nyu_sample is not here (a user's clone)")
    with open_source(f"nyu:{NYU_SAMPLE}") as source:
        frame = next(source)
    uvd = np.loadtxt(NYU_SAMPLE / "depth_1_0000001_joints14_uvd.txt").reshape(14, 3)
    np.testing.assert_allclose(project(frame.labels.xyz_mm, frame.intrinsics), uvd, atol=1e-9)
    u, v = np.round(uvd[:, :2]).astype(int).T
    behind = uvd[:, 2] - frame.depth_mm[v, u]
    assert np.all((behind > -2) & (behind < 40)), behind  # mm: joints inside the fingers, not 2 m away


# ---------------------------------------------------------------------------- ICVL


def test_icvl_label_file_order_ids_and_labels(tmp_path, caplog):
    folder = tmp_path / "Testing"
    rng = np.random.default_rng(9)
    depths = {}
    for rel in ("test_seq_1/image_0000.png", "test_seq_1/image_0001.png", "test_seq_2/image_0000.png"):
        path = folder / "Depth" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        depths[rel] = rng.integers(0, 1200, (240, 320)).astype(np.uint16)
        assert cv2.imwrite(str(path), depths[rel])
    order = ["test_seq_2/image_0000.png", "test_seq_1/image_0001.png", "test_seq_1/missing.png",
             "test_seq_1/image_0000.png"]
    uvds = {rel: np.column_stack([rng.uniform(0, 320, 16), rng.uniform(0, 240, 16), rng.uniform(300, 600, 16)])
            for rel in order}
    lines = [rel + " " + " ".join(f"{x:.4f}" for x in uvds[rel].ravel()) + " " for rel in order]
    (folder / "test_seq_1.txt").write_text("\n".join(lines) + "\n\n")
    intr = get_preset("icvl").intrinsics
    with caplog.at_level(logging.WARNING, logger="sources"), open_source(f"icvl:{folder}") as source:
        assert source.intrinsics == intr and source.num_frames == 4
        frames = list(source)
    assert [f.source_id for f in frames] == [order[0], order[1], order[3]]  # label-file order
    assert len(warnings_of(caplog)) == 1 and "missing.png" in warnings_of(caplog)[0]
    for frame in frames:
        np.testing.assert_array_equal(frame.depth_mm, depths[frame.source_id].astype(np.float32))
        parsed = parse_icvl_labels(lines[order.index(frame.source_id)]).uvd[0]
        assert frame.labels.layout == "icvl16"
        np.testing.assert_allclose(frame.labels.xyz_mm, backproject(parsed, intr), atol=1e-12)
        np.testing.assert_allclose(parsed, uvds[frame.source_id], atol=1e-4)
    with pytest.raises(ValueError, match="f:1: expected a path and 48 numbers, got 4 fields"):
        parse_icvl_labels("a.png 1 2 3", "f")


def test_icvl_without_labels_reads_pngs_in_name_order(tmp_path):
    folder = tmp_path / "Training"
    for rel in ("seqB/image_0010.png", "seqB/image_0002.png", "seqA/image_0000.png"):
        path = folder / "Depth" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((240, 320), 700, np.uint16))
    with open_source(f"icvl:{folder}") as source:
        frames = list(source)
    assert [f.source_id for f in frames] == ["seqA/image_0000.png", "seqB/image_0002.png", "seqB/image_0010.png"]
    assert all(f.labels is None for f in frames)


# ---------------------------------------------------------------------------- MSRA


def msra_bin(width: int, height: int, box: tuple[int, int, int, int], values: np.ndarray) -> bytes:
    left, top, right, bottom = box
    assert values.shape == (bottom - top, right - left)
    return np.array([width, height, left, top, right, bottom], "<i4").tobytes() + values.astype("<f4").tobytes()


def test_msra_bin_and_joints_land_where_projected(tmp_path, caplog):
    intr = get_preset("msra").intrinsics
    assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == (241.42, 241.42, 160, 120, 320, 240)
    # A point 40 mm right of, 30 mm above and 400 mm in front of the camera: our frame has
    # y down and z forward, MSRA's y up and z towards the camera, so the file stores (40, 30, -400).
    ours = np.array([40.0, -30.0, 400.0])
    u, v = 160 + 241.42 * 40 / 400, 120 - 241.42 * 30 / 400  # 184.142, 101.894 px: right of and above the centre
    box = (150, 80, 210, 130)  # left, top, right, bottom
    rng = np.random.default_rng(2)
    values = rng.uniform(600, 900, (50, 60)).astype(np.float32)
    values[round(v) - box[1], round(u) - box[0]] = 400.0
    gesture = tmp_path / "msra" / "P0" / "5"
    gesture.mkdir(parents=True)
    (gesture / "000000_depth.bin").write_bytes(msra_bin(320, 240, box, values))
    (gesture / "000001_depth.bin").write_bytes(msra_bin(320, 240, box, values * 0 + 500.0))
    (gesture / "000002_depth.bin").write_bytes(msra_bin(320, 240, box, values)[:-8])  # truncated
    stored = np.tile([40.0, 30.0, -400.0], (3, 21, 1)) + np.arange(21)[None, :, None] * [1.0, 0.0, 0.0]
    (gesture / "joint.txt").write_text("3\n" + "\n".join(" ".join(f"{x:g}" for x in row.ravel()) for row in stored))
    with caplog.at_level(logging.WARNING, logger="sources"), open_source(f"msra:{tmp_path / 'msra'}") as source:
        assert source.intrinsics == intr and source.num_frames == 3
        frames = list(source)
    assert [f.source_id for f in frames] == ["P0/5/000000_depth.bin", "P0/5/000001_depth.bin"]
    assert len(warnings_of(caplog)) == 1 and "000002_depth.bin" in warnings_of(caplog)[0]
    depth = frames[0].depth_mm
    np.testing.assert_array_equal(depth[80:130, 150:210], values)
    assert np.count_nonzero(depth) == values.size  # 0 outside the box
    labels = frames[0].labels
    assert labels.layout == "msra21"
    np.testing.assert_allclose(labels.xyz_mm[0], ours)
    uvd = project(labels.xyz_mm[0], intr)
    np.testing.assert_allclose(uvd, [u, v, 400.0], atol=1e-9)
    assert depth[round(uvd[1]), round(uvd[0])] == 400.0  # the joint projects onto its pixel
    np.testing.assert_array_equal(msra_to_camera(stored[1]), frames[1].labels.xyz_mm)


def test_msra_parser_errors():
    with pytest.raises(ValueError, match="truncated"):
        parse_msra_bin(msra_bin(320, 240, (0, 0, 2, 2), np.zeros((2, 2)))[:-4])
    with pytest.raises(ValueError, match="inconsistent header"):
        parse_msra_bin(np.array([320, 240, 10, 0, 5, 2], "<i4").tobytes())
    with pytest.raises(ValueError, match="says 2 frames, 1 lines follow"):
        parse_msra_joints("2\n" + " ".join(["0"] * 63))
    with pytest.raises(ValueError, match="63 numbers"):
        parse_msra_joints("1\n1 2 3")


# ---------------------------------------------------------------------------- RealSense recordings


@pytest.fixture(scope="module")
def db3_clip(tmp_path_factory):
    pytest.importorskip("pyrealsense2")
    from calib.realsense import write_depth_recording

    intr = Intrinsics(60.25, 61.5, 39.3, 29.7, 80, 60, 0.000125, name="test cam")
    rng = np.random.default_rng(11)
    raws = [rng.integers(0, 65536, (60, 80), dtype=np.uint16) for _ in range(5)]
    stamps = [1000.0, 1033.0, 1070.0, 1099.5, 1133.25]
    path = write_depth_recording(tmp_path_factory.mktemp("rec") / "clip.db3", raws, intr, fps=30,
                                 timestamps_ms=stamps, pace=False)
    return path, intr, raws, stamps


def test_db3_streams_every_frame_with_its_timestamp(db3_clip):
    path, intr, raws, stamps = db3_clip
    with open_source(str(path)) as source:
        assert source.num_frames is None and str(path) in source.name
        assert source.intrinsics.fx == pytest.approx(intr.fx, abs=1e-4)
        assert source.intrinsics.depth_scale == pytest.approx(intr.depth_scale, rel=1e-6)
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.source_id for f in frames] == ["0", "1", "2", "3", "4"]  # sensor frame numbers
    np.testing.assert_allclose([f.timestamp_ms for f in frames], stamps, atol=1e-6)  # ms
    scale_mm = np.float32(source.intrinsics.depth_scale * 1000)
    for frame, raw in zip(frames, raws):
        np.testing.assert_array_equal(frame.depth_mm, raw.astype(np.float32) * scale_mm)


def test_db3_loop_and_jsonl_labels(db3_clip, tmp_path):
    path, _, _, stamps = db3_clip
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"source_id": "2", "joints_xyz_mm": canonical_joints(0).tolist()}) + "\n")
    with open_source(str(path), loop=True, labels=str(labels)) as source:
        frames = [next(source) for _ in range(12)]
    assert [f.source_id for f in frames] == [str(i % 5) for i in range(12)]
    times = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[5] == pytest.approx(stamps[-1] + 1000 / 30)  # ms: the next pass follows one period later
    assert [f.labels is not None for f in frames[:5]] == [False, False, True, False, False]
    np.testing.assert_array_equal(frames[7].labels.xyz_mm, canonical_joints(0))


def test_db3_truncated_and_missing(db3_clip, tmp_path):
    path = db3_clip[0]
    data = path.read_bytes()
    bad = tmp_path / "cut.db3"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as info:
        open_source(str(bad))
    assert str(bad) in str(info.value)
    with pytest.raises(SourceError, match="recording not found: .*none.db3"):
        open_source(str(tmp_path / "none.db3"))


def test_close_stops_iteration_and_is_idempotent(db3_clip):
    source = open_source(str(db3_clip[0]))
    next(source)
    source.close()
    source.close()
    assert next(source, None) is None


def test_no_realsense_gives_one_line_source_error():
    rs = pytest.importorskip("pyrealsense2")
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense is connected")
    with pytest.raises(SourceError, match="^no RealSense device connected$"):
        open_source("realsense")
    with pytest.raises(SourceError, match="no RealSense device connected"):
        open_source("realsense:123456")


# ---------------------------------------------------------------------------- OpenNI2


def test_openni_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openni", None)  # import fails as if not installed
    with pytest.raises(SourceError, match="pip install openni.*OpenNI2"):
        open_source("openni")


class _FakeFrame:
    def __init__(self, index: int, depth: np.ndarray) -> None:
        self.frameIndex, self.timestamp = index, 1_000_000 + 33_333 * index  # µs
        self.height, self.width = depth.shape
        self._buffer = depth.copy()
        self.closed = False

    def get_buffer_as_uint16(self):
        return self._buffer.ravel()

    def close(self):
        self.closed = True


def fake_openni(frames: list[np.ndarray]) -> tuple[types.ModuleType, list]:
    """The subset of the ``openni`` package's openni2 API that the reader uses, playing frames."""
    read: list[_FakeFrame] = []
    log: list[str] = []

    class Stream:
        def start(self):
            log.append("start")

        def get_video_mode(self):
            return types.SimpleNamespace(resolutionX=64, resolutionY=48, fps=30, pixelFormat="100um")

        def get_horizontal_fov(self):
            return 2 * math.atan(32 / 40.0)  # fx = 40 px

        def get_vertical_fov(self):
            return 2 * math.atan(24 / 41.0)  # fy = 41 px

        def get_number_of_frames(self):
            return len(frames)

        def read_frame(self):
            frame = _FakeFrame(len(read), frames[len(read)])
            read.append(frame)
            return frame

        def close(self):
            log.append("stream closed")

    class Device:
        @classmethod
        def open_file(cls, path):
            log.append(f"open {path.decode()}")
            device = cls()
            device.playback = types.SimpleNamespace(set_speed=lambda s: log.append(f"speed {s}"),
                                                    set_repeat_enabled=lambda r: log.append(f"repeat {r}"))
            return device

        def create_depth_stream(self):
            return Stream()

        def close(self):
            log.append("device closed")

    openni2 = types.SimpleNamespace(
        is_initialized=lambda: True, initialize=lambda: None, Device=Device,
        PIXEL_FORMAT_DEPTH_100_UM="100um",
        wait_for_any_stream=lambda streams, timeout: streams[0] if len(read) < len(frames) else None)
    package = types.ModuleType("openni")
    package.openni2 = openni2
    return package, [read, log]


def test_openni_recording_through_the_package_api(monkeypatch, tmp_path):
    rng = np.random.default_rng(4)
    raws = [rng.integers(0, 30000, (48, 64), dtype=np.uint16) for _ in range(3)]
    package, (read, log) = fake_openni(raws)
    monkeypatch.setitem(sys.modules, "openni", package)
    oni = tmp_path / "clip.oni"
    oni.write_bytes(b"")
    with open_source(str(oni)) as source:
        intr = source.intrinsics
        assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == pytest.approx((40, 41, 32, 24, 64, 48))
        assert intr.depth_scale == 0.0001 and source.num_frames == 3
        frames = list(source)
    assert [f.source_id for f in frames] == ["0", "1", "2"]
    assert [f.timestamp_ms for f in frames] == pytest.approx([1000.0, 1033.333, 1066.666])  # ms
    for frame, raw in zip(frames, raws):
        np.testing.assert_array_equal(frame.depth_mm, raw.astype(np.float32) * np.float32(0.1))
    assert all(f.closed for f in read)  # every OpenNI frame released
    assert log == [f"open {oni}", "speed -1.0", "repeat False", "start", "stream closed", "device closed"]


# ---------------------------------------------------------------------------- synthetic


def test_synthetic_frames_are_labelled_and_seeded():
    pytest.importorskip("torch")
    spec = "synthetic:seed=3,frames=2,camera=sr305_640x480"
    with open_source(spec) as source:
        assert source.num_frames == 2 and source.intrinsics == get_preset("sr305_640x480").intrinsics
        frames = list(source)
    with open_source("synthetic:seed=3,frames=1,camera=sr305_640x480") as again:
        repeat = next(again)
    assert len(frames) == 2
    np.testing.assert_array_equal(repeat.depth_mm, frames[0].depth_mm)  # same seed, same frame
    for frame in frames:
        assert frame.labels.layout == "canonical" and frame.depth_mm.shape == (480, 640)
        assert np.isfinite(frame.depth_mm).all() and frame.depth_mm.min() >= 0
        # The hand is in the image: the joints' pixels see depth a few cm around them.
        uvd = project(frame.labels.xyz_mm, frame.intrinsics)
        u, v = np.round(uvd[:, :2]).astype(int).T
        inside = (u >= 0) & (u < 640) & (v >= 0) & (v < 480)
        seen = frame.depth_mm[v[inside], u[inside]]
        near = np.abs(seen - uvd[inside, 2]) < 40  # mm
        assert near.sum() >= 5, (seen, uvd[inside, 2])
