"""`pixelseg models`: the model zoo as a table that fits an 80-column terminal, or JSON."""
from __future__ import annotations

import json
import os

from pixelseg.cli.common import POSITIVE_INT, console, size

# header, justification, may wrap: the short columns never wrap (a number cut in two is misread); the
# encoder folds and the typical use wraps, so every column stays on screen at 80 columns
COLUMNS = (("name", "left", False), ("family", "left", False), ("encoder", "left", True), ("params", "right", False),
           ("GFLOPs", "right", False), ("ONNX", "left", False), ("aux", "right", False), ("typical use", "left", True))


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="the model zoo: family, parameters, GFLOPs at 512x512, ONNX export, typical use")
    m.add_argument("filter", nargs="*", help="keep models whose name, family or use contains every word (e.g. real-time, fcn)")
    m.add_argument("--family", help="only this family (FCN, SegNet, U-Net, PSPNet, DeepLab, FPN, UPerNet, SegFormer, real-time)")
    m.add_argument("--size", type=POSITIVE_INT, nargs="+", default=[512], metavar=("H", "W"),
                   help="input size for GFLOPs (default 512)")
    m.add_argument("--classes", type=POSITIVE_INT, default=21, help="classes for the head (default %(default)s, as in VOC)")
    m.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    m.set_defaults(handler=cmd_models)


def cmd_models(a) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from pixelseg.models.profile import model_rows, select
    hw = size(a.size, "--size")
    rows = model_rows(select(a.filter, a.family), a.classes, hw)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    t = Table(title=f"pixelseg models: {a.classes} classes, RGB; encoder = the registered default (`train` gives the "
                    "smp models tu-tf_efficientnet_lite0 with its installed ImageNet weights); GFLOPs = "
                    f"multiply-accumulates at {hw[0]}x{hw[1]}; aux = auxiliary heads",
              box=box.SIMPLE_HEAD, padding=0, pad_edge=False)
    for header, justify, wraps in COLUMNS:
        t.add_column(header, justify=justify, no_wrap=not wraps, overflow="fold",
                     min_width=8 if header == "encoder" else None, ratio=1 if header == "typical use" else None)
    notes = []
    for r in rows:
        if not r["onnx"]:
            notes.append(f"{r['name']}: no ONNX export: {r['onnx_note']}")
        t.add_row(r["name"], r["family"], r["encoder"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.1f}",
                  "yes" if r["onnx"] else "no*", str(r["aux_heads"] or ""), r["use"])
    con = console()
    # piped or logged without a COLUMNS setting: a fixed wide table rather than rich's default of 80 columns
    out = con if con.is_terminal or "COLUMNS" in os.environ else Console(width=160)
    out.print(t)
    for note in notes:
        print(f"* {note}")
    _print_offline(out)
    return 0


def _print_offline(con) -> None:
    """The encoders whose ImageNet weights install as a package: pretrained with no network."""
    from rich import box
    from rich.table import Table

    from pixelseg.models import pretrained
    t = Table(title="ImageNet encoders that need no network (use with unet, fpn, deeplabv3plus, deeplabv3, upernet, "
                    "pspnet: --encoder tu-<name>)", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for header in ("encoder", "weights", "ImageNet top-1", "here"):
        t.add_column(header, no_wrap=header != "here", overflow="fold")
    for name, entry in pretrained.PACKAGED.items():
        try:
            path = pretrained.installed(entry)
            here = (f"installed ({path.stat().st_size / 1e6:.1f} MB, {entry.licence})" if path
                    else f"not installed: {entry.pip} ({entry.size_mb:g} MB)")
        except Exception as e:  # noqa: BLE001 - a broken install is shown, not raised, in a listing
            here = f"broken: {e}"
        t.add_row(f"tu-{name}", f"{entry.package}", f"{entry.top1:.1f} %", here)
    con.print(t)
