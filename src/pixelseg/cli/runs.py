"""`pixelseg runs [DIR]`: the run folders under DIR as one table; `pixelseg env`: what this install can do and
what to install for the rest; `pixelseg completion SHELL`: tab completion for every command and flag."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
from datetime import datetime
from pathlib import Path

from pixelseg.cli.common import console
from pixelseg.errors import PixelsegError

# the optional extras, what each gives, and a module that tells whether it is installed (pyproject.toml)
EXTRAS = (("serve", "fastapi", "`pixelseg serve` (HTTP API and web page)"),
          ("export", "onnxruntime", "`export` to ONNX / OpenVINO / INT8, `--backend onnxruntime|openvino`"),
          ("export", "openvino", "OpenVINO, the fastest CPU backend (`--backend auto` picks it)"),
          ("geo", "rasterio", "GeoTIFF / COG images and masks, georeferenced label maps"),
          ("formats", "pycocotools", "COCO polygons and RLE masks"),
          ("hub", "huggingface_hub", "`push` / `pull` and hf:// runs"),
          ("logging", "tensorboard", "--logger tensorboard"),
          ("mlflow", "mlflow", "--logger mlflow"),
          ("wandb", "wandb", "--logger wandb"))


def add_parsers(sub) -> None:
    r = sub.add_parser("runs", help="the run folders under a folder as a table: model, data, budget, steps, mIoU "
                                    "with its interval, date")
    r.add_argument("folder", nargs="?", default="runs", help="where the runs are (default %(default)s; searched two "
                   "levels deep)")
    r.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    r.set_defaults(handler=cmd_runs)
    e = sub.add_parser("env", help="what this install can do: PyTorch, device, CPU features, offline encoders, "
                                   "extras (and the command that installs each missing one)")
    e.add_argument("--json", action="store_true", help="print the facts as JSON")
    e.set_defaults(handler=cmd_env)
    c = sub.add_parser("completion", help="print a shell completion script: eval \"$(pixelseg completion bash)\" "
                                          "(or put it in ~/.bashrc; zsh: pixelseg completion zsh)")
    c.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    c.set_defaults(handler=cmd_completion)


def cmd_completion(a) -> int:
    """shtab (iterative/shtab) writes the script from the parser itself, so every command and flag completes
    and it can never fall out of step with the CLI."""
    import shtab
    print(shtab.complete(a.root_parser, shell=a.shell))
    return 0


def run_rows(folder: str | Path) -> list[dict]:
    """One row per run folder under `folder` (itself, its children and grandchildren), newest first."""
    from pixelseg.run.folder import RunFolder
    root = Path(folder)
    if not root.is_dir():
        raise PixelsegError(f"{root}: no such folder; give the folder that holds your run folders (default runs/)")
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir()),
                  *sorted(q for p in root.iterdir() if p.is_dir() for q in p.iterdir() if q.is_dir())]
    rows = []
    for path in candidates:
        if not RunFolder(path).is_run():
            continue
        run = RunFolder(path)
        try:
            cfg = run.config_dict()
        except PixelsegError:       # a damaged config.yaml: the run is still listed, with what metrics.json says
            cfg = {}
        m, history = run.metrics() or {}, run.history()
        model, train, data = cfg.get("model") or {}, cfg.get("train") or {}, cfg.get("data") or {}
        budget = " / ".join(([f"{train['max_minutes']:g} min"] if train.get("max_minutes") else [])
                            + ([f"{train['epochs']} epochs"] if train.get("epochs") else []))
        stamp = (run.metrics_path if run.metrics_path.is_file() else run.model_json).stat().st_mtime
        rows.append({"run": str(path), "model": model.get("name"), "encoder": model.get("encoder"),
                     "data": data.get("root"), "budget": budget or None,
                     "steps": int(history[-1]["step"]) if history and "step" in history[-1] else None,
                     "mIoU": m.get("mIoU"), "mIoU_ci": m.get("mIoU_ci"), "finished": bool(m),
                     "warnings": len(m.get("verdict") or []), "date": datetime.fromtimestamp(stamp).isoformat("T", "minutes")})
    rows.sort(key=lambda r: r["date"], reverse=True)
    return rows


def cmd_runs(a) -> int:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    rows = run_rows(a.folder)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no run folders under {a.folder} (a run folder holds model.json; train one with `pixelseg train`)")
        return 0
    t = Table(title=f"runs under {a.folder}", box=box.SIMPLE_HEAD)
    for header in ("run", "model", "data", "budget", "steps", "val mIoU [95 % CI]", "date"):
        t.add_column(header, overflow="fold", justify="right" if header in ("steps",) else "left")
    for r in rows:
        if r["mIoU"] is None:
            score = "unfinished"
        else:
            ci = f" [{r['mIoU_ci'][0]:.3f}, {r['mIoU_ci'][1]:.3f}]" if r.get("mIoU_ci") else ""
            score = f"{r['mIoU']:.3f}{ci}" + (f" ({r['warnings']} warning(s))" if r["warnings"] else "")
        model = r["model"] or "?"
        if r["encoder"]:
            model += f" / {r['encoder']}"
        t.add_row(escape(r["run"]), escape(model), escape(str(r["data"] or "—")), r["budget"] or "—",
                  "—" if r["steps"] is None else str(r["steps"]), score, r["date"].replace("T", " "))
    con = console()
    # piped or logged without a COLUMNS setting: a wide table rather than rich's default of 80 columns
    (con if con.is_terminal or "COLUMNS" in os.environ else Console(width=200)).print(t)
    return 0


def cpu_features() -> list[str]:
    """The CPU's matrix extensions that change what is fast here (bf16 training and inference)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return []
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]


def env_facts() -> dict:
    import torch

    from pixelseg import __version__
    from pixelseg.models import pretrained
    facts = {"pixelseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
             "cuda": torch.cuda.is_available(),
             "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
             "cpu": platform.processor() or platform.machine(), "cpu_features": cpu_features(),
             "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
             "offline_encoders": {}, "extras": []}
    for name, entry in pretrained.PACKAGED.items():
        try:
            facts["offline_encoders"][name] = "installed" if pretrained.installed(entry) else entry.pip
        except PixelsegError as e:
            facts["offline_encoders"][name] = f"broken: {e}"
    for extra, module, what in EXTRAS:
        ok = importlib.util.find_spec(module) is not None
        facts["extras"].append({"extra": extra, "module": module, "gives": what, "installed": ok,
                                "install": None if ok else f"pip install 'pixelseg[{extra}]'"})
    return facts


def cmd_env(a) -> int:
    f = env_facts()
    if a.json:
        print(json.dumps(f, indent=1))
        return 0
    con = console()
    device = f"GPU {f['gpu']}" if f["cuda"] else f"CPU only ({f['cores']} cores)"
    feats = ", ".join(f["cpu_features"]) or "none detected"
    con.print(f"pixelseg {f['pixelseg']}, Python {f['python']}, PyTorch {f['torch']}; trains on: {device}")
    bf16 = "amx_bf16" in f["cpu_features"] or "avx512_bf16" in f["cpu_features"]
    con.print(f"CPU features: {feats} (bf16 on this CPU: {'fast' if bf16 else 'emulated and slow: train in fp32'})")
    from rich.markup import escape
    for name, state in f["offline_encoders"].items():
        con.print(escape(f"offline ImageNet encoder tu-{name}: {state}"))
    for e in f["extras"]:
        mark = "[green]yes[/]" if e["installed"] else f"[yellow]no[/]: {escape(e['install'])}"
        con.print(f"  {e['extra']:<8} {e['module']:<16} {mark}  ({escape(e['gives'])})")
    return 0
