"""Run an exported hand engine with ONNX Runtime: provider choice in one place, and :class:`Engine`.

Providers, best first: TensorRT, CUDA, CPU. Which ones are usable is decided at run time
from what actually loads: ``onnxruntime-gpu`` lists the CUDA and TensorRT providers even
where their libraries (CUDA, cuDNN, TensorRT) are missing, so each is tried once per process
in a one-node session, with its error output silenced, and kept only if the session really
got it (:func:`provider_works`). :func:`select_providers` then prints one line with the choice.

TensorRT options come from the pure :func:`tensorrt_options`: engine and timing caches under
``export/build/trt_cache`` (the first session builds the engine, later ones load it in
seconds), fp16 for fp16 engines, a workspace limit, and an optimisation profile for a
dynamic batch.

Threads: the CPU provider uses ``threads`` intra-op threads (default 2: the live app runs
capture and drawing on other threads; this is also what the benchmark measures) and one
inter-op thread.

Units: :class:`EngineOutput` in millimetres, camera axes (x right, y down, z forward),
relative to the crop centre (see ``export.metadata``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from export.metadata import EngineMetadata

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ORDER = (TENSORRT, CUDA, CPU)
SHORT_NAMES = {TENSORRT: "TensorRT", CUDA: "CUDA", CPU: "CPU"}

#: Which providers each request may use, best first. "tensorrt" keeps CUDA and CPU behind
#: TensorRT for the nodes it does not take.
REQUESTS: dict[str, tuple[str, ...]] = {
    "auto": PROVIDER_ORDER,
    "tensorrt": PROVIDER_ORDER,
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}

DEFAULT_TRT_CACHE = Path(__file__).resolve().parent / "build" / "trt_cache"
DEFAULT_THREADS = 2
DEFAULT_WORKSPACE_BYTES = 2 << 30
DEFAULT_MAX_BATCH = 64


class ProviderUnavailableError(RuntimeError):
    """An explicitly requested provider (``cuda``, ``tensorrt``) does not load here."""


class EngineOutput(NamedTuple):
    """joints_mm (B, 21, 3) float32 and vertices_mm (B, V, 3) float32 or None: mm, camera
    axes, relative to the crop centre (add com_mm for camera coordinates)."""

    joints_mm: np.ndarray
    vertices_mm: np.ndarray | None


# --------------------------------------------------------------------------- providers


def choose_providers(request: str, working: Sequence[str]) -> list[str]:
    """Pure: the providers of ``request`` that are in ``working``, best first.

    Raises ValueError for an unknown request and :class:`ProviderUnavailableError` when the
    request names a provider (``cuda``, ``tensorrt``) that is not working.
    """
    if request not in REQUESTS:
        raise ValueError(f"provider: expected one of {sorted(REQUESTS)}, got {request!r}")
    chosen = [p for p in REQUESTS[request] if p in working or p == CPU]
    wanted = REQUESTS[request][0]
    if request != "auto" and chosen[0] != wanted:
        raise ProviderUnavailableError(
            f"provider {request!r} asked for, but {SHORT_NAMES[wanted]} does not load here "
            f"(working: {', '.join(SHORT_NAMES[p] for p in working) or 'CPU only'}); use 'auto' or 'cpu'")
    return chosen


def _probe_model() -> bytes:
    """A one-node (Identity) ONNX model, serialised."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime we support
    return model.SerializeToString()


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null (ONNX Runtime writes its provider-loading
    errors from C++ and from Python); restored afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield  # Python-level writes too, where sys.stdout is not file descriptor 1 (pytest)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@functools.cache
def provider_works(name: str) -> bool:
    """True when an ONNX Runtime session really gets ``name`` (tried once per process, quietly)."""
    import onnxruntime as ort

    if name == CPU:
        return True
    if name not in ort.get_available_providers():
        return False
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        with _silenced():
            session = ort.InferenceSession(_probe_model(), options, providers=[name, CPU])
    except Exception:  # noqa: BLE001 -- any failure means "not usable here"
        return False
    return name in session.get_providers()


