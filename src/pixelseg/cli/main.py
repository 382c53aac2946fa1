"""The command line: parses arguments, calls the library, prints. A user's mistake ends in one line on
stderr and a non-zero exit (2), never a traceback. Each command's parser sits beside its handler in this
package; this file puts them in the order of the work (data, model, training, measuring, using, shipping)."""
from __future__ import annotations

import os
import sys

from pixelseg.cli import audit, data, evaluate, export, hub, models, predict, quickstart, runs, serve, train
from pixelseg.cli.common import Parser, apply_max_pixels
from pixelseg.errors import PixelsegError

# quickstart first (the whole flow), then the flow itself: look at the data, pick a model, train, measure,
# use, ship, share. `--help` lists the commands in this order.
COMMANDS = (quickstart.add_parser, data.add_parsers, models.add_parser, train.add_parser, evaluate.add_parsers,
            audit.add_parsers, predict.add_parser, export.add_parsers, serve.add_parser, hub.add_parsers,
            runs.add_parsers)


def build_parser() -> Parser:
    ap = Parser(prog="pixelseg", description="Semantic segmentation: data -> model -> metrics -> predictions. "
                "`pixelseg COMMAND --help` for a command's options.")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    ap.set_defaults(root_parser=ap)      # `pixelseg completion` writes its script from the whole parser
    return ap


# commands that only read a run take an hf://user/name[@rev] reference in its place (pulled into the Hub cache);
# calibrate and tune-threshold write into the run, so they want a folder of the user's (`pixelseg pull --out`)
HUB_READERS = {"evaluate", "report", "compare", "export", "bench", "serve", "audit", "suggest", "predict"}
HUB_WRITERS = {"calibrate", "tune-threshold"}


def pull_hub_runs(args) -> None:
    """Replace hf:// references among the command's run arguments by the pulled run folders."""
    refs = [(attr, v) for attr in ("run", "source") if isinstance(v := getattr(args, attr, None), str)]
    refs += [("runs", v) for v in getattr(args, "runs", None) or []]
    if not any(v.startswith("hf://") for _, v in refs):
        return
    if args.command in HUB_WRITERS:
        ref = next(v for _, v in refs if v.startswith("hf://"))
        raise PixelsegError(f"{ref}: `pixelseg {args.command}` writes into the run; pull it into a folder of yours "
                            f"first (`pixelseg pull {ref[5:]} --out DIR`) and give DIR")
    if args.command not in HUB_READERS:
        return
    from pixelseg.hub import resolve_source
    for attr in ("run", "source"):
        v = getattr(args, attr, None)
        if isinstance(v, str) and v.startswith("hf://"):
            setattr(args, attr, str(resolve_source(v)))
    if getattr(args, "runs", None):
        args.runs = [str(resolve_source(v)) if v.startswith("hf://") else v for v in args.runs]


def _version() -> str:
    from pixelseg import __version__
    return f"pixelseg {__version__}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    from pixelseg.errors import PixelsegWarning
    warnings.filterwarnings("ignore", category=PixelsegWarning)   # each command prints its own "warning:" lines
    try:
        apply_max_pixels(args)          # the decode gate's limit, for every command that takes --max-pixels
        pull_hub_runs(args)
        return args.handler(args)
    except PixelsegError as e:
        print(f"pixelseg: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = missing_extra(e.name or "")
        if extra is None:
            raise
        print(f"pixelseg: error: `pixelseg {args.command}` needs {e.name}, part of the '{extra}' extra; install it "
              f"with: pip install 'pixelseg[{extra}]' (in a checkout: EXTRAS={extra} bash scripts/setup.sh)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelseg: interrupted", file=sys.stderr)
        return 130


# the optional dependencies (pyproject.toml [project.optional-dependencies]) by their top-level module
EXTRA_OF = {"fastapi": "serve", "uvicorn": "serve", "multipart": "serve", "python_multipart": "serve",
            "prometheus_client": "serve", "fastapi_offline": "serve", "onnx": "export", "onnxscript": "export",
            "onnxruntime": "export", "openvino": "export", "pycocotools": "formats", "cityscapesscripts": "formats",
            "tensorboard": "logging", "huggingface_hub": "hub", "mlflow": "mlflow", "wandb": "wandb",
            "rasterio": "geo", "pyogrio": "geo", "shapely": "geo"}


def missing_extra(module: str) -> str | None:
    """The extra that provides a module that failed to import, or None when it is not an optional one."""
    return EXTRA_OF.get(module.split(".")[0])


def exit_process(code) -> None:
    """sys.exit(code), except under torchrun: there the process leaves without the interpreter's finalization.
    gloo's worker threads can still hold work objects whose tensors are freed after Python is gone, which
    aborted a finished rank now and then ("terminate called without an active exception", SIGABRT; see
    pytorch/pytorch#179291). By then every output is closed and fsynced (atomic writes) and the process group
    destroyed, so nothing is lost."""
    from pixelseg.torchrun import world
    try:
        many = world()[1] > 1
    except PixelsegError:        # a malformed environment was already reported; leave the normal way
        many = False
    if many:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)
    sys.exit(code)
