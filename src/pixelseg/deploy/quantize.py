"""Static post-training INT8 quantization: QDQ, per-channel weights, activations calibrated on the
user's own images through the run's preprocessing.

Dynamic quantization is deliberately not offered: for conv nets it only quantizes weights at run time
and measured about 6x slower than fp32 on a CPU.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from pixelseg.errors import PixelsegError
from pixelseg.fileio import atomic_path

CALIB_METHODS = ("minmax", "percentile", "entropy")


def calibration_images(source, info, count: int, seed: int = 0) -> list[Path]:
    """Up to `count` image paths: a dataset root (its train split), a folder of images, or the run's own
    training data when source is None. Sampled evenly (seeded) when there are more."""
    from pixelseg.data.io import IMAGE_EXTS
    from pixelseg.data.preprocess import list_inputs

    if source is None:
        source = run_data_root(info)
        if source is None:
            raise PixelsegError(f"{info.path}: INT8 needs calibration images and the run's training data is not "
                                "reachable; pass --calib ROOT (a dataset or a folder of images)")
    root = Path(source)
    paths: list[Path] = []
    if root.is_dir() and not any(p.suffix.lower() in IMAGE_EXTS for p in root.iterdir()):
        from pixelseg.measure.opener import open_like_run
        index = open_like_run(info.path, root)     # the run's own data is read with the run's format
        split = "train" if index.splits.get("train") else next(s for s in index.splits if index.splits[s])
        paths = [s.image for s in index.split(split)]
    else:
        paths = list_inputs([root])
    if len(paths) > count:
        pick = np.random.default_rng(seed).choice(len(paths), count, replace=False)
        paths = [paths[i] for i in sorted(pick)]
    return paths


def run_data_root(info) -> Path | None:
    """The dataset the run was trained on, when it is still there."""
    from pixelseg.run.folder import RunFolder
    return RunFolder(info.path).data_root()


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one preprocessed image per call, decoded lazily."""

    def __init__(self, paths: list[Path], info, input_name: str):
        self.paths, self.info, self.input_name, self.i = paths, info, input_name, 0

    def get_next(self):
        from pixelseg.data.io import read_image
        from pixelseg.data.preprocess import preprocess
        if self.i >= len(self.paths):
            return None
        p = self.paths[self.i]
        self.i += 1
        x = preprocess(read_image(p, self.info.preprocessing.in_channels), self.info.preprocessing)
        return {self.input_name: x[None].numpy()}

    def rewind(self):
        self.i = 0


# inputs that are sizes, not tensors: (op type, input index) whose producers compute shapes
SHAPE_INPUTS = {"Pad": (1,), "Resize": (1, 2, 3), "Reshape": (1,), "Slice": (1, 2, 3, 4), "Expand": (1,),
                "Tile": (1,), "ConstantOfShape": (0,), "Upsample": (1,)}


def shape_arithmetic(model) -> list[str]:
    """The nodes that compute sizes (pads of TF "same" padding, resize targets, reshape shapes) from Shape ops.
    Quantized, their float arithmetic would be rounded to an 8-bit grid and the pads come out wrong (seen: the
    EfficientNet-Lite encoder's dynamic padding made FPN's feature maps 8 wide where 10 were needed at 160x160,
    and ONNX Runtime refused the Add). They are left in float; they cost nothing at run time."""
    producer = {out: n for n in model.graph.node for out in n.output}
    todo = [n.input[i] for n in model.graph.node for i in SHAPE_INPUTS.get(n.op_type, ()) if i < len(n.input)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        node = producer.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type != "Shape":        # a Shape reads a tensor's shape, not its values: stop there
            todo.extend(node.input)
    return sorted(seen)


def quantize_int8(fp32_onnx: Path, out: Path, paths: list[Path], info, meta: dict, method: str = "minmax") -> Path:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pixelseg.deploy.onnx import INPUT
    from pixelseg.deploy.metadata import set_metadata

    if method not in CALIB_METHODS:
        raise PixelsegError(f"unknown calibration method '{method}'; valid: {', '.join(CALIB_METHODS)}")
    if not paths:
        raise PixelsegError("INT8 calibration found no images; pass --calib ROOT with images")
    with tempfile.TemporaryDirectory(prefix="pixelseg-int8-") as tmp, atomic_path(out) as target:
        pre = Path(tmp) / "pre.onnx"
        # folds BatchNorm into convs and infers shapes so every conv gets its own per-channel scales
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        quantize_static(
            str(pre), str(target), _Reader(paths, info, INPUT),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            # the classifier (last conv) stays fp32: its outputs are the logits whose argmax is the answer,
            # and an 8-bit grid there flips near-tie pixels (measured 88.8% -> 90.1% agreement on a
            # barely trained U-Net) for a few percent of the compute
            nodes_to_exclude=convs[-1:] + shape_arithmetic(onnx.load(str(pre))),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        proto = onnx.load(str(target))
        set_metadata(proto, meta)
        onnx.save(proto, str(target))
    return out
