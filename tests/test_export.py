"""The exported engines: ONNX Runtime vs PyTorch parity on rendered crops, metadata round trip,
static and dynamic batches, provider choice, TensorRT options, file errors, the CLI.

Random-weight networks (with randomised batch-norm statistics and a livelier parameter head, so
the poses vary from crop to crop); every export is done once per module (each costs seconds).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calib import get_preset
from export.metadata import FORMAT, EngineMetadata, OutputSpec
from export.model_export import (
    ModelInfo, export_engine, export_params, summarise_checkpoint, variant_filename,
)
from export.runtime import (
    CPU, CUDA, TENSORRT, Engine, ProviderUnavailableError, choose_providers, describe_choice,
    provider_works, select_providers, tensorrt_options, working_providers,
)
from models.crop import BACKGROUND, FRONT, crop_depth
from models.joints import JOINT_NAMES, palm_centre
from models.nets import HandNet, NetConfig

INFO = ModelInfo("test", "0.1", {"data": "none (random weights)"}, "ab" * 32)
CAMERA = get_preset("sr300_320x240").intrinsics


# --------------------------------------------------------------------------- inputs and models


def rendered_crops(count: int, seed: int = 0) -> np.ndarray:
    """(count, 1, 96, 96) float32 crops: pose-bank hands rendered at 300-700 mm in random
    orientations through the app's crop, the last four a blank crop (all background), an
    all-front crop, uniform noise and a flat wall."""
    from models.geometry import axis_angle_to_matrix, matrix_to_axis_angle
    from models.hand_layer import HandLayer
    from models.posebank import load_posebank
    from models.render import raycast

    rng = np.random.default_rng(seed)
    n = count - 4
    bank = load_posebank()
    theta = torch.as_tensor(bank.theta[rng.choice(len(bank.theta), n)], dtype=torch.float64).clone()
    axis = rng.normal(size=(n, 3))
    angle = rng.uniform(0.0, np.pi, (n, 1))
    theta[:, 0:3] = torch.as_tensor(axis / np.linalg.norm(axis, axis=1, keepdims=True) * angle)
    theta[:, 0:3] = matrix_to_axis_angle(axis_angle_to_matrix(theta[:, 0:3]))
    theta[:, 3:6] = torch.as_tensor(np.c_[rng.uniform(-60, 60, (n, 2)), rng.uniform(300, 700, n)])
    beta = torch.as_tensor(rng.uniform(-1.0, 1.0, (n, 7)))
    layer = HandLayer(dtype=torch.float64)
    out = layer(theta, torch.ones(n, 6, dtype=torch.float64), beta)
    faces = layer.faces.numpy()
    crops = []
    for k in range(n):
        depth = raycast([(out.vertices[k].numpy(), faces)], CAMERA, threads=1).depth
        com = palm_centre(out.joints[k].numpy()) + rng.normal(0.0, 5.0, 3)  # mm, a finder's error
        crops.append(crop_depth(depth, CAMERA, com).patch)
    size = crops[0].shape
    crops += [np.full(size, BACKGROUND), np.full(size, FRONT), rng.uniform(-1, 1, size), np.full(size, 0.3)]
    return np.stack(crops)[:, None].astype(np.float32)


def random_net(method: str, seed: int = 0) -> HandNet:
    """A random-weight network with non-trivial batch-norm statistics (so folding them into the
    convolutions is tested) and, for layer models, a parameter head 100 times livelier than at
    initialisation (so the poses vary from crop to crop)."""
    torch.manual_seed(seed)
    net = HandNet(NetConfig(method=method))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        if net.cfg.uses_layer:  # bounded by sigmoids: poses stay within the limits
            getattr(net.head, "params", net.head).out.weight.mul_(100.0)   # dense_hps: head.params
    return net.eval()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return rendered_crops(100)


@pytest.fixture(scope="module")
def deephps() -> HandNet:
    return random_net("deephps")


@pytest.fixture(scope="module")
def sdnet() -> HandNet:
    return random_net("sdnet", seed=1)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def deephps_static(deephps, build):
    return export_engine(deephps, build / variant_filename("deephps"), INFO)


@pytest.fixture(scope="module")
def deephps_fp16(deephps, build):
    return export_engine(deephps, build / variant_filename("deephps", fp16=True), INFO, fp16=True)


@pytest.fixture(scope="module")
def sdnet_static(sdnet, build):
    return export_engine(sdnet, build / variant_filename("sdnet"), INFO)


@pytest.fixture(scope="module")
def sdnet_dynamic(sdnet, build):
    return export_engine(sdnet, build / variant_filename("sdnet", dynamic=True), INFO, dynamic=True)


def torch_mm(net: HandNet, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The network's joints and vertices in mm relative to the crop centre (cube 250 mm)."""
    with torch.no_grad():
        out = net(torch.from_numpy(crops))
    half = 125.0  # mm, cube/2
    return (out.joints.numpy() * half,
            None if out.vertices is None else out.vertices.numpy() * half)


