"""`pixelseg compare RUN_A RUN_B --data D`: a paired bootstrap on the same images says how sure it is."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from pixelseg import cli
from pixelseg.run.folder import RunFolder


def _constant_copy(run, dest, cls: int):
    """The run with its last layer replaced by a constant answer (class `cls` everywhere): clearly worse."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report"))
    k = RunFolder(dest).info().classes.num_classes
    state = load_file(str(dest / "model.safetensors"))
    last = [n for n, t in state.items() if n.endswith("weight") and t.dim() == 4 and t.shape[0] == k][-1]
    state[last] = state[last] * 0
    bias = last[:-len("weight")] + "bias"
    state[bias] = state[bias] * 0
    state[bias][cls] = 1.0
    save_file(state, str(dest / "model.safetensors"))
    return dest


def test_a_run_compared_with_itself_is_no_difference(tiny_run, tiny_data, tmp_path, capsys):
    assert cli.main(["compare", str(tiny_run), str(tiny_run), "--data", str(tiny_data), "--device", "cpu",
                     "--n-boot", "200", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "verdict: no clear difference" in out
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["mIoU"] == {"difference": 0.0, "low": 0.0, "high": 0.0, "prob_a_better": 0.5}
    assert set(r["per_class_iou"]) == set(r["a"]["per_class"]) and r["images"] == 8 and r["n_boot"] == 200
    assert r["a"]["mIoU"] == r["b"]["mIoU"] and len(r["a"]["mIoU_ci"]) == 2


@pytest.mark.slow
def test_a_better_run_is_called_better(tiny_run, tiny_data, tmp_path, capsys):
    m = json.loads((tiny_run / "metrics.json").read_text())
    k = len(m["per_class"])
    worse = _constant_copy(tiny_run, tmp_path / "worse", k - 1)
    # the runs' own data (both were trained on tiny_data): --paired needs no --data
    assert cli.main(["compare", str(tiny_run), str(worse), "--paired", "--device", "cpu",
                     "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["b"]["mIoU"] < r["a"]["mIoU"]
    assert r["mIoU"]["low"] > 0 and r["mIoU"]["prob_a_better"] > 0.97
    assert r["verdict"].startswith("r is better than worse")
    assert "verdict: r is better than worse" in out
    # --out writes the page: the table, the verdict, each run's settings (the copied run differs in none)
    assert cli.main(["compare", str(tiny_run), str(worse), "--paired", "--device", "cpu", "--n-boot", "200",
                     "--out", str(tmp_path / "cmp.html")]) == 0
    assert f"html: {tmp_path / 'cmp.html'}" in capsys.readouterr().out
    page = (tmp_path / "cmp.html").read_text()
    assert 'id="paired"' in page and "r is better than worse" in page and 'id="runs"' in page
    assert 'data-setting="model"' in page and "≠" not in page and 'class="warn"' not in page
    # swapped: B is the better one
    assert cli.main(["compare", str(worse), str(tiny_run), "--data", str(tiny_data), "--device", "cpu",
                     "--json", str(tmp_path / "d.json")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["mIoU"]["high"] < 0 and d["verdict"].startswith("r is better than worse")
    assert d["mIoU"]["difference"] == -r["mIoU"]["difference"]


def test_compare_paired_errors(tiny_run, tmp_path, capsys):
    assert cli.main(["compare", str(tiny_run), "--paired"]) == 2
    assert "two run folders" in capsys.readouterr().err
