"""``open_source``: the one parser of the ``--source`` string (the app and the evaluation).

Conventions: as ``sources.frame``. Accepted forms (``SOURCE_FORMS``):

    realsense, realsense:SERIAL   a connected RealSense, live
    openni                        an OpenNI2 camera (Kinect v1, PrimeSense, Xtion), live
    PATH.db3, PATH.bag            a RealSense recording
    PATH.oni                      an OpenNI2 recording
    DIR                           a folder of 16-bit PNGs with intrinsics.json (``sources.pngdir``)
    nyu:DIR, icvl:DIR, msra:DIR   the public benchmarks' folders, with their labels
    synthetic[:key=value,...]     frames rendered live from our hand model (``sources.synthetic``)

Every failure to open is a ``calib.SourceError`` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path

from calib import SourceError

from .frame import Source

__all__ = ["SOURCE_FORMS", "open_source"]

SOURCE_FORMS: tuple[str, ...] = (
    "realsense",
    "realsense:SERIAL",
    "openni",
    "PATH.db3",
    "PATH.bag",
    "PATH.oni",
    "DIR (16-bit PNGs + intrinsics.json)",
    "nyu:DIR",
    "icvl:DIR",
    "msra:DIR",
    "synthetic[:seed=N,camera=PRESET,frames=N]",
)

_DATASETS = ("nyu", "icvl", "msra")


def _forms() -> str:
    return "expected one of: " + ", ".join(SOURCE_FORMS)


def _with_jsonl_labels(source: Source, labels: str | None) -> Source:
    """Attach a labels .jsonl (matched by source_id) to any source."""
    if labels is None:
        return source
    from .labels import LabelledSource, read_labels_jsonl

    try:
        table = read_labels_jsonl(labels)
    except BaseException:
        source.close()
        raise
    return LabelledSource(source, table, Path(labels).name)


def open_source(spec: str, *, realtime: bool = False, loop: bool = False, labels: str | None = None) -> Source:
    """Open the source that ``spec`` names (see the module docstring).

    realtime: files and recordings are delivered at their recorded pace (30 fps for files)
        instead of as fast as they are read; live sources always are.
    loop: files and recordings start again at their end (ignored by live sources).
    labels: a labels file. A ``.jsonl`` (``sources.labels``, e.g. a ``--save-poses`` output)
        works with every source, matched by source_id; for ``nyu:`` a joint_data.mat and
        for ``icvl:`` a label .txt replace the folder's own.
    Raises SourceError (unknown form, missing file or folder, device not found, ...).
    """
    if not isinstance(spec, str):
        raise TypeError(f"source: expected a str, got {type(spec).__name__}")
    text = spec.strip()
    lowered = text.lower()
    jsonl = labels is not None and Path(labels).suffix.lower() == ".jsonl"
    if labels is not None and not Path(labels).is_file():
        raise SourceError(f"labels file not found: {labels}")
    if not text:
        raise SourceError(f"source: empty; {_forms()}")

    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower() if sep else ""
    if scheme in _DATASETS:
        if not rest.strip():
            raise SourceError(f"{scheme}: expected {scheme}:DIR, got no folder")
        return _open_dataset(scheme, rest.strip(), labels, jsonl, realtime, loop)
    if lowered == "realsense" or scheme == "realsense":
        from .realsense import RealSenseCamera

        serial = rest.strip() if sep else None
        if serial == "":
            raise SourceError("realsense: expected 'realsense' or 'realsense:SERIAL', got an empty serial")
        return _with_jsonl_labels(RealSenseCamera(serial), _jsonl_only(labels, jsonl, "realsense"))
    if lowered == "openni":
        from .openni import OpenNISource

        return _with_jsonl_labels(OpenNISource(), _jsonl_only(labels, jsonl, "openni"))
    if lowered == "synthetic" or scheme == "synthetic":
        from .synthetic import SyntheticSource, parse_synthetic_options

        try:
            options = parse_synthetic_options(rest if sep else "")
        except ValueError as exc:
            raise SourceError(f"synthetic: {exc}") from None
        return _with_jsonl_labels(SyntheticSource(options, realtime=realtime), _jsonl_only(labels, jsonl, "synthetic"))

    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in (".db3", ".bag"):
        from .realsense import RealSenseRecording

        return _with_jsonl_labels(RealSenseRecording(path, realtime=realtime, loop=loop),
                                  _jsonl_only(labels, jsonl, "a recording"))
    if suffix == ".oni":
        from .openni import OpenNISource

        return _with_jsonl_labels(OpenNISource(path, realtime=realtime, loop=loop),
                                  _jsonl_only(labels, jsonl, "an OpenNI recording"))
    if path.is_dir():
        from .pngdir import open_png_folder

        return open_png_folder(path, labels=_jsonl_only(labels, jsonl, "a PNG folder"), realtime=realtime, loop=loop)
    if path.suffix or "/" in text or "\\" in text or path.exists():
        raise SourceError(f"source: no such folder or supported file: {text}; {_forms()}")
    raise SourceError(f"source: unknown {text!r}; {_forms()}")


def _jsonl_only(labels: str | None, jsonl: bool, what: str) -> str | None:
    if labels is not None and not jsonl:
        raise SourceError(f"labels for {what}: expected a .jsonl file (source_id, joints_xyz_mm), got {labels}")
    return labels


def _open_dataset(scheme: str, folder: str, labels: str | None, jsonl: bool, realtime: bool, loop: bool) -> Source:
    if scheme == "nyu":
        from .nyu import open_nyu

        source: Source = open_nyu(folder, labels=None if jsonl else labels, realtime=realtime, loop=loop)
    elif scheme == "icvl":
        from .icvl import open_icvl

        source = open_icvl(folder, labels=None if jsonl else labels, realtime=realtime, loop=loop)
    else:
        from .msra import open_msra

        if labels is not None and not jsonl:
            raise SourceError(f"msra: labels come from each folder's joint.txt; only a .jsonl can replace them, "
                              f"got {labels}")
        source = open_msra(folder, realtime=realtime, loop=loop)
    return _with_jsonl_labels(source, labels if jsonl else None)
