"""``python -m app``: track a hand in a depth stream and show it.

    python -m app                                  # the demo: the shipped recording, viewer if a display
    python -m app --source realsense               # live, first RealSense
    python -m app --source REC.db3 --save-poses out.jsonl --headless
    python -m app bench [--source SRC] [--max-frames N] [--json OUT.json]

Every option is in ``python -m app --help``; the README has the formats of the outputs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

APP_DIR = Path(__file__).resolve().parent
DEMO_SOURCE = APP_DIR / "assets" / "demo.db3"
SR305_SOURCE = APP_DIR / "assets" / "sr305.db3"
MODEL_DIR = APP_DIR.parent / "models" / "weights"
DEFAULT_MODELS = (MODEL_DIR / "deephps.onnx", MODEL_DIR / "deephps.pt")
NAMED_SOURCES = {"demo": DEMO_SOURCE, "sr305": SR305_SOURCE}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit status 2
        self.exit(2, f"error: {message} (see python -m app --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m app", description="Real-time 3D hand tracking for depth cameras.",
                 epilog="bench: python -m app bench [--source SRC] [--max-frames N] [--json OUT.json]")
    ap.add_argument("--source", default="demo",
                    help="demo (default: the shipped recording), sr305 (a real RealSense SR305 clip), realsense, "
                         "realsense:SERIAL, openni, REC.db3/.bag/.oni, a PNG folder with intrinsics.json, nyu:DIR, "
                         "icvl:DIR, msra:DIR, synthetic")
    ap.add_argument("--headless", action="store_true", help="no window, even with a display")
    ap.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    ap.add_argument("--model", type=Path, default=None, help="an exported .onnx engine or .pt weights "
                    "(default models/weights/deephps.onnx)")
    ap.add_argument("--provider", choices=("auto", "cpu", "cuda", "tensorrt"), default="auto")
    ap.add_argument("--hand", choices=("right", "left"), default="right")
    ap.add_argument("--no-refine", action="store_true", help="no temporal refinement (default: SDNet's hierarchical "
                    "refinement, then the One Euro filter; with --fit the filter alone)")
    ap.add_argument("--single-pass", action="store_true",
                    help="run the network once, on the finder's crop (default: again on a crop around its palm)")
    ap.add_argument("--rotations", type=int, default=None,
                    help="run the last crop also turned in 360/N degree steps and average the results "
                         "(default: models.estimator.EstimatorConfig's, 4; 1: the crop alone, fastest)")
    ap.add_argument("--fit", action="store_true",
                    help="fit the hand model to the crop's depth, starting from the network's answer (models.fit; "
                         "more accurate, ~100 ms more per frame on 2 CPU cores; the temporal refinement is then "
                         "the One Euro filter alone)")
    ap.add_argument("--no-spot", action="store_true",
                    help="find the hand with the geometric finder alone, without the learnt spotter's candidate "
                         "(models.handspot)")
    pace = ap.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                      help="replay recordings at their recorded pace (default with the viewer)")
    pace.add_argument("--as-fast-as-possible", dest="realtime", action="store_false",
                      help="replay as fast as frames are processed, none dropped (default headless)")
    ap.add_argument("--loop", action="store_true", help="replay a recording or folder forever")
    ap.add_argument("--record", type=Path, default=None, help="save what the camera sees to OUT.db3")
    ap.add_argument("--save-poses", type=Path, default=None, help="one JSON line per input frame")
    ap.add_argument("--video", type=Path, default=None, help="the viewer's frames to OUT.mp4 (headless too)")
    ap.add_argument("--window", default="960x540", help="viewer (and --video) size WxH, px (default 960x540: "
                    "38 FPS with Mesa's software OpenGL on 2 cores; 1280x720: 25 FPS)")
    ap.add_argument("--json", type=Path, default=None, help="the summary as JSON")
    return ap


def resolve_source(spec: str) -> str:
    """The named sources (demo, sr305) to their shipped folders; anything else unchanged."""
    return str(NAMED_SOURCES[spec]) if spec in NAMED_SOURCES else spec


def default_model() -> Path:
    for p in DEFAULT_MODELS:
        if p.is_file():
            return p
    raise FileNotFoundError(f"no model found: expected {DEFAULT_MODELS[0]} (python -m export model) "
                            f"or {DEFAULT_MODELS[1]}")


def check_options(a: argparse.Namespace) -> str | None:
    """Contradictory or impossible options, as one message (None when fine)."""
    if a.max_frames is not None and a.max_frames < 1:
        return "--max-frames must be at least 1"
    if a.rotations is not None and a.rotations < 1:
        return f"--rotations must be at least 1 (1: the crop alone), got {a.rotations}"
    if a.record is not None and a.record.suffix != ".db3":
        return f"--record writes RealSense .db3 recordings; got {a.record}"
    if a.record is not None and a.record.exists():
        return f"--record: {a.record} exists; choose a new file (nothing is overwritten)"
    if a.video is not None and a.video.suffix.lower() not in (".mp4", ".avi"):
        return f"--video expects an .mp4 (or .avi) path; got {a.video}"
    if a.loop and a.max_frames is None and (a.save_poses is not None or a.headless):
        return "--loop without --max-frames never ends headless; add --max-frames N"
    try:
        w, h = (int(x) for x in a.window.lower().split("x"))
        if w < 320 or h < 240:
            raise ValueError
        a.window_size = (w, h)
    except ValueError:
        return f"--window expects WxH of at least 320x240 pixels, got {a.window!r}"
    for p in (a.save_poses, a.video, a.json):
        if p is not None and not p.parent.is_dir():
            return f"folder not found for {p}"
    return None


def build(a: argparse.Namespace, bench: bool = False) -> tuple[Any, Any, Any, str]:
    """(pipeline, capture, source, provider) from the options; raises with one-line messages."""
    from app.pipeline import Capture, Outputs, Pipeline, PosesWriter
    from models.estimator import Estimator, EstimatorConfig, load_predictor
    from sources import open_source

    model = a.model or default_model()
    predictor = load_predictor(model, a.provider)
    provider = getattr(getattr(predictor, "engine", None), "provider", "torch-cpu")
    spec = resolve_source(a.source)
    visible = not a.headless and bool(os.environ.get("DISPLAY")) and not bench
    realtime = a.realtime if a.realtime is not None else visible
    source = open_source(spec, realtime=realtime, loop=a.loop or bench)
    live = bool(getattr(source, "live", False))
    refiner = None
    if not a.no_refine:
        from app.refine import TemporalRefiner, temporal_refiner_config

        refiner = TemporalRefiner(temporal_refiner_config(a.fit))
    outputs = Outputs(poses=PosesWriter(a.save_poses) if a.save_poses else None)
    turned = {} if a.rotations is None else {"rotations": a.rotations}
    estimator = Estimator(predictor, EstimatorConfig(hand=a.hand, recrop=not a.single_pass, fit=a.fit,
                                                     spot=not a.no_spot, **turned))
    pipeline = Pipeline(estimator, refiner, outputs)
    capture = Capture(source, queue_size=1 if bench else 2, drop_stale=live or realtime, max_frames=a.max_frames)
    _attach_outputs(a, outputs, predictor, visible, source)
    print(f"source: {getattr(source, 'name', spec)}; model: {model} ({provider})", file=sys.stderr)
    return pipeline, capture, source, provider


def _attach_outputs(a: argparse.Namespace, outputs: Any, predictor: Any, visible: bool, source: Any) -> None:
    """Recorder, viewer and video hooks (each optional)."""
    recorder = None
    if a.record is not None:
        from app.record import RecordHook

        recorder = RecordHook(a.record)
        outputs.hooks.append(recorder)
    if visible or a.video is not None:
        from app.viewer_hook import ViewerHook

        outputs.hooks.append(ViewerHook(predictor.faces, visible=visible, video=a.video, recorder=recorder,
                                        size=a.window_size))


def run(a: argparse.Namespace, bench: bool = False) -> int:
    from calib import SourceError

    try:
        pipeline, capture, source, provider = build(a, bench)
    except (FileNotFoundError, ValueError, SourceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from app.pipeline import format_summary

    status = 0
    try:
        summary = pipeline.run(capture)
    except (SourceError, OSError, RuntimeError) as exc:  # a camera unplugged, a file gone mid-stream
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        summary, status = pipeline.stats.summary(provider), 1
    finally:
        if not capture.is_alive() and capture.ident is None:   # never started: close it here
            close = getattr(source, "close", None)
            if close is not None:
                close()
        # Otherwise the capture thread closed it (or is stuck in a read and ends with the process).
    summary["provider"] = provider
    print(format_summary(summary))
    if a.json is not None:
        a.json.write_text(json.dumps(summary, indent=1, default=lambda x: None if isinstance(x, float)
                                     and math.isnan(x) else x) + "\n")
    return status


def _stop_on_sigterm() -> None:
    """``kill`` (SIGTERM) stops the run like Ctrl-C: outputs closed, summary printed, exit 0."""
    import signal
    import threading

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench = bool(argv) and argv[0] == "bench"
    if bench:
        argv = argv[1:]
    a = _parser().parse_args(argv)
    if bench:
        a.headless = True
        a.max_frames = a.max_frames or 1000
        if a.realtime:
            print("error: bench replays as fast as possible; drop --realtime", file=sys.stderr)
            return 2
        a.realtime = False
    problem = check_options(a)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if __name__ == "__main__":
        _stop_on_sigterm()
    return run(a, bench)


if __name__ == "__main__":
    sys.exit(main())
