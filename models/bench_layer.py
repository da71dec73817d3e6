"""CPU time of the hand layer: ``python -m models.bench_layer [--repeats 5]``.

Prints, for batch 1 and batch 256, the median over ``--repeats`` rounds of each round's
median per-call time, in torch (float32, no grad) and in ONNX Runtime (CPU provider).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _time(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--onnx", type=Path, default=None, help="existing layer ONNX (else exported to a temp dir)")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from export.onnx_export import export_hand_layer
    from models.hand_layer import HandLayer

    torch.set_num_threads(args.threads)
    layer = HandLayer().eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_hand_layer(Path(tmp) / "hand_layer.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        print(f"hand layer, {layer.num_vertices} vertices; CPU: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, {args.threads} threads; median of {args.repeats} rounds")
        print(f"{'batch':>6} {'torch ms':>10} {'onnxruntime ms':>15}")
        for batch, calls in ((1, 300), (256, 20)):
            theta = rng.normal(0.0, 0.3, (batch, 26)).astype(np.float32)
            alpha = np.ones((batch, 6), np.float32)
            beta = np.zeros((batch, 7), np.float32)
            tt = [torch.as_tensor(x) for x in (theta, alpha, beta)]
            feeds = {"theta": theta, "alpha": alpha, "beta": beta}
            with torch.inference_mode():
                for _ in range(10):
                    layer(*tt)
                    session.run(None, feeds)
                torch_ms = statistics.median(_time(lambda: layer(*tt), calls) for _ in range(args.repeats))
            ort_ms = statistics.median(_time(lambda: session.run(None, feeds), calls) for _ in range(args.repeats))
            print(f"{batch:>6} {torch_ms:>10.3f} {ort_ms:>15.3f}")


if __name__ == "__main__":
    main()