def test_rendered_crops_look_like_hands(crops):
    assert crops.shape == (100, 1, 96, 96) and crops.dtype == np.float32
    hand = (crops[:96] < BACKGROUND).mean((1, 2, 3))
    assert np.all(hand > 0.02) and np.median(hand) > 0.08  # every crop shows a hand
    assert crops.min() >= FRONT and crops.max() <= BACKGROUND


# --------------------------------------------------------------------------- parity


def test_fp32_engine_matches_torch_on_100_crops(deephps, deephps_static, crops):
    engine = Engine(deephps_static, provider="cpu", log=None)
    joints, vertices = torch_mm(deephps, crops)
    assert np.ptp(joints[:, 8, :], axis=0).max() > 5.0  # mm: the poses differ between crops
    for k in range(len(crops)):
        out = engine.run(crops[k:k + 1])
        assert out.joints_mm.shape == (1, 21, 3) and out.vertices_mm.shape == (1, vertices.shape[1], 3)
        np.testing.assert_allclose(out.joints_mm[0], joints[k], rtol=0, atol=0.01)  # mm
        np.testing.assert_allclose(out.vertices_mm[0], vertices[k], rtol=0, atol=0.01)  # mm


def test_fp16_engine_is_within_half_a_millimetre(deephps, deephps_fp16, crops):
    engine = Engine(deephps_fp16, provider="cpu", log=None)
    assert engine.metadata.precision == "fp16"
    joints, vertices = torch_mm(deephps, crops)
    worst_j = worst_v = 0.0
    for k in range(len(crops)):
        out = engine.run(crops[k:k + 1])
        assert out.joints_mm.dtype == np.float32
        worst_j = max(worst_j, float(np.linalg.norm(out.joints_mm[0] - joints[k], axis=-1).max()))
        worst_v = max(worst_v, float(np.linalg.norm(out.vertices_mm[0] - vertices[k], axis=-1).max()))
    assert worst_j < 0.5 and worst_v < 0.5  # mm
    assert worst_j > 0.0  # the weights really are fp16


def test_dense_hps_engines_match_torch(build, crops):
    """The dense methods' graph (decoder, votes, and the layer beside them) in ONNX: fp32 within
    0.01 mm of torch, fp16 within 0.5 mm, joints and vertices."""
    net = random_net("dense_hps", seed=2)
    joints, vertices = torch_mm(net, crops[:20])
    assert np.ptp(joints[:, 8, :], axis=0).max() > 1.0  # mm: the votes differ between crops
    for fp16, tol in ((False, 0.01), (True, 0.5)):
        engine = Engine(export_engine(net, build / variant_filename("dense_hps", fp16=fp16), INFO, fp16=fp16),
                        provider="cpu", log=None)
        for k in range(20):
            out = engine.run(crops[k:k + 1])
            np.testing.assert_allclose(out.joints_mm[0], joints[k], rtol=0, atol=tol)  # mm
            np.testing.assert_allclose(out.vertices_mm[0], vertices[k], rtol=0, atol=tol)  # mm


def test_fp16_file_holds_fp16_weights(deephps_static, deephps_fp16):
    import onnx

    def kernel_types(path):  # of the convolutions, in graph order
        graph = onnx.load(str(path)).graph
        types = {t.name: onnx.TensorProto.DataType.Name(t.data_type) for t in graph.initializer}
        return [types[n.input[1]] for n in graph.node if n.op_type == "Conv"]

    assert set(kernel_types(deephps_static)) == {"FLOAT"}
    fp16 = kernel_types(deephps_fp16)
    assert fp16[0] == "FLOAT" and set(fp16[1:]) == {"FLOAT16"}  # the stem stays fp32
    assert deephps_fp16.stat().st_size < 0.7 * deephps_static.stat().st_size


def test_joint_only_dynamic_engine_matches_torch_in_one_batch(sdnet, sdnet_dynamic, crops):
    engine = Engine(sdnet_dynamic, provider="cpu", log=None)
    joints, vertices = torch_mm(sdnet, crops)
    assert vertices is None
    out = engine.run(crops)
    assert out.joints_mm.shape == (100, 21, 3) and out.vertices_mm is None
    np.testing.assert_allclose(out.joints_mm, joints, rtol=0, atol=0.01)  # mm
    for batch in (1, 3):
        assert engine.run(crops[:batch]).joints_mm.shape == (batch, 21, 3)


