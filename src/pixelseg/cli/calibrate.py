"""`pixelseg calibrate`: the temperature that makes a run's probabilities honest, stored in the run."""
from __future__ import annotations

from pixelseg.cli.common import DATA_HELP, POSITIVE_INT


def add_parser(sub) -> None:
    c = sub.add_parser("calibrate", help="fit a temperature so that confidence matches accuracy (probabilities "
                                         "only: label maps and metrics do not change); stored in the run")
    c.add_argument("run", help="run folder")
    c.add_argument("--data", help=DATA_HELP)
    c.add_argument("--split", default="val", help="labelled split to fit on (default %(default)s; not the test "
                                                  "split you report on)")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    c.add_argument("--sample-pixels", type=POSITIVE_INT, default=200_000,
                   help="labelled pixels sampled over the split to fit on (default %(default)s)")
    c.add_argument("--json", help="also write the result to this JSON file")
    c.set_defaults(handler=cmd_calibrate)


def cmd_calibrate(a) -> int:
    from pixelseg.measure.verbs import calibrate
    from pixelseg.fileio import write_json
    from pixelseg.run.folder import RunFolder
    r = calibrate(a.run, a.data, a.split, a.device, a.sample_pixels)
    print(f"{a.split} split of {r['data']} ({r['images']} images, {r['pixels']:,} pixels sampled)")
    print(f"temperature {r['temperature_before']:.3g} -> {r['temperature']:.3g}")
    print(f"ECE         {100 * r['ece_before']:.2f}% -> {100 * r['ece']:.2f}%  (expected calibration error: "
          "|accuracy - confidence| over 15 confidence bins)")
    if r["ece"] > r["ece_raw"]:
        # the temperature minimizes the likelihood loss, not the binned ECE; a model that is over-confident in
        # some bins and under-confident in others cannot be fixed by one scalar
        print("note: the ECE did not drop: this model is not simply over- or under-confident, which one temperature "
              "cannot fix")
    print(f"written to {RunFolder(a.run).model_json}: predict --uncertainty, serve's confidence and the report use "
          "it; labels unchanged")
    if a.json:
        write_json(a.json, r)
    return 0
