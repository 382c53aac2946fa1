"""Settings at their edges that the config table's bounds cannot hold (issue 27, item 1): the CPU thread count
(a bound that depends on the machine) and a run's temperature (the range calibrate fits in)."""
from __future__ import annotations

import os

import pytest

from pixelseg.config import THREADS_PER_CORE, check_threads, from_dict, threads_problem
from pixelseg.errors import PixelsegError


def test_threads_are_bounded_by_the_cores():
    top = THREADS_PER_CORE * (os.cpu_count() or 1)
    assert threads_problem(None) is None and threads_problem(1) is None and threads_problem(top) is None
    for bad in (0, -1, top + 1, 100_000, 1.5, True, "4"):
        assert threads_problem(bad), bad
    with pytest.raises(PixelsegError, match=rf"^--threads must be in \[1, {top}\].*got 100000$"):
        check_threads(100_000)
    with pytest.raises(PixelsegError, match=r"train\.threads \(--threads\) must be in"):
        from_dict({"train": {"threads": 100_000}})


def test_predictor_refuses_threads_tile_and_overlap_before_loading_a_model(tmp_path):
    """The run path does not exist: a refusal naming the setting proves nothing was loaded first."""
    from pixelseg.inference.predictor import Predictor
    for kwargs, word in [(dict(threads=100_000), "--threads"), (dict(tile=(4, 4)), "--tile 4 4"),
                         (dict(tile=(7, 100)), "--tile 7 100"), (dict(overlap=1.0), "--overlap 1.0")]:
        with pytest.raises(PixelsegError, match=word):
            Predictor(tmp_path / "no-run", device="cpu", **kwargs)


def test_the_temperature_range_is_the_one_calibrate_fits_in(tmp_path):
    import dataclasses
    import json

    from pixelseg.inference.bench import model_run
    from pixelseg.measure.calibration import T_MAX, T_MIN
    from pixelseg.run.folder import TEMPERATURE_RANGE, RunFolder

    assert TEMPERATURE_RANGE == (T_MIN, T_MAX)
    run = model_run("fast_scnn", (32, 32), 2, tmp_path / "run")
    folder = RunFolder(run)
    for t in (T_MIN, 1.0, T_MAX):
        folder.write_info(dataclasses.replace(folder.info(), temperature=t))
        assert RunFolder(run).info().temperature == t
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e300, 1e-300, T_MAX * 1.01, "warm", True):
        d = json.loads((run / "model.json").read_text())
        d["model"]["temperature"] = bad
        (run / "model.json").write_text(json.dumps(d))
        with pytest.raises(PixelsegError, match=r"model\.json.*model\.temperature") as e:
            RunFolder(run).info()
        assert "\n" not in str(e.value)
