"""`pixelseg train`. Every config field is a flag, generated from the table of options in config.py (help,
default, allowed values, bounds): a new option is added there, and the flag, its help and its check follow."""
from __future__ import annotations

import argparse

from pixelseg.cli.common import add_max_pixels, bounded, check_out_folder, print_metrics, size
from pixelseg.errors import PixelsegError

SECTION_TITLES = {"data": "data", "model": "model, fine-tuning and distillation", "loss": "loss",
                  "train": "training, scale and speed"}


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model on a dataset",
                       description="Train a model on a dataset. Options left out are chosen for the data and the "
                                   "hardware, and the plan is printed before the first step; the run folder keeps "
                                   "the resolved config (RUN/config.yaml).")
    t.add_argument("--config", metavar="YAML", help="YAML config, e.g. RUN/config.yaml to reproduce a run; it is "
                   "checked on its own first, then a flag given here overrides the file's value of the same key")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    t.add_argument("--no-report", action="store_true",
                   help="skip the HTML report written at the end (RUN/report/report.html)")
    add_config_options(t)
    add_max_pixels(t)
    t.set_defaults(handler=run)


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One flag per config field (--data for data.root, --model, --loss, else --field-name), grouped by section."""
    from pixelseg.config import config_fields, option_keys
    flags = {key: short for short, key in option_keys().items()}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, f in config_fields():
        section = key.partition(".")[0]
        if section not in groups:
            groups[section] = p.add_argument_group(SECTION_TITLES[section])
        short = flags[key]
        groups[section].add_argument(f"--{short.replace('_', '-')}", dest=short, **_argument(key, f))


def _argument(key: str, f) -> dict:
    """argparse keywords for one config field: the type from its annotation, its bounds and choices, and its
    help with the default. Every default is None here, so that a flag not given leaves the config file's value."""
    meta, ann = f.metadata, f.type.replace(" ", "")
    shown = meta.get("auto") if f.default is None else f.default
    if isinstance(shown, bool):
        shown = "on" if shown else "off"
    help_ = f"{meta.get('help', '')} (default: {shown if shown is not None else 'none'}; {key})"
    spec: dict = {"default": None, "help": help_.replace("%", "%%")}
    bounds = {k: meta[k] for k in ("gt", "ge", "lt", "le") if k in meta}
    if ann == "bool|None":       # tri-state: None lets pixelseg choose, so both answers need a flag
        spec["action"] = argparse.BooleanOptionalAction
    elif ann == "bool":          # on by default: the flag that turns it off is the one a user needs
        spec["action"] = argparse.BooleanOptionalAction if f.default else "store_true"
    elif ann.startswith(("int", "float")):
        kind = int if ann.startswith("int") else float
        spec.update(type=bounded(kind, **bounds), metavar="N" if kind is int else "X")
    elif ann == "tuple[int,int]|None":
        from pixelseg.config import IMAGE_SIDE_MAX
        spec.update(type=bounded(int, "integer in 1..16384", gt=0, le=IMAGE_SIDE_MAX), nargs="+", metavar=("H", "W"))
    elif ann == "list[float]|str|None":
        spec.update(nargs="+", metavar="W")
    elif meta.get("choices"):
        spec["choices"] = meta["choices"]
    return spec


def run(a) -> int:
    from pixelseg.config import make_config
    from pixelseg.api import train
    from pixelseg.config import option_keys
    from pixelseg.run.folder import RunFolder

    opts = {short: getattr(a, short) for short in option_keys()}
    opts["image_size"] = size(opts["image_size"])
    opts["crop"] = size(opts["crop"], "--crop")
    opts["class_weights"] = class_weights(opts["class_weights"])
    if opts["out"] is not None:
        check_out_folder(opts["out"])
    data, model = opts.pop("data"), opts.pop("model")
    if not a.resume:     # a bad config is one line before torch loads (that alone takes seconds on a busy machine)
        make_config(a.config, data=str(data) if data is not None else None, model=model, **opts)
    from pixelseg.torchrun import world
    if world()[0] != 0:   # under torchrun, rank 0 reports; the others only train
        train(data, model, config=a.config, resume=a.resume, **opts)
        return 0
    run_dir = RunFolder(train(data, model, config=a.config, resume=a.resume, report=not a.no_report, **opts))
    metrics = run_dir.metrics()
    if metrics:
        print_metrics(metrics, f"validation of the best checkpoint ({run_dir.weights})")
    print(f"run folder: {run_dir.path}")
    if not a.no_report:
        print(f"report: {run_dir.report_html}")
    return 0


def class_weights(values):
    if values is None:
        return None
    if len(values) == 1 and values[0].lower() == "auto":
        return "auto"
    try:
        return [float(v) for v in values]
    except ValueError:
        raise PixelsegError(f"--class-weights takes one number per class or 'auto', got {' '.join(values)}") from None