def working_providers(candidates: Sequence[str] = PROVIDER_ORDER) -> list[str]:
    """The ``candidates`` that load here, in their order."""
    return [p for p in candidates if provider_works(p)]


def tensorrt_options(cache_dir: str | Path = DEFAULT_TRT_CACHE, *, fp16: bool = False,
                     workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, input_name: str | None = None,
                     input_size: int | None = None, max_batch: int | None = None,
                     cache_prefix: str | None = None) -> dict[str, str]:
    """Pure: ONNX Runtime TensorRT provider options (all values strings).

    Engine cache and timing cache in ``cache_dir``; ``fp16`` lets TensorRT use fp16 kernels;
    ``workspace_bytes`` caps its scratch memory. For a dynamic-batch engine give
    ``input_name``, ``input_size`` (S) and ``max_batch``: one optimisation profile from batch 1
    (the optimum) to ``max_batch``. ``cache_prefix`` names the cached engine files.
    """
    if workspace_bytes <= 0:
        raise ValueError(f"workspace_bytes: expected > 0, got {workspace_bytes}")
    cache = str(Path(cache_dir))
    options = {
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": "1" if fp16 else "0",
        "trt_max_workspace_size": str(int(workspace_bytes)),
        "trt_builder_optimization_level": "3",
    }
    if cache_prefix:
        options["trt_engine_cache_prefix"] = cache_prefix
    if max_batch is not None:
        if input_name is None or input_size is None or max_batch < 1:
            raise ValueError("a dynamic-batch profile needs input_name, input_size and max_batch >= 1")
        shape = f"1x{input_size}x{input_size}"
        options["trt_profile_min_shapes"] = f"{input_name}:1x{shape}"
        options["trt_profile_opt_shapes"] = f"{input_name}:1x{shape}"
        options["trt_profile_max_shapes"] = f"{input_name}:{max_batch}x{shape}"
    return options


def describe_choice(request: str, chosen: Sequence[str], working: Sequence[str]) -> str:
    """Pure: the one line :func:`select_providers` prints."""
    missing = [SHORT_NAMES[p] for p in REQUESTS[request] if p not in working and p != CPU]
    line = f"onnxruntime providers: {' > '.join(SHORT_NAMES[p] for p in chosen)} (asked: {request}"
    return line + (f"; {' and '.join(missing)} not usable here)" if missing else ")")


