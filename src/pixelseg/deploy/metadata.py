"""The run's description inside an exported file, and back out as the same RunInfo a run folder gives.

    .onnx  metadata_props["pixelseg"]     (written by deploy/onnx.py and deploy/quantize.py)
    .xml   rt_info["pixelseg"]            (OpenVINO IR, written by deploy/openvino_ir.py)
    .pt    the extra file pixelseg.json   (TorchScript, deploy/torchscript.py)
The text is the run's model.json (architecture, class table, preprocessing) plus an "export" section saying
how the file was made, so an exported file alone is enough to predict. The format modules import this one;
it imports none of them.
"""
from __future__ import annotations

import json
from pathlib import Path

from pixelseg.errors import PixelsegError

META_KEY = "pixelseg"


def description(info, **export: object) -> dict:
    """What an exported file carries: the run's model.json content and how it was exported."""
    d = info.to_dict()
    d["export"] = export
    return d


def set_metadata(proto, meta: dict) -> None:
    """Store `meta` in an ONNX ModelProto (replacing an earlier pixelseg entry)."""
    for p in list(proto.metadata_props):
        if p.key == META_KEY:
            proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "pixelseg"


def read_metadata(path: str | Path) -> dict:
    """The pixelseg description stored in an exported .onnx or OpenVINO .xml; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PixelsegError(f"{path}: exported model not found")
    if path.suffix == ".xml":
        return _read_ir(path)
    import onnx
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise PixelsegError(f"{path}: not a readable ONNX file ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                            "the file is damaged — export it again with `pixelseg export`") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise PixelsegError(f"{path}: ONNX file without pixelseg metadata (class table, preprocessing); "
                            "export it with `pixelseg export RUN`")
    return parse_meta(props[META_KEY], path)


def _read_ir(path: Path) -> dict:
    import openvino as ov
    if not path.with_suffix(".bin").is_file():
        raise PixelsegError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing; keep the .xml and .bin together")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as e:
        raise PixelsegError(f"{path}: not a readable OpenVINO IR ({str(e).strip().splitlines()[0][:160]}); export it again") from None
    if not model.has_rt_info(META_KEY):
        raise PixelsegError(f"{path}: OpenVINO IR without pixelseg metadata; export it with `pixelseg export RUN --format openvino`")
    return parse_meta(model.get_rt_info(META_KEY).astype(str), path)


def parse_meta(text: str, path: Path) -> dict:
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict) or "classes" not in meta or "preprocessing" not in meta:
            raise ValueError("classes or preprocessing missing")
    except (json.JSONDecodeError, ValueError) as e:
        raise PixelsegError(f"{path}: damaged pixelseg metadata ({e}); export it again with `pixelseg export`") from None
    return meta


def info_from_meta(meta: dict, path: Path):
    """A RunInfo for an exported file, so the Predictor treats it exactly like a run folder."""
    from pixelseg.data.classes import ClassTable
    from pixelseg.run.folder import Preprocessing, RunInfo
    try:
        return RunInfo(Path(path), meta["model"]["name"], meta["model"].get("encoder"),
                       ClassTable.from_dict(meta["classes"], str(path)), Preprocessing.from_dict(meta["preprocessing"]),
                       meta.get("best") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PixelsegError(f"{path}: damaged pixelseg metadata ({type(e).__name__}: {e}); export it again") from None


def read_exported(path: str | Path):
    """The RunInfo of an exported .onnx / .xml file (its path in place of the run folder's)."""
    return info_from_meta(read_metadata(path), Path(path))