def test_hand3d_engine_builds_its_tsdf_inside(build, crops):
    net = random_net("hand3d", seed=2)
    joints, _ = torch_mm(net, crops)
    for fp16, tol in ((False, 0.01), (True, 0.5)):  # mm
        path = export_engine(net, build / variant_filename("hand3d", fp16=fp16), INFO, fp16=fp16)
        engine = Engine(path, provider="cpu", log=None)
        assert engine.metadata.method == "hand3d" and not engine.metadata.has_vertices
        for k in range(0, len(crops), 5):
            np.testing.assert_allclose(engine.run(crops[k:k + 1]).joints_mm[0], joints[k], rtol=0, atol=tol)


def test_static_and_dynamic_batch_shapes(sdnet_static, sdnet_dynamic, crops):
    static = Engine(sdnet_static, provider="cpu", log=None)
    dynamic = Engine(sdnet_dynamic, provider="cpu", log=None)
    assert static.session.get_inputs()[0].shape == [1, 1, 96, 96]
    assert isinstance(dynamic.session.get_inputs()[0].shape[0], str)
    assert static.metadata.batch == 1 and dynamic.metadata.batch is None
    assert static.metadata.input_shape == (1, 1, 96, 96)
    assert dynamic.metadata.outputs[0].shape == ("batch", 21, 3)
    with pytest.raises(ValueError, match="batch 1"):
        static.run(crops[:2])
    np.testing.assert_allclose(static.run(crops[:1]).joints_mm, dynamic.run(crops[:1]).joints_mm, atol=1e-3)


def test_graph_without_the_layer_ends_at_its_parameters(deephps, build, crops):
    import onnxruntime as ort

    path = export_params(deephps, build / "params.onnx")
    session = ort.InferenceSession(str(path), providers=[CPU])
    assert [o.name for o in session.get_outputs()] == ["theta", "alpha", "beta", "rotation"]
    with torch.no_grad():
        ref = deephps(torch.from_numpy(crops[:1]))
    theta, alpha, beta, rotation = session.run(None, {"patch": crops[:1]})
    np.testing.assert_allclose(theta, ref.theta.numpy(), atol=1e-4)  # rad / mm
    np.testing.assert_allclose(rotation, ref.rotation.numpy(), atol=1e-5)
    np.testing.assert_allclose(alpha, ref.alpha.numpy(), atol=1e-5)
    np.testing.assert_allclose(beta, ref.beta.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="no hand layer"):
        export_params(random_net("sdnet"), build / "never.onnx")


# --------------------------------------------------------------------------- metadata


def test_metadata_round_trip_through_the_file(deephps, deephps_static, sdnet_static):
    from models.train import hand_vertex_mask

    meta = Engine(deephps_static, provider="cpu", log=None).metadata
    assert isinstance(meta, EngineMetadata)
    np.testing.assert_array_equal(meta.faces, deephps.head.layer.faces.numpy())
    np.testing.assert_array_equal(meta.hand_vertex_mask, hand_vertex_mask().numpy())
    assert meta.joint_names == tuple(JOINT_NAMES)
    assert (meta.name, meta.version, meta.method, meta.precision) == ("test", "0.1", "deephps", "fp32")
    assert meta.net_config == deephps.cfg.to_dict()
    assert (meta.input_name, meta.input_size, meta.cube_mm) == ("patch", 96, 250.0)  # px, mm
    assert (meta.background, meta.front) == (BACKGROUND, FRONT)
    assert meta.output_names == ("joints", "vertices") and {o.units for o in meta.outputs} == {"mm"}
    assert meta.outputs[1].shape == (1, 1185, 3)
    assert meta.training == INFO.training and meta.weights_sha256 == INFO.weights_sha256
    joint_only = Engine(sdnet_static, provider="cpu", log=None).metadata
    assert joint_only.faces is None and joint_only.hand_vertex_mask is None and not joint_only.has_vertices


