"""One row of benchmarks/gpu_check.py, run in this process: `python gpu_check_worker.py SPEC.json`.

The orchestrator starts each row as a fresh process (under torchrun for the distributed rows) so that a
timeout or a crash ends only that row, and so that torch.cuda.max_memory_allocated read here at the end is
that row's peak. The result goes to SPEC["result"].RANK as JSON. Only pixelseg's stable surfaces are used:
`python -m pixelseg ...` (through runpy, in this process), pixelseg.train and pixelseg.load.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from gpu_check import images_in, one_line


def _peak_mb() -> float | None:
    import torch
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None


def _cli(argv: list[str]) -> int:
    """`python -m pixelseg ARGV` in this process, so its GPU memory can be read afterwards."""
    import runpy
    sys.argv = ["pixelseg", *argv]
    try:
        runpy.run_module("pixelseg", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    return 0


def _agreement(labels: dict, ref_file: str) -> float | None:
    """Share of pixels equal to the fp32 labels (an .npz of stem -> label map, written by the infer row)."""
    import numpy as np
    ref = np.load(ref_file, allow_pickle=False) if Path(ref_file).is_file() else {}
    pairs = [(ref[k], v) for k, v in labels.items() if k in ref and ref[k].shape == v.shape]
    return sum(int((a == b).sum()) for a, b in pairs) / sum(a.size for a, _ in pairs) if pairs else None


def _infer(spec: dict) -> dict:
    """The torch backend in fp32, bf16, fp16 on the same images: img/s after a warm-up, peak, agreement."""
    import numpy as np
    import torch
    from PIL import Image

    import pixelseg
    paths = images_in(spec["images"])
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    res, ref, bs, cuda = {}, None, 8, torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for prec in ("fp32", "bf16", "fp16"):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            pred = pixelseg.load(spec["run"], device=spec["device"], backend="torch", precision=prec)
            pred.predict_batch(images[:bs])     # warm-up (cuDNN picks its kernels here)
            sync()
            t0 = time.perf_counter()
            labels = [lab for i in range(0, len(images), bs) for lab in pred.predict_batch(images[i:i + bs])]
            sync()
            rate = len(images) / (time.perf_counter() - t0)
            if ref is None:
                ref = labels
                np.savez_compressed(spec["ref"], **{p.stem: lab for p, lab in zip(paths, labels)})
            agree = float(np.mean([np.mean(a == b) for a, b in zip(labels, ref)]))
            res[prec] = {"ok": True, "rate": rate, "peak_mb": _peak_mb(), "agreement": agree}
            del pred
        except Exception as e:   # one precision failing must not hide the others
            res[prec] = {"ok": False, "error": one_line(f"{type(e).__name__}: {e}")}
    return {"ok": True, "precisions": res}


def _serve(spec: dict) -> dict:
    """`pixelseg serve --device D` in a thread of this process; one upload after another, each checked."""
    import io
    import socket
    import threading
    import urllib.request

    import numpy as np
    from PIL import Image
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = {}
    argv = ["serve", spec["run"], "--device", spec["device"], "--port", str(port), "--no-access-log"]
    threading.Thread(target=lambda: box.setdefault("code", _cli(argv)), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    t_end = time.time() + 90
    while True:
        try:
            info = json.load(urllib.request.urlopen(f"{base}/v1/model", timeout=5))
            break
        except OSError:
            if "code" in box or time.time() > t_end:
                return {"ok": False, "error": f"server did not come up (exit {box.get('code')})"}
            time.sleep(0.5)
    if not info["device"].startswith(spec["device"].split(":")[0]):
        return {"ok": False, "error": f"server runs on {info['device']}, not {spec['device']}"}
    labels, paths = {}, images_in(spec["images"])[:24]
    t0 = None
    for p in paths:
        req = urllib.request.Request(f"{base}/v1/segment?format=label", data=p.read_bytes(),
                                     headers={"Content-Type": "image/png"})
        body = urllib.request.urlopen(req, timeout=60).read()
        labels[p.stem] = np.asarray(Image.open(io.BytesIO(body)))
        if labels[p.stem].shape != Image.open(p).size[::-1]:
            return {"ok": False, "error": f"label map of {p.name} is {labels[p.stem].shape}, not the image's size"}
        t0 = t0 or time.perf_counter()      # the first answer is the warm-up
    n = len(paths) - 1
    return {"ok": True, "rate": n / (time.perf_counter() - t0) if n else None, "peak_mb": _peak_mb(),
            "agreement": _agreement(labels, spec["ref"]), "note": f"{info['backend']} on {info['device']}"}


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    rank = os.environ.get("RANK", "0")
    try:
        if spec["mode"] == "cli":
            code = _cli(spec["argv"])
            res = {"ok": code == 0, "error": "" if code == 0 else f"exit {code}", "peak_mb": _peak_mb()}
            if code == 0 and spec.get("labels"):
                import numpy as np
                from PIL import Image
                labs = {p.stem: np.asarray(Image.open(p)) for p in images_in(spec["labels"])}
                res["agreement"] = _agreement(labs, spec["ref"])
        elif spec["mode"] == "train_api":      # under torchrun: every rank trains, each reports its peak
            import pixelseg
            pixelseg.train(spec["data"], quiet=rank != "0", **spec["options"])
            res = {"ok": True, "peak_mb": _peak_mb()}
        else:
            res = {"infer": _infer, "serve": _serve}[spec["mode"]](spec)
    except Exception as e:
        res = {"ok": False, "error": one_line(f"{type(e).__name__}: {e}")}
    Path(f"{spec['result']}.{rank}").write_text(json.dumps(res))
    sys.stdout.flush()
    sys.stderr.flush()
    # like pixelseg's CLI under torchrun: skip interpreter finalization (gloo threads); and stop a server thread
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
