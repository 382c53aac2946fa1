"""Does distillation help? A small student trained with and without a teacher for the same number of
steps on the built-in data, same seed, same data order; prints the best validation mIoU of each.

    python benchmarks/distill.py [--teacher-model unet --teacher-epochs 12] [--student fast_scnn --epochs 4]
                                 [--temperature 1 --weight 1] [--data DIR]

The teacher is trained first (or given with --teacher-run). The student budget is counted in epochs,
not minutes, so both students see exactly the same batches; the wall time of each is printed too (the
distilled one also runs the teacher forward).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pixelseg
from pixelseg.data.tools.synth import generate
from pixelseg.run.folder import RunFolder  # noqa: E402


def _train(data, model, out, **kw) -> tuple[float, float]:
    t0 = time.time()
    run = pixelseg.train(data, model, out=str(out), quiet=True, **kw)
    m = RunFolder(run).metrics()
    return m["mIoU"], time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="dataset root (default: the built-in data, 128x128)")
    ap.add_argument("--teacher-run", help="an already trained run to distill from")
    ap.add_argument("--teacher-model", default="unet")
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--student", default="fast_scnn")
    ap.add_argument("--epochs", type=int, default=4, help="student budget (both students)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--train-images", type=int, default=400, help="built-in data size (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    common = {"image_size": (a.image_size, a.image_size), "batch_size": 8, "num_workers": 0, "seed": a.seed}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(a.data) if a.data else tmp / "data"
        if not a.data:
            generate(data, n_train=a.train_images, n_val=max(20, a.train_images // 4), size=(128, 128), seed=0, workers=2)
        if a.teacher_run:
            teacher, t_miou, t_s = Path(a.teacher_run), RunFolder(a.teacher_run).metrics()["mIoU"], 0.0
        else:
            teacher = tmp / "teacher"
            t_miou, t_s = _train(data, a.teacher_model, teacher, epochs=a.teacher_epochs, **common)
        plain, plain_s = _train(data, a.student, tmp / "plain", epochs=a.epochs, **common)
        kd, kd_s = _train(data, a.student, tmp / "kd", epochs=a.epochs, teacher=str(teacher),
                          distill_temperature=a.temperature, distill_weight=a.weight, **common)
    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    t_name = f"teacher {a.teacher_run}" if a.teacher_run else f"teacher {a.teacher_model}"
    rows = [(t_name, 0 if a.teacher_run else a.teacher_epochs, t_miou, t_s),
            (f"student {a.student}", a.epochs, plain, plain_s),
            (f"student {a.student} + KD (T={a.temperature:g}, w={a.weight:g})", a.epochs, kd, kd_s)]
    print(f"distillation on {'the built-in data' if not a.data else a.data} ({host}, seed {a.seed})")
    print(f"{'run':48s} {'epochs':>6s} {'val mIoU':>9s} {'wall s':>7s}")
    for name, ep, miou, s in rows:
        print(f"{name:48s} {ep:6d} {miou:9.4f} {s:7.0f}")
    print(f"KD - plain: {kd - plain:+.4f} mIoU")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "delta": kd - plain, "host": host}, indent=1))


if __name__ == "__main__":
    main()
