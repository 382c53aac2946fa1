"""Every backend gives the torch backend's outputs (within the parity threshold) through the same
Predictor API; exported files are self-describing; bad input is one clear line."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from pixelseg.fileio import user_cache

from pixelseg.errors import PixelsegError
from pixelseg.inference.predictor import Predictor
from pixelseg.inference.backends import cached_onnx, resolve_backend

BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def reference(random_run):
    return Predictor(random_run, "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_parity_at_training_and_odd_sizes(random_run, reference, scene, backend):
    pred = Predictor(random_run, "cpu", backend=backend)
    assert pred.backend_name == backend
    odd = np.ascontiguousarray(scene[:50, :37])       # not the training size: the resize path runs too
    for image in (scene, odd):
        want, got = reference.probs([image])[0], pred.probs([image])[0]
        assert got.shape == want.shape == (3, *image.shape[:2])
        assert np.abs(got - want).max() < 1e-4
        assert (pred.predict(image) == reference.predict(image)).mean() >= 0.999


def test_exported_graph_has_dynamic_batch_and_size(random_run, reference):
    """The network itself at sizes that are not multiples of 32 and a batch of 3: the export keeps the padding."""
    from pixelseg.inference.backends import OnnxRuntimeBackend
    path = cached_onnx(reference.info, reference.model)
    ort = OnnxRuntimeBackend(path, torch.device("cpu"))
    x = torch.randn(3, 3, 45, 83)
    with torch.inference_mode():
        want = reference.model(x)
    got = ort(x)
    assert got.shape == want.shape and float((got - want).abs().max()) < 1e-4


def test_onnx_cache_is_reused(random_run, reference):
    path = cached_onnx(reference.info, reference.model)
    mtime = path.stat().st_mtime_ns
    assert cached_onnx(reference.info, reference.model) == path and path.stat().st_mtime_ns == mtime
    assert path.parent == user_cache("onnx") and random_run not in path.parents


@pytest.mark.slow
def test_exported_file_predicts_alone_with_its_class_table(random_run, reference, scene, tmp_path):
    from pixelseg.deploy.export import export_run
    out = export_run(random_run, "onnx", tmp_path / "m.onnx", log=lambda m: None).path
    pred = Predictor(out, "cpu", backend="auto")
    assert pred.backend_name in BACKENDS and pred.model is None
    assert pred.classes == reference.classes
    assert pred.info.preprocessing == reference.info.preprocessing
    assert (pred.predict(scene) == reference.predict(scene)).mean() >= 0.999


def test_auto_picks_openvino_on_cpu_and_torch_on_gpu():
    assert resolve_backend("auto", torch.device("cpu")) == "openvino"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("onnxruntime", torch.device("cpu")) == "onnxruntime"


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "tensorrt"}, "unknown backend 'tensorrt'"),
    ({"precision": "int4"}, "unknown precision 'int4'"),
    ({"precision": "fp16"}, "fp16 is for GPUs"),
    ({"tile": (4, 4)}, "at least 8 pixels"),
    ({"overlap": 1.0}, "overlap 1.0"),
])
def test_bad_settings_are_one_line(random_run, kwargs, words):
    with pytest.raises(PixelsegError, match=words) as e:
        Predictor(random_run, "cpu", **kwargs)
    assert "\n" not in str(e.value)


def test_missing_runtime_names_the_package(random_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)      # import openvino -> ImportError
    with pytest.raises(PixelsegError, match=r"needs the openvino package.*pip install"):
        Predictor(random_run, "cpu", backend="openvino")


def test_exported_file_on_torch_backend_is_refused(random_run, reference):
    path = cached_onnx(reference.info, reference.model)
    with pytest.raises(PixelsegError, match="runs on --backend onnxruntime or openvino"):
        Predictor(path, "cpu", backend="torch")


@pytest.mark.parametrize("content", [b"", b"\x08\x01garbage that is not a protobuf" * 10])
def test_corrupt_exported_file(tmp_path, content):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(content)
    with pytest.raises(PixelsegError, match="model.onnx") as e:
        Predictor(bad, "cpu", backend="onnxruntime")
    assert "export" in str(e.value) and "\n" not in str(e.value)


def test_onnx_without_pixelseg_metadata(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(PixelsegError, match="without pixelseg metadata"):
        Predictor(tmp_path / "plain.onnx", "cpu", backend="onnxruntime")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_wrong_channel_count_is_one_line(random_run, backend):
    pred = Predictor(random_run, "cpu", backend=backend)
    two = np.zeros((32, 32, 2), np.uint8)
    with pytest.raises(PixelsegError, match="2 channels but the model takes 3"):
        pred.predict(two)
    with pytest.raises(PixelsegError, match="2 channels but the model takes 3"):
        Predictor(random_run, "cpu", backend=backend, tile=True).predict(two)


def test_openvino_labels_in_graph_match_the_general_path(random_run, reference, scene):
    """At the network's size OpenVINO normalizes and takes the argmax inside its graph; the labels are those
    of normalize -> logits -> argmax, for a batch, grayscale input converted to RGB, and ties."""
    pred = Predictor(random_run, "cpu", backend="openvino")
    gray = np.ascontiguousarray(scene[:, :, 1])
    calls = []
    real = pred.backend.labels
    pred.backend.labels = lambda *a: calls.append(a[0].shape) or real(*a)
    got = pred.predict_batch([scene, gray, scene[::-1].copy()])
    assert calls == [(3, 64, 64, 3)]                   # one call, uint8 NHWC at the network size
    assert list(pred.backend._labels) == [(tuple(pred.info.preprocessing.mean), tuple(pred.info.preprocessing.std), (3, 64, 64, 3))]
    for image, labels in zip([scene, gray, scene[::-1].copy()], got):
        assert labels.dtype == np.uint8 and labels.shape == (64, 64)
        want = np.stack([image] * 3, -1) if image.ndim == 2 else image
        logits = pred.predict_logits([want])[0]        # the general path: normalize in torch, argmax in torch
        assert (labels == logits.argmax(0).numpy()).mean() >= 0.9995
        assert (labels == reference.predict(want)).mean() >= 0.999
    # not at the network size: the general path (resize), no call to the graph
    odd = np.ascontiguousarray(scene[:50, :37])
    assert pred.predict(odd).shape == (50, 37) and len(calls) == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_openvino_labels_break_ties_towards_the_lowest_class(tmp_path):
    from pixelseg.inference.backends import OpenVinoBackend

    class Ties(torch.nn.Module):      # scores (0, 1, 1, 0): classes 1 and 2 tie for the maximum everywhere
        def forward(self, x):
            z = x[:, :1] * 0
            return torch.cat([z, z + 1, z + 1, z], 1)

    path = tmp_path / "ties.onnx"
    torch.onnx.export(Ties(), torch.zeros(1, 3, 8, 8), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                      dynamo=False)
    backend = OpenVinoBackend(path, torch.device("cpu"))
    labels = backend.labels(np.zeros((2, 8, 8, 3), np.uint8), (0.0,) * 3, (1.0,) * 3)
    assert labels.shape == (2, 8, 8) and labels.dtype == np.uint8
    assert (labels == 1).all()
    assert torch.equal(backend(torch.zeros(1, 3, 8, 8)).argmax(1), torch.ones(1, 8, 8, dtype=torch.long))


@pytest.mark.slow
def test_openvino_compiles_per_input_shape_with_a_bound(random_run):
    pred = Predictor(random_run, "cpu", backend="openvino")
    be = pred.backend
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(1, 3, h, w, generator=g) for h, w in ((64, 64), (64, 64), (40, 56), (32, 32), (48, 40), (36, 28))]
    outs = [be(x) for x in xs]
    assert list(be._static) == [(1, 3, 64, 64), (1, 3, 40, 56), (1, 3, 32, 32), (1, 3, 48, 40)]   # bounded: 4
    dynamic = [torch.from_numpy(be.request.infer({0: x.numpy()})[0]) for x in xs]
    for got, want, x in zip(outs, dynamic, xs):
        assert got.shape == (1, 3, *x.shape[-2:])
        assert torch.allclose(got, want, atol=1e-4)
