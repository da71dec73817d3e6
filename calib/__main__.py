"""Command line: inspect camera intrinsics.

    python -m calib show --source SRC [--json] [--save PATH]
    python -m calib list [--json]

SRC: realsense | realsense:SERIAL | PATH.bag | PATH.db3 | PATH.json | PATH.yaml | preset:NAME.
Units: pixels for fx, fy, cx, cy and sizes; metres per raw unit for the depth scale; degrees
for the field of view. Errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import SourceError
from .intrinsics import SourcedIntrinsics
from .presets import list_presets
from .projection import field_of_view_deg
from .source import SOURCE_FORMS, intrinsics_from_source

EXIT_ERROR = 2


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line (and exits 2, like argparse)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m calib", description="Inspect depth-camera intrinsics.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    show = commands.add_parser("show", help="print the intrinsics of a source")
    show.add_argument("--source", required=True, help=f"one of: {', '.join(SOURCE_FORMS)}")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--save", metavar="PATH", help="also write the intrinsics to PATH (.json/.yaml)")
    listing = commands.add_parser("list", help="print the table of presets")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def format_intrinsics(sourced: SourcedIntrinsics) -> str:
    """Readable multi-line block for one set of intrinsics."""
    intr = sourced.intrinsics
    fov = field_of_view_deg(intr)
    coeffs = ", ".join(f"{c:.6g}" for c in intr.coeffs)
    rows = [
        ("name", intr.name or "(none)"),
        ("size", f"{intr.width} x {intr.height} px"),
        ("fx, fy", f"{intr.fx:.4f}, {intr.fy:.4f} px"),
        ("cx, cy", f"{intr.cx:.4f}, {intr.cy:.4f} px"),
        ("depth scale", f"{intr.depth_scale:.9g} m per raw unit ({intr.depth_scale * 1000:.6g} mm)"),
        ("distortion", f"{intr.distortion} [{coeffs}]"),
        ("FOV", f"{fov.horizontal_deg:.2f} x {fov.vertical_deg:.2f} deg (horizontal x vertical)"),
        ("source", sourced.source),
    ]
    return "\n".join(f"{key + ':':13s}{value}" for key, value in rows)


def _show(args: argparse.Namespace) -> None:
    sourced = intrinsics_from_source(args.source)
    if args.save:
        sourced.intrinsics.save(args.save)
    if args.json:
        fov = field_of_view_deg(sourced.intrinsics)
        print(json.dumps({
            "intrinsics": sourced.intrinsics.to_dict(),
            "fov_deg": {"horizontal": fov.horizontal_deg, "vertical": fov.vertical_deg},
            "source": sourced.source,
        }, indent=2))
    else:
        print(format_intrinsics(sourced))


def _list(args: argparse.Namespace) -> None:
    presets = list_presets()
    if args.json:
        print(json.dumps([
            {"name": p.name, "kind": p.kind, "intrinsics": p.intrinsics.to_dict(), "source": p.source}
            for p in presets
        ], indent=2))
        return
    header = (f"{'name':28s} {'kind':8s} {'size':>10s} {'fx':>9s} {'fy':>9s} {'cx':>8s} {'cy':>8s} "
              f"{'depth_scale':>11s}  distortion")
    print(header)
    print("-" * len(header))
    for p in presets:
        i = p.intrinsics
        size = f"{i.width}x{i.height}"
        print(f"{p.name:28s} {p.kind:8s} {size:>10s} {i.fx:9.3f} {i.fy:9.3f} {i.cx:8.3f} {i.cy:8.3f} "
              f"{i.depth_scale:11.6g}  {i.distortion}")
    print("\nreal = read from a real device/recording; nominal = datasheet FOV or typical values. "
          "Details: python -m calib show --source preset:NAME")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0, or 2 after a one-line error on stderr)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "show":
            _show(args)
        else:
            _list(args)
    except (ValueError, TypeError, OSError, SourceError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"calib: error: {message}\n")
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
