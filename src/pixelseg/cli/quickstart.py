"""`pixelseg quickstart`: the library's quickstart (pixelseg/quickstart.py), printed."""
from __future__ import annotations

from pixelseg.cli.common import POSITIVE, print_metrics


def add_parser(sub) -> None:
    from pixelseg.quickstart import MINUTES
    q = sub.add_parser("quickstart", help="make the built-in data, train, evaluate, predict: the whole flow in minutes")
    q.add_argument("--out", default="quickstart", help="folder for the data, the run and the predictions "
                   "(default %(default)s)")
    q.add_argument("--max-minutes", type=POSITIVE, default=MINUTES, help="training budget (default %(default)s)")
    q.set_defaults(handler=cmd_quickstart)


def cmd_quickstart(a) -> int:
    from pixelseg.quickstart import quickstart
    r = quickstart(a.out, a.max_minutes, say=print)
    m = print_metrics(r.metrics, f"validation: {r.data}/val at original resolution")
    print(f"\ndone in {r.seconds / 60:.1f} min. mIoU {m['mIoU']:.4f} on {m['images']} val images "
          f"({m.get('hardware')}, {m['train_seconds'] / 60:.1f} min of training)")
    print(f"  data:        {r.data}")
    print(f"  run folder:  {r.run}  (model.safetensors, model.json, config.yaml, metrics.csv, metrics.json)")
    print(f"  predictions: {r.predictions}  (<stem>.png label maps, <stem>_overlay.png with legends)")
    print(f"  report:      {r.report}  (curves, per-class IoU, confusion, worst images)")
    return 0
