"""Shipping a run: `export` (ONNX / OpenVINO / TorchScript, parity-checked) and `bench` (speed per backend)."""
from __future__ import annotations

import sys

from pixelseg.cli.common import POSITIVE_INT, bounded, console, size


def add_parsers(sub) -> None:
    x = sub.add_parser("export", help="a run as a self-describing ONNX / OpenVINO / TorchScript file, parity-checked")
    x.add_argument("run", help="run folder, or hf://user/name")
    x.add_argument("--format", default="onnx", choices=["onnx", "openvino", "torchscript"], help="default %(default)s")
    x.add_argument("--out", help="output file (default RUN/export/model[.int8].onnx|.xml|.pt)")
    x.add_argument("--int8", action="store_true", help="static INT8 (QDQ, per-channel), calibrated on your images")
    x.add_argument("--calib", help="calibration images: a dataset root or a folder (default: the run's training data)")
    x.add_argument("--calib-count", type=POSITIVE_INT, default=300, help="calibration images (default %(default)s)")
    x.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="default %(default)s")
    x.add_argument("--min-agreement", type=bounded(float, "number in [0, 1]", ge=0, le=1),
                   help="parity gate: share of pixels whose argmax must match PyTorch (default 0.999 fp32, 0.99 INT8)")
    x.add_argument("--json", help="also write the export report to this JSON file")
    x.set_defaults(handler=cmd_export)

    b = sub.add_parser("bench", help="latency p50/p95, throughput, peak memory per backend, as a table and JSON")
    b.add_argument("source", metavar="RUN|MODEL", help="run folder, or a registered model name (random weights)")
    b.add_argument("--size", type=POSITIVE_INT, nargs="+", metavar=("H", "W"),
                   help="input size (default: the run's, 512 for a model)")
    b.add_argument("--batch", type=POSITIVE_INT, default=1, help="images per call (default %(default)s)")
    b.add_argument("--backend", nargs="+", metavar="PATH", help="paths to measure (default all): eager torch torch-bf16 "
                   "onnxruntime openvino openvino-bf16 onnxruntime-int8 openvino-int8")
    b.add_argument("--int8", action="store_true", help="also measure the INT8 paths (exports and calibrates first)")
    b.add_argument("--calib", help="INT8 calibration images (default: the run's training data, else random images)")
    b.add_argument("--threads", type=POSITIVE_INT, default=2, help="CPU threads (default %(default)s)")
    b.add_argument("--iters", type=POSITIVE_INT, default=20, help="timed runs per path (default %(default)s)")
    b.add_argument("--encoder", help="encoder for a model name, e.g. resnet18")
    b.add_argument("--json", help="also write the results to this JSON file")
    b.set_defaults(handler=cmd_bench)


def cmd_export(a) -> int:
    from pixelseg.deploy.export import export_run
    from pixelseg.fileio import write_json
    r = export_run(a.run, a.format, a.out, int8=a.int8, calib=a.calib, calib_count=a.calib_count,
                   calib_method=a.calib_method, min_agreement=a.min_agreement)
    kind = "INT8 " if r.int8 else ""
    print(f"exported {kind}{r.format} -> {r.path} in {r.seconds:.1f}s")
    print(f"parity vs PyTorch on {r.images} images of {r.image_source}: argmax agreement {r.agreement:.4%}, "
          f"max |logit difference| {r.max_abs_diff:.3g}")
    if r.miou:
        print(f"val mIoU: fp32 {r.miou['fp32']:.4f}, INT8 {r.miou['int8']:.4f} ({100 * r.miou['delta']:+.2f} points)")
    if a.json:
        write_json(a.json, r.to_dict())
    return 0


def cmd_bench(a) -> int:
    from rich.table import Table

    from pixelseg.fileio import write_json
    from pixelseg.inference.bench import bench
    res = bench(a.source, size(a.size, "--size"), a.batch, a.backend, a.threads, a.iters, int8=a.int8, calib=a.calib,
                encoder=a.encoder, log=lambda m: print(m, file=sys.stderr))
    s = res["setup"]
    t = Table(title=f"{s['model']} {s['size'][0]}x{s['size'][1]} batch {s['batch']}, {s['threads']} threads, {s['cpu']}")
    for c in ("path", "p50 ms", "p95 ms", "img/s", "peak MB", "speedup", "agreement"):
        t.add_column(c, justify="left" if c == "path" else "right")
    for r in res["rows"]:
        t.add_row(r["path"], f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['throughput']:.1f}", f"{r['peak_mb']:.0f}",
                  f"{r['speedup']:.2f}x", f"{r['agreement']:.2%}")
    console().print(t)
    if a.json:
        write_json(a.json, res)
    return 0
