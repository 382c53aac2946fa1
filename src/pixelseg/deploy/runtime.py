"""Running an exported file: ONNX Runtime and OpenVINO sessions, normalized N x C x H x W float32 in,
N x K x H x W logits out, any batch, height and width (the exported graphs have dynamic axes).

Export's parity check runs the file it just wrote through these; inference/backends.py offers them to the
Predictor beside the PyTorch backend. The arrows run one way: inference imports export (to export a run on
demand, to read an exported file's metadata and to run it); export imports nothing from inference.
`require_module` is the one place that turns a missing optional package into a one-line error.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from pixelseg.errors import PixelsegError


def require_module(module: str, what: str, alternative: str | None = "or pick --backend torch"):
    """Import an optional package, or a one-line error saying which extra installs it (and, for a backend of
    predict / serve / bench, the always-available alternative; `alternative=None` where there is none)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PixelsegError(f"{what} needs the {module} package, which is not installed; "
                            f"pip install 'pixelseg[export]'{' ' + alternative if alternative else ''}") from None


def available(backend: str) -> bool:
    return {"torch": True, "onnxruntime": importlib.util.find_spec("onnxruntime") is not None,
            "openvino": importlib.util.find_spec("openvino") is not None}[backend]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None, precision: str = "fp32"):
        ort = require_module("onnxruntime", f"backend '{self.name}'")
        if precision != "fp32":
            raise PixelsegError(f"backend onnxruntime runs the exported precision (fp32, or INT8 after "
                                f"`pixelseg export --int8`), not {precision}; use --backend openvino or torch")
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise PixelsegError("onnxruntime has no CUDA provider here; pip install onnxruntime-gpu or use --backend torch")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise PixelsegError(f"{path}: onnxruntime cannot load it ({_first_line(e)}); re-export with `pixelseg export`") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(out)


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None, precision: str = "fp32"):
        ov = require_module("openvino", f"backend '{self.name}'")
        if device.type != "cpu":
            raise PixelsegError(f"backend openvino runs on the CPU here, not {device}; use --device cpu or --backend torch")
        if precision == "fp16":
            raise PixelsegError("precision fp16 is for GPUs; on a CPU use bf16 (or fp32)")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:
            raise PixelsegError(f"{path}: OpenVINO cannot read it ({_first_line(e)}); re-export with `pixelseg export`") from None
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                  # f32 unless asked: on AMX/AVX512-BF16 CPUs OpenVINO's default is bf16, which changes outputs
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            raise PixelsegError(f"{path}: OpenVINO cannot compile it ({_first_line(e)})") from None
        self.request = self.compiled.create_infer_request()
        self._core, self._path, self._config = core, path, config
        self._static = {}             # input shape -> infer request of the graph compiled for that shape
        self._labels = {}             # (mean, std, shape) -> infer request of the uint8-in, labels-out graph

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
        # infer() copies the output out of the request's buffer (share_outputs=False), so results stay valid
        return torch.from_numpy(self._request_for(x.shape).infer({0: x})[0])

    def _request_for(self, shape) -> "object":
        """A graph compiled for this exact input shape: predict resizes to the training size and tiles are one
        size, so a handful of shapes cover a whole job. With the shape fixed OpenVINO folds the exported
        pad-to-a-multiple / crop-back (which it otherwise runs in slow reference kernels) and plans its memory
        once. The first call at a new shape pays a compile; the dynamic graph (kept from the start, it
        validated the file) serves shapes past the cache's bound."""
        shape = tuple(shape)
        if shape not in self._static:
            if len(self._static) >= 4:
                return self.request
            model = self._read_static(shape)
            self._static[shape] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._static[shape]

    def _read_static(self, nchw):
        """The exported graph with its input fixed to this N x C x H x W."""
        model = self._core.read_model(str(self._path))
        model.reshape({0: list(nchw)})
        return model

    def labels(self, images: np.ndarray, mean, std) -> np.ndarray:
        """N x H x W x C uint8 images already at the network's size -> N x H x W class indices, with the
        normalization and the argmax inside the compiled graph (OpenVINO's PrePostProcessor and a stable
        TopK). It is the same computation as normalize -> __call__ -> argmax, but it skips two full-size
        float passes in Python: at 1024x512 with 19 classes those cost more than a real-time network
        (the argmax alone reads 40 MB of logits)."""
        key = (tuple(mean), tuple(std), tuple(images.shape))
        if key not in self._labels:
            if len(self._labels) >= 4:            # a video or a folder uses one or two shapes; bound the rest
                self._labels.pop(next(iter(self._labels)))
            self._labels[key] = self._labels_graph(*key).create_infer_request()
        out = self._labels[key].infer({0: np.ascontiguousarray(images, dtype=np.uint8)})[0]
        return out if out.dtype == np.uint8 else out.astype(np.uint16)

    def _labels_graph(self, mean, std, shape):
        """Compiled for one static N x H x W x C: with the shape known, OpenVINO folds the exported graph's
        pad-to-a-multiple and crop-back away and picks its blocked kernels; measured 2x faster than the
        dynamic graph for Fast-SCNN at 1024x512 in bf16 (73 vs 162 ms on a loaded 2-core Xeon)."""
        import openvino as ov
        import openvino.opset13 as ops
        from openvino.preprocess import PrePostProcessor

        n, h, w, c = shape
        ppp = PrePostProcessor(self._read_static((n, c, h, w)))
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(list(mean)).scale(list(std))
        model = ppp.build()
        logits = model.get_results()[0].input_value(0)      # what feeds the logits Result, not the Result
        classes = logits.get_partial_shape()[1]
        # k=1 sorted by value with a stable sort: among equal scores the lowest class index wins, as torch's argmax
        top = ops.topk(logits, 1, 1, "max", "value", "i32", stable=True)
        label = ops.squeeze(top.output(1), [1])
        if classes.is_static and classes.get_length() <= 256:
            label = ops.convert(label, "u8")
        return self._core.compile_model(ov.Model([label], model.get_parameters(), "labels"), "CPU", self._config)


def _first_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:200]
