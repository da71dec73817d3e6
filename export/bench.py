"""Latency of the exported engines at batch 1, per ONNX Runtime provider, with and without the hand layer.

Each graph is timed alone in its own session: ``warmup`` runs, then ``runs`` timed runs of
``session.run`` on one (1, 1, S, S) float32 patch (wall clock, ``time.perf_counter``); we
report the median, the 99th percentile, the mean and the minimum in milliseconds. The CPU
provider runs with ``threads`` intra-op threads (2 by default, as in the app).

"Without the hand layer" is the same network up to the layer's inputs (θ, α, β and the
root rotation; ``export.model_export.ParamsGraph``); for joint-only networks there is no layer
and only one graph.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from export.runtime import (
    CPU, DEFAULT_THREADS, SHORT_NAMES, TENSORRT, make_session, select_providers, tensorrt_options,
)


@dataclass(frozen=True)
class Latency:
    """Statistics of ``runs`` timed calls, milliseconds."""

    median_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int


@dataclass(frozen=True)
class BenchRow:
    provider: str
    graph: str
    path: str
    latency: Latency


def latency_stats(times_s: Sequence[float]) -> Latency:
    """Pure: seconds per call -> :class:`Latency` in ms."""
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times_s: expected a non-empty 1-D sequence, got shape {t.shape}")
    return Latency(float(np.median(t)), float(np.percentile(t, 99)), float(t.mean()), float(t.min()), int(t.size))


def time_session(session: Any, feed: dict[str, np.ndarray], runs: int, warmup: int) -> Latency:
    """Time ``session.run(None, feed)``: ``warmup`` untimed calls, then ``runs`` timed ones."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs >= 1 and warmup >= 0 expected, got {runs}, {warmup}")
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times[i] = time.perf_counter() - t0
    return latency_stats(times)


def bench_graphs(graphs: dict[str, Path], request: str = "auto", runs: int = 1000, warmup: int = 50,
                 threads: int = DEFAULT_THREADS, input_size: int = 96, input_name: str = "patch",
                 log: Callable[[str], None] | None = print) -> list[BenchRow]:
    """Time each graph (label -> ONNX path) on each provider that ``request`` selects."""
    providers = select_providers(request, log=log)
    rng = np.random.default_rng(0)
    feed = {input_name: rng.uniform(-1.0, 1.0, (1, 1, input_size, input_size)).astype(np.float32)}
    rows = []
    for entry in providers:
        name = entry[0] if isinstance(entry, tuple) else entry
        for label, path in graphs.items():
            first = (TENSORRT, tensorrt_options(cache_prefix=Path(path).stem.replace(".", "_"))) \
                if name == TENSORRT else name
            session = make_session(path, [first] if name == CPU else [first, CPU], threads)
            rows.append(BenchRow(SHORT_NAMES[name], label, str(path), time_session(session, feed, runs, warmup)))
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """Pure: the rows as an aligned text table."""
    head = f"{'provider':<9} {'graph':<40} {'median ms':>9} {'p99 ms':>8} {'mean ms':>8} {'min ms':>7} {'runs':>5}"
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r.latency
        lines.append(f"{r.provider:<9} {r.graph:<40} {t.median_ms:9.3f} {t.p99_ms:8.3f} {t.mean_ms:8.3f} "
                     f"{t.min_ms:7.3f} {t.runs:5d}")
    return "\n".join(lines)


def write_json(rows: Sequence[BenchRow], path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**(extra or {}), "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return path