def test_metadata_props_are_json_and_checked():
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    meta = EngineMetadata("m", "1", "deephps", {"method": "deephps"}, "fp32", None, "patch", 96, 250.0, 1.0, -1.0,
                          (OutputSpec("joints", ("batch", 21, 3)), OutputSpec("vertices", ("batch", 4, 3))),
                          tuple(JOINT_NAMES), faces, np.array([1, 1, 0, 1], bool), {"steps": 3}, "00")
    props = meta.to_props()
    assert json.loads(props["format"]) == FORMAT and all(isinstance(v, str) for v in props.values())
    back = EngineMetadata.from_props(props)
    assert back == meta
    np.testing.assert_array_equal(back.faces, faces)
    np.testing.assert_array_equal(back.hand_vertex_mask, [True, True, False, True])
    with pytest.raises(ValueError, match="no hand-engine metadata"):
        EngineMetadata.from_props({})
    with pytest.raises(ValueError, match="'crop' missing"):
        EngineMetadata.from_props({k: v for k, v in props.items() if k != "crop"})
    with pytest.raises(ValueError, match="not JSON"):
        EngineMetadata.from_props({**props, "faces": "[[0, 1"})
    with pytest.raises(ValueError, match="format"):
        EngineMetadata.from_props({**props, "format": '"other/2"'})
    with pytest.raises(ValueError, match="crop size"):
        EngineMetadata.from_props({**props, "crop": props["crop"].replace('"size":96', '"size":128')})
    with pytest.raises(ValueError, match="faces"):
        EngineMetadata.from_props({**props, "faces": "null"})


def test_checkpoint_summary_prefers_the_card():
    from pathlib import Path

    ckpt = {"net": {}, "model": {}, "step": 16000, "elapsed_s": 3600.0,
            "train": {"name": "deephps", "train": "data/synth/train", "steps": 16000}}
    info = summarise_checkpoint(ckpt, Path("runs/deephps/last.pt"), "0123456789abcdef" * 4)
    assert (info.name, info.version) == ("deephps", "step16000-01234567")
    assert info.training["data"] == "data/synth/train" and info.training["step"] == 16000
    card = {"name": "deephps-v1", "version": "1.0", "data": "200k synthetic frames", "val_joints_mm": 9.1}
    info = summarise_checkpoint({**ckpt, "card": card}, Path("models/weights/deephps.pt"), "ff" * 32)
    assert (info.name, info.version) == ("deephps-v1", "1.0")
    assert info.training == {"data": "200k synthetic frames", "val_joints_mm": 9.1}
    assert summarise_checkpoint({"net": {}, "model": {}}, Path("w/sdnet.pt"), "ee" * 32).name == "sdnet"


# --------------------------------------------------------------------------- providers


def test_choose_providers_orders_tensorrt_cuda_cpu():
    assert choose_providers("auto", [TENSORRT, CUDA, CPU]) == [TENSORRT, CUDA, CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", []) == [CPU]
    assert choose_providers("cpu", [TENSORRT, CUDA, CPU]) == [CPU]
    assert choose_providers("cuda", [TENSORRT, CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("tensorrt", [TENSORRT, CPU]) == [TENSORRT, CPU]
    with pytest.raises(ProviderUnavailableError, match="CUDA does not load"):
        choose_providers("cuda", [CPU])
    with pytest.raises(ProviderUnavailableError, match="TensorRT does not load"):
        choose_providers("tensorrt", [CUDA, CPU])
    with pytest.raises(ValueError, match="expected one of"):
        choose_providers("gpu", [CPU])
    assert describe_choice("auto", [CPU], [CPU]) == \
        "onnxruntime providers: CPU (asked: auto; TensorRT and CUDA not usable here)"


def test_select_providers_probes_quietly_and_prints_one_line(capfd):
    provider_works.cache_clear()  # probe inside the capture: no error output may escape
    chosen = select_providers("auto")
    out, err = capfd.readouterr()
    assert err == "" and out.count("\n") == 1 and out.startswith("onnxruntime providers: ")
    names = [p[0] if isinstance(p, tuple) else p for p in chosen]
    assert names == working_providers() and names[-1] == CPU
    if not (provider_works(CUDA) or provider_works(TENSORRT)):  # this machine: no GPU
        assert chosen == [CPU]
    assert select_providers("cpu", log=None) == [CPU]


def test_tensorrt_options():
    assert tensorrt_options("/tmp/trt", fp16=True) == {
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/trt",
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": "/tmp/trt",
        "trt_fp16_enable": "1",
        "trt_max_workspace_size": str(2 << 30),
        "trt_builder_optimization_level": "3",
    }
    dynamic = tensorrt_options("/tmp/trt", input_name="patch", input_size=96, max_batch=64, cache_prefix="deephps")
    assert dynamic["trt_fp16_enable"] == "0" and dynamic["trt_engine_cache_prefix"] == "deephps"
    assert dynamic["trt_profile_min_shapes"] == "patch:1x1x96x96"
    assert dynamic["trt_profile_opt_shapes"] == "patch:1x1x96x96"
    assert dynamic["trt_profile_max_shapes"] == "patch:64x1x96x96"
    with pytest.raises(ValueError):
        tensorrt_options(workspace_bytes=0)
    with pytest.raises(ValueError):
        tensorrt_options(max_batch=8)


def test_engines_pass_the_tensorrt_parser_check(deephps_static, deephps_fp16, sdnet_dynamic):
    import onnx
    from onnx import TensorProto, helper

    from export.trt_build import tensorrt_blockers

    for path in (deephps_static, deephps_fp16, sdnet_dynamic):
        assert tensorrt_blockers(onnx.load(str(path))) == [], path
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("NonZero", ["c"], ["n"], name="nz"),
             helper.make_node("Mine", ["c"], ["y"], name="mine", domain="my.ops")]
    bad = helper.make_model(helper.make_graph(nodes, "bad", [x, w], [y]),
                            opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("my.ops", 1)])
    problems = tensorrt_blockers(bad)
    assert problems == ["opset 13 < 17", "Conv node 'conv': input 1 must be a constant",
                        "NonZero node 'nz': operator not in the TensorRT parser's list",
                        "Mine node 'mine': custom domain 'my.ops'"]


# --------------------------------------------------------------------------- errors


def test_missing_corrupt_and_foreign_files(tmp_path, sdnet_static):
    import onnx

    with pytest.raises(FileNotFoundError, match="engine not found"):
        Engine(tmp_path / "missing.onnx", log=None)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not an onnx model" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX file"):
        Engine(corrupt, log=None)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(sdnet_static.read_bytes()[:5000])
    with pytest.raises(ValueError, match=str(truncated)):
        Engine(truncated, log=None)
    foreign = onnx.load(str(sdnet_static))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="no hand-engine metadata"):
        Engine(tmp_path / "foreign.onnx", log=None)


