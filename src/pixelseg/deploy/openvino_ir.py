"""OpenVINO IR (.xml + .bin) from an exported ONNX file; the pixelseg description goes into rt_info
(deploy/metadata.py reads it back)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pixelseg.deploy.metadata import META_KEY


def onnx_to_ir(onnx_path: Path, xml_path: Path, meta: dict) -> Path:
    import openvino as ov

    xml_path = Path(xml_path)
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(meta), META_KEY)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    # two files: write both beside the target, then rename the .bin first so a reader never finds an
    # .xml whose weights are missing or stale
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=".ov-") as tmp:
        tmp_xml = Path(tmp) / "model.xml"
        # compress_to_fp16 would halve the file but change fp32 weights; INT8 weights stay INT8 either way
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    return xml_path
