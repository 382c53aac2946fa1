"""`pixelseg calibrate`: a temperature fitted on the val split lowers the ECE of an over-confident model, is
stored in model.json, and the report shows the reliability diagram before and after it."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from pixelseg import cli
from pixelseg.reports.builder import build_report
from pixelseg.run.folder import RunFolder


def _overconfident_copy(run, dest, factor: float = 5.0):
    """The run with its last layer (the K-channel logits) scaled: the same labels, probabilities near 0 or 1."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report"))
    k = RunFolder(dest).info().classes.num_classes
    state = load_file(str(dest / "model.safetensors"))
    last = [n for n, t in state.items() if n.endswith("weight") and t.dim() == 4 and t.shape[0] == k][-1]
    state[last] = state[last] * factor
    bias = last[:-len("weight")] + "bias"
    if bias in state:
        state[bias] = state[bias] * factor
    save_file(state, str(dest / "model.safetensors"))
    return dest


@pytest.mark.slow
def test_calibrate_lowers_ece_and_is_stored(tiny_run, tiny_data, tmp_path, capsys, html_tables):
    hot = _overconfident_copy(tiny_run, tmp_path / "hot")
    before = cli.main(["evaluate", str(hot), "--data", str(tiny_data), "--device", "cpu", "--no-report",
                       "--json", str(tmp_path / "m0.json")])
    assert before == 0
    assert cli.main(["calibrate", str(hot), "--data", str(tiny_data), "--device", "cpu",
                     "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "ECE" in out and "->" in out
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["temperature_before"] == 1.0 and r["temperature"] > 1.5         # softened, as an over-confident model needs
    assert r["ece"] < 0.5 * r["ece_before"] and r["ece_before"] == pytest.approx(r["ece_raw"])
    assert json.loads((hot / "model.json").read_text())["model"]["temperature"] == r["temperature"]
    assert RunFolder(hot).info().temperature == r["temperature"]
    # labels (hence every metric) do not move
    assert cli.main(["evaluate", str(hot), "--data", str(tiny_data), "--device", "cpu", "--no-report",
                     "--json", str(tmp_path / "m1.json")]) == 0
    m0, m1 = (json.loads((tmp_path / n).read_text()) for n in ("m0.json", "m1.json"))
    assert m0["per_class"] == m1["per_class"] and m0["mIoU"] == m1["mIoU"]

    html = build_report(hot, tiny_data, device="cpu")
    a = json.loads((hot / "report" / "analysis.json").read_text())
    assert a["temperature"] == r["temperature"]
    assert a["calibration"]["ece"] < a["calibration_before"]["ece"]
    assert (hot / "report" / "calibration_before.png").is_file()
    rows = {row[1][0][1]: row[1][1][1] for row in html_tables(html)["calibration-table"]}
    assert rows["temperature (pixelseg calibrate)"] == f"{r['temperature']:.4g}"
    assert "reliability diagram before calibration" in html.read_text()


@pytest.mark.slow
def test_calibrate_a_second_time_starts_from_the_raw_logits(tiny_run, tiny_data, tmp_path, capsys):
    hot = _overconfident_copy(tiny_run, tmp_path / "hot2")
    assert cli.main(["calibrate", str(hot), "--data", str(tiny_data), "--device", "cpu", "--json",
                     str(tmp_path / "a.json")]) == 0
    assert cli.main(["calibrate", str(hot), "--data", str(tiny_data), "--device", "cpu", "--json",
                     str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert b["temperature"] == pytest.approx(a["temperature"], rel=1e-6)    # not T compounded on T
    assert b["temperature_before"] == a["temperature"] and b["ece_before"] == pytest.approx(a["ece"])
    assert cli.main(["calibrate", str(hot), "--data", str(tiny_data), "--split", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