def select_providers(request: str = "auto", trt_options: dict[str, str] | None = None,
                     log: Callable[[str], None] | None = print) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime providers for ``request`` ("auto", "cpu", "cuda", "tensorrt"), best first.

    TensorRT comes with ``trt_options`` (default :func:`tensorrt_options`). Prints one line
    with the choice through ``log`` (None: silent). Raises ValueError for an unknown request
    and :class:`ProviderUnavailableError` when an explicitly named provider does not load.
    """
    if request not in REQUESTS:
        raise ValueError(f"provider: expected one of {sorted(REQUESTS)}, got {request!r}")
    working = working_providers(REQUESTS[request])  # "cpu" probes nothing
    chosen = choose_providers(request, working)
    if log is not None:
        log(describe_choice(request, chosen, working))
    return [(p, trt_options if trt_options is not None else tensorrt_options()) if p == TENSORRT else p
            for p in chosen]


def make_session(path: str | Path, providers: Sequence[Any], threads: int = DEFAULT_THREADS) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``path`` with ``threads`` intra-op threads,
    one inter-op thread and every graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=list(providers))


# --------------------------------------------------------------------------- the engine


def read_metadata(path: str | Path) -> EngineMetadata:
    """The :class:`EngineMetadata` of an engine file. FileNotFoundError for a missing file,
    ValueError for a file that is not ONNX or carries no (or bad) hand-engine metadata."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"engine not found: {path} (export one with `python -m export model`)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 -- protobuf raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ValueError(f"{path}: not a readable ONNX file (empty graph)")
    return EngineMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def check_graph_io(session: Any, meta: EngineMetadata, source: str) -> None:
    """The session's input and outputs are the ones the metadata describes (ValueError if not)."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != meta.input_name:
        raise ValueError(f"{source}: expected one input {meta.input_name!r}, got {[i.name for i in inputs]}")
    shape = list(inputs[0].shape)
    if len(shape) != 4 or shape[1:] != [1, meta.input_size, meta.input_size]:
        raise ValueError(f"{source}: input shape {shape} does not match the metadata's "
                         f"(B, 1, {meta.input_size}, {meta.input_size})")
    if (meta.batch == 1) != (shape[0] == 1):
        raise ValueError(f"{source}: input batch {shape[0]} does not match the metadata's {meta.batch or 'dynamic'}")
    outputs = tuple(o.name for o in session.get_outputs())
    if outputs != meta.output_names:
        raise ValueError(f"{source}: outputs {outputs}, metadata says {meta.output_names}")


class Engine:
    """One exported hand engine: ``Engine(path).run(patch) -> EngineOutput``.

    path: an ONNX file written by ``python -m export model``.
    provider: "auto" (TensorRT > CUDA > CPU, whichever loads), "cpu", "cuda" or "tensorrt".
    threads: intra-op threads of the CPU provider.
    Attributes: ``metadata`` (:class:`EngineMetadata`), ``provider`` (the provider the session
    runs on first, e.g. "CPUExecutionProvider"), ``path``.
    Raises FileNotFoundError / ValueError for a missing, corrupt or foreign file and
    :class:`ProviderUnavailableError` for a named provider that does not load.
    Not thread-safe to reconfigure; ``run`` may be called from one worker thread.
    """

    def __init__(self, path: str | Path, provider: str = "auto", threads: int = DEFAULT_THREADS,
                 trt_cache_dir: str | Path = DEFAULT_TRT_CACHE, log: Callable[[str], None] | None = print) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        meta = self.metadata
        trt = tensorrt_options(
            trt_cache_dir, fp16=meta.precision == "fp16", cache_prefix=self.path.stem.replace(".", "_"),
            input_name=meta.input_name, input_size=meta.input_size,
            max_batch=None if meta.batch == 1 else DEFAULT_MAX_BATCH)
        providers = select_providers(provider, trt, log)
        try:
            self.session = make_session(self.path, providers, threads)
        except Exception as exc:  # noqa: BLE001 -- onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from None
        check_graph_io(self.session, meta, str(self.path))
        self.provider: str = self.session.get_providers()[0]

    def check_patch(self, patch: Any) -> np.ndarray:
        """``patch`` as a C-contiguous (B, 1, S, S) float32 array; TypeError / ValueError if it cannot be."""
        x = np.asarray(patch)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"patch: expected a float array, got {x.dtype}")
        s = self.metadata.input_size
        if x.ndim != 4 or x.shape[1:] != (1, s, s) or x.shape[0] < 1:
            raise ValueError(f"patch: expected shape (B, 1, {s}, {s}), got {x.shape}")
        if self.metadata.batch == 1 and x.shape[0] != 1:
            raise ValueError(f"patch: this engine takes batch 1, got {x.shape[0]} "
                             f"(use the .dynamic.onnx variant for batches)")
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, patch: Any) -> EngineOutput:
        """patch (B, 1, S, S) float32 normalised depth (``models.crop``) -> :class:`EngineOutput`."""
        x = self.check_patch(patch)
        values = dict(zip(self.metadata.output_names, self.session.run(None, {self.metadata.input_name: x})))
        return EngineOutput(values["joints"], values.get("vertices"))

    def __repr__(self) -> str:
        m = self.metadata
        return (f"Engine({str(self.path)!r}, {m.name} {m.version}, {m.method}, {m.precision}, "
                f"batch {m.batch or 'dynamic'}, {SHORT_NAMES.get(self.provider, self.provider)})")
