"""Build and cache a TensorRT engine for an exported hand engine, where TensorRT is present.

Two ways, tried in this order:

1. ONNX Runtime's TensorRT provider (what :class:`export.runtime.Engine` runs): opening the
   engine with it builds the TensorRT engine and stores it, with the timing cache, in the cache
   directory (``export.runtime.tensorrt_options``); later sessions load it in seconds.
2. The ``tensorrt`` Python package: parse the ONNX file and serialise a ``.engine`` file beside
   the cache (for tools that run TensorRT directly; the app uses 1.).

Where neither is there (a machine without an NVIDIA GPU, or without the TensorRT libraries),
:func:`tensorrt_backend` returns None and the command says so in one line.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from export.runtime import DEFAULT_WORKSPACE_BYTES, TENSORRT, Engine, provider_works, read_metadata


#: ONNX operators the TensorRT ONNX parser supports (onnx-tensorrt ``docs/operators.md``), the
#: subset that networks like ours can contain. Anything else in a graph is reported.
TENSORRT_OPS = frozenset("""
    Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant
    ConstantOfShape Conv ConvTranspose Cos CumSum Div Einsum Elu Equal Erf Exp Expand Flatten Floor
    Gather GatherElements GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
    HardSigmoid Identity LeakyRelu Less LessOrEqual Log MatMul Max MaxPool Min Mul Neg Not Or Pad Pow
    PRelu Range ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize Round ScatterElements ScatterND Shape Sigmoid Sign Sin Size Slice Softmax Softplus
    Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Unsqueeze Where
""".split())
MIN_OPSET = 17

#: Inputs that the TensorRT parser needs as constants (initializers): (operator, input index).
_CONSTANT_INPUTS = (("Conv", 1), ("ConvTranspose", 1), ("Slice", 3), ("Squeeze", 1), ("Unsqueeze", 1))


def tensorrt_blockers(model) -> list[str]:
    """Pure: what in an ``onnx.ModelProto`` would stop TensorRT's ONNX parser; [] when nothing.

    Checks the default-domain opset (>= 17), custom domains, operators outside
    :data:`TENSORRT_OPS`, and weights / axes that must be initializers.
    """
    problems = []
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx", 0) < MIN_OPSET:
        problems.append(f"opset {opsets.get('ai.onnx')} < {MIN_OPSET}")
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in model.graph.node:
        where = f"{node.op_type} node {node.name!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r}")
        elif node.op_type not in TENSORRT_OPS:
            problems.append(f"{where}: operator not in the TensorRT parser's list")
        for op, index in _CONSTANT_INPUTS:
            if node.op_type == op and len(node.input) > index and node.input[index] \
                    and node.input[index] not in constants:
                problems.append(f"{where}: input {index} must be a constant")
    return problems


def tensorrt_backend() -> str | None:
    """"onnxruntime" (the TensorRT provider loads), "tensorrt" (the package imports) or None."""
    if provider_works(TENSORRT):
        return "onnxruntime"
    if importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt"
    return None


def build_with_onnxruntime(onnx_path: Path, cache_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Open the engine on the TensorRT provider and run it once; returns the cache's files."""
    import numpy as np

    cache_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine(onnx_path, provider="tensorrt", trt_cache_dir=cache_dir, log=log)
    s = engine.metadata.input_size
    engine.run(np.ones((1, 1, s, s), dtype=np.float32))
    return sorted(p for p in cache_dir.iterdir() if p.is_file())


def build_with_tensorrt(onnx_path: Path, out_path: Path, max_batch: int = 64,
                        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> Path:
    """Serialise a TensorRT engine for ``onnx_path`` with the ``tensorrt`` package (TensorRT 10 API)."""
    import tensorrt as trt

    meta = read_metadata(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if meta.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if meta.batch is None:
        s = meta.input_size
        profile = builder.create_optimization_profile()
        profile.set_shape(meta.input_name, (1, 1, s, s), (1, 1, s, s), (max_batch, 1, s, s))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bytes(serialized))
    return out_path