def test_wrong_input_size_is_reported(tmp_path, sdnet_static, crops):
    import onnx

    model = onnx.load(str(sdnet_static))
    for p in model.metadata_props:  # metadata claiming 128 px crops on a 96 px graph
        if p.key in ("input", "crop"):
            p.value = p.value.replace("96", "128")
    onnx.save(model, str(tmp_path / "lying.onnx"))
    with pytest.raises(ValueError, match="does not match the metadata"):
        Engine(tmp_path / "lying.onnx", provider="cpu", log=None)
    engine = Engine(sdnet_static, provider="cpu", log=None)
    with pytest.raises(ValueError, match=r"expected shape \(B, 1, 96, 96\)"):
        engine.run(np.zeros((1, 1, 128, 128), np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        engine.run(crops[0])
    with pytest.raises(TypeError, match="float"):
        engine.run(np.zeros((1, 1, 96, 96), np.int16))
    assert engine.run(crops[:1].astype(np.float64)).joints_mm.dtype == np.float32


# --------------------------------------------------------------------------- command line and bench


def test_cli_model_tensorrt_and_bench(tmp_path, sdnet, capsys):
    from export.__main__ import main
    from export.trt_build import tensorrt_backend

    weights = tmp_path / "sdnet_run" / "last.pt"
    weights.parent.mkdir()
    torch.save({"net": sdnet.cfg.to_dict(), "model": sdnet.state_dict(), "step": 7,
                "train": {"name": "sdnet", "train": "data/synth/train"}}, weights)
    assert main(["model", "--weights", str(weights), "--out", str(tmp_path), "--static"]) == 0
    path = tmp_path / "sdnet.onnx"
    meta = Engine(path, provider="cpu", log=None).metadata
    assert meta.version.startswith("step7-") and meta.training["step"] == 7
    assert not (tmp_path / "sdnet.dynamic.onnx").exists()
    capsys.readouterr()
    if tensorrt_backend() is None:  # this machine: one line, exit 0, nothing built
        assert main(["tensorrt", "--onnx", str(path), "--cache", str(tmp_path / "trt")]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and "TensorRT is not available here" in out
        assert not (tmp_path / "trt").exists()
    assert main(["bench", "--onnx", str(path), "--runs", "5", "--warmup", "1", "--provider", "cpu",
                 "--json", str(tmp_path / "bench.json")]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["provider"] for r in rows] == ["CPU"] and rows[0]["latency"]["runs"] == 5
    assert main(["model", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_latency_stats():
    from export.bench import latency_stats

    t = latency_stats([0.001] * 98 + [0.002, 0.010])  # s
    assert t.median_ms == pytest.approx(1.0) and t.min_ms == pytest.approx(1.0) and t.runs == 100
    assert 1.0 < t.p99_ms < 10.0 and t.mean_ms == pytest.approx(1.1)
    with pytest.raises(ValueError):
        latency_stats([])
