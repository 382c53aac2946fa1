"""Dataset commands: `verify-dataset` (the doctor) and `data` (synth here; convert, show, download in
cli/data_commands.py)."""
from __future__ import annotations

from pixelseg.cli.common import NON_NEGATIVE_INT, POSITIVE_INT, size


def add_parsers(sub) -> None:
    from pixelseg.cli.data_commands import add_data_commands, add_verify_args
    v = sub.add_parser("verify-dataset", help="dataset doctor: pairing, decoding, sizes, values, duplicates across "
                       "splits, class frequencies and weights, suggested --image-size; exit 1 on problems")
    v.add_argument("root")
    add_verify_args(v)
    v.set_defaults(handler=cmd_verify)

    d = sub.add_parser("data", help="dataset tools: synth, convert, show, import, download")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    s = dsub.add_parser("synth", help="write the built-in synthetic dataset in the folder format")
    s.add_argument("--out", required=True)
    s.add_argument("--train", type=POSITIVE_INT, default=400, help="training images (default %(default)s)")
    s.add_argument("--val", type=NON_NEGATIVE_INT, default=100, help="validation images (default %(default)s)")
    s.add_argument("--size", type=POSITIVE_INT, nargs="+", default=[128], metavar=("H", "W"),
                   help="image size (default 128)")
    s.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="default %(default)s")
    s.add_argument("--workers", type=POSITIVE_INT, default=2, help="processes (default %(default)s)")
    add_data_commands(dsub)
    d.set_defaults(handler=cmd_data)


def cmd_verify(a) -> int:
    from pixelseg.cli.data_commands import run_verify
    return run_verify(a)


def cmd_data(a) -> int:
    if a.data_command != "synth":
        from pixelseg.cli.data_commands import run_data_command
        return run_data_command(a)
    from pixelseg.data.tools.synth import generate
    hw = size(a.size, "--size")
    summary = generate(a.out, n_train=a.train, n_val=a.val, size=hw, seed=a.seed, workers=a.workers)
    print(f"wrote {a.train} train + {a.val} val images ({hw[0]}x{hw[1]}) to {a.out} "
          f"in {summary.get('seconds', 0):.1f}s")
    return 0
