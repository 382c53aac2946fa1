"""Taking a run to where it runs: export.py (ONNX / OpenVINO / TorchScript, with the parity gate), onnx.py,
openvino_ir.py, torchscript.py, quantize.py (INT8), runtime.py (ONNX Runtime and OpenVINO backends), metadata.py
(the run's description inside an exported file)."""
