"""``python -m export``: turn models into ONNX engines, build TensorRT engines, time them.

    python -m export layer [--out export/build/hand_layer.onnx] [--static]
    python -m export model --weights PATH [--out DIR] [--name NAME] [--static|--dynamic] [--fp16]
    python -m export tensorrt (--weights PATH | --onnx PATH) [--cache DIR]
    python -m export bench [--onnx PATH | --weights PATH | --method M] [--runs 1000] [--provider auto]
                           [--threads 2] [--json OUT]

``model`` writes <name>.onnx (static batch 1, the live path) and <name>.dynamic.onnx (dynamic
batch) unless --static or --dynamic picks one; --fp16 adds the fp16 variant of each
(<name>.fp16.onnx, <name>.dynamic.fp16.onnx). See export/README_SECTION.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "build"


def _add_parsers(sub: argparse._SubParsersAction) -> None:
    layer = sub.add_parser("layer", help="export the hand pose-and-shape layer")
    layer.add_argument("--out", type=Path, default=DEFAULT_DIR / "hand_layer.onnx")
    layer.add_argument("--static", action="store_true", help="batch fixed to 1 (live path)")

    model = sub.add_parser("model", help="export a trained network (hand layer inside) as ONNX engines")
    model.add_argument("--weights", type=Path, required=True, nargs="+",
                       help="checkpoints (runs/.../last.pt) or weights files; several rebuild them all")
    model.add_argument("--out", type=Path, default=DEFAULT_DIR, help="output directory")
    model.add_argument("--name", help="file name stem (default: the model's name)")
    batch = model.add_mutually_exclusive_group()
    batch.add_argument("--static", action="store_true", help="only the batch-1 engine <name>.onnx")
    batch.add_argument("--dynamic", action="store_true", help="only the dynamic-batch engine <name>.dynamic.onnx")
    model.add_argument("--fp16", action="store_true", help="also write the fp16 variant(s)")

    trt = sub.add_parser("tensorrt", help="build and cache a TensorRT engine (where TensorRT is present)")
    src = trt.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="export this model first (static batch 1)")
    src.add_argument("--onnx", type=Path, help="an engine written by `python -m export model`")
    trt.add_argument("--cache", type=Path, default=DEFAULT_DIR / "trt_cache", help="engine and timing cache")

    bench = sub.add_parser("bench", help="latency at batch 1 per provider, with and without the hand layer")
    src = bench.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="time this engine only")
    src.add_argument("--weights", type=Path, help="export this model (with and without its layer) and time it")
    src.add_argument("--method", default="deephps",
                     help="without --onnx/--weights: a random-weight network of this method (default deephps)")
    bench.add_argument("--runs", type=int, default=1000)
    bench.add_argument("--warmup", type=int, default=50)
    bench.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"))
    bench.add_argument("--threads", type=int, default=2, help="intra-op threads of the CPU provider")
    bench.add_argument("--json", type=Path, help="also write the results here")


def _model(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from export.model_export import export_variants, load_for_export

    import onnx

    from export.trt_build import tensorrt_blockers

    if args.name and len(args.weights) > 1:
        print("error: --name names one model; give one --weights file with it", file=sys.stderr)
        return 2
    for weights in args.weights:
        net, info = load_for_export(weights)
        if args.name:
            info = replace(info, name=args.name)
        paths = export_variants(net, info, args.out, static=not args.dynamic, dynamic=not args.static,
                                fp16=args.fp16)
        for path in paths:
            blockers = tensorrt_blockers(onnx.load(str(path)))
            check = "TensorRT parser check ok" if not blockers else f"TensorRT blockers: {'; '.join(blockers)}"
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB; {info.name} {info.version}, "
                  f"{net.cfg.method}; {check})")
    return 0


def _tensorrt(args: argparse.Namespace) -> int:
    from export.trt_build import build_with_onnxruntime, build_with_tensorrt, tensorrt_backend

    backend = tensorrt_backend()
    if backend is None:
        print("TensorRT is not available here (the onnxruntime TensorRT provider does not load and the "
              "`tensorrt` package is not installed): nothing built")
        return 0
    onnx_path = args.onnx
    if args.weights is not None:
        from export.model_export import export_variants, load_for_export

        net, info = load_for_export(args.weights)
        onnx_path = export_variants(net, info, DEFAULT_DIR, static=True, dynamic=False)[0]
    if backend == "onnxruntime":
        files = build_with_onnxruntime(onnx_path, args.cache)
        print(f"TensorRT engine for {onnx_path} cached in {args.cache} ({len(files)} files)")
    else:
        out = build_with_tensorrt(onnx_path, args.cache / (onnx_path.stem + ".engine"))
        print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import platform

    from export.bench import bench_graphs, format_table, write_json

    with tempfile.TemporaryDirectory() as tmp:
        if args.onnx is not None:
            from export.runtime import read_metadata

            meta = read_metadata(args.onnx)
            graphs, source, size = {"engine (as exported)": args.onnx}, str(args.onnx), meta.input_size
        else:
            from export.model_export import ModelInfo, export_engine, export_params, load_for_export
            from models.nets import HandNet, NetConfig

            if args.weights is not None:
                net, info = load_for_export(args.weights)
                source = str(args.weights)
            else:
                net, info = HandNet(NetConfig(method=args.method)).eval(), ModelInfo(args.method, "random")
                source = f"random-weight {args.method}"
            size = net.cfg.crop_size
            print(f"exporting {source} ...")
            graphs = {"with hand layer": export_engine(net, Path(tmp) / "engine.onnx", info)}
            if net.cfg.uses_layer:
                graphs["without hand layer (theta, alpha, beta)"] = export_params(net, Path(tmp) / "params.onnx")
            else:
                graphs = {"joints (no hand layer in this method)": graphs["with hand layer"]}
        rows = bench_graphs(graphs, args.provider, args.runs, args.warmup, args.threads, input_size=size)
    print(f"batch 1, {args.runs} runs after {args.warmup} warm-up, {args.threads} intra-op threads; {source}")
    print(format_table(rows))
    if args.json is not None:
        extra = {"source": source, "threads": args.threads, "warmup": args.warmup,
                 "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}
        print(f"wrote {write_json(rows, args.json, extra)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    _add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if args.command == "layer":
        from export.onnx_export import export_hand_layer

        path = export_hand_layer(args.out, dynamic_batch=not args.static)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    from export.runtime import ProviderUnavailableError

    try:
        return {"model": _model, "tensorrt": _tensorrt, "bench": _bench}[args.command](args)
    except (FileNotFoundError, ValueError, ProviderUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
