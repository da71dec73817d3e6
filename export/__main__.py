"""``python -m export``: turn models into ONNX files.

    python -m export layer [--out export/build/hand_layer.onnx] [--static]

The trained networks' export arrives with the networks; today the hand layer exports.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "build"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    layer = sub.add_parser("layer", help="export the hand pose-and-shape layer")
    layer.add_argument("--out", type=Path, default=DEFAULT_DIR / "hand_layer.onnx")
    layer.add_argument("--static", action="store_true", help="batch fixed to 1 (live path)")
    args = parser.parse_args(argv)
    if args.command == "layer":
        from export.onnx_export import export_hand_layer

        path = export_hand_layer(args.out, dynamic_batch=not args.static)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
