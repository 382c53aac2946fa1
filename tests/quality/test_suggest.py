"""`pixelseg suggest`: the same list for the same seed, near-duplicates of the most uncertain image are not
all picked, the outputs (JSON, txt, gallery) agree, and user mistakes are one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixelseg.cli import main
from pixelseg.data.tools.synth import make_scene
from pixelseg.errors import PixelsegError
from pixelseg.quality.suggest import suggest, uncertain_boxes


@pytest.fixture(scope="module")
def tiny_run(tiny_unet_run, tmp_path_factory):
    root, run = tiny_unet_run
    pool = tmp_path_factory.mktemp("suggestpool")
    for i in range(8):
        Image.fromarray(make_scene(np.random.default_rng(50 + i), (32, 32))[0]).save(pool / f"u{i}.png")
    return root, run, pool


def test_same_seed_same_list_and_outputs_agree(tiny_run, tmp_path):
    _, run, pool = tiny_run
    a = suggest(run, pool, 4, seed=3, out=tmp_path / "a", device="cpu", gallery=2)
    b = suggest(run, pool, 4, seed=3, out=tmp_path / "b", device="cpu", gallery=2)
    assert a["picked"] == b["picked"] and len(a["picked"]) == 4 and a["pool_size"] == 8
    assert len({e["image"] for e in a["picked"]}) == 4
    assert (tmp_path / "a" / "suggest.json").read_bytes() == (tmp_path / "b" / "suggest.json").read_bytes().replace(
        str(tmp_path / "b").encode(), str(tmp_path / "a").encode())
    assert (tmp_path / "a" / "suggest.txt").read_text().splitlines() == [e["image"] for e in a["picked"]]
    assert (tmp_path / "a" / "suggest.html").read_text().count("data:image/png;base64,") == 2


def test_near_duplicates_of_the_most_uncertain_image_are_not_all_picked(tiny_run, tmp_path):
    _, run, pool = tiny_run
    ranked = suggest(run, pool, 8, out=tmp_path / "all", device="cpu", gallery=0)["picked"]
    hardest = max(ranked, key=lambda e: e["score"])["image"]
    dup = tmp_path / "dup"
    dup.mkdir()
    img = np.asarray(Image.open(hardest)).astype(np.int16)
    rng = np.random.default_rng(0)
    for i in range(5):                           # five near-copies: one-level noise on every pixel
        Image.fromarray(np.clip(img + rng.integers(-1, 2, img.shape), 0, 255).astype(np.uint8)).save(dup / f"copy{i}.png")
    for p in sorted(pool.iterdir()):
        if str(p) != hardest:
            Image.open(p).save(dup / p.name)
    res = suggest(run, dup, 3, out=tmp_path / "s", device="cpu", gallery=0)
    copies = [e for e in res["picked"] if "copy" in e["image"]]
    assert len(copies) == 1 and copies[0]["rank"] == 1
    scores = json.loads((tmp_path / "s" / "suggest.json").read_text())["picked"]
    assert [e["rank"] for e in scores] == [1, 2, 3]


@pytest.mark.slow
def test_balanced_weighs_by_the_runs_training_labels(tiny_run, tmp_path):
    import shutil

    from pixelseg.cli.audit import SUGGEST_KINDS
    from pixelseg.run.folder import RunFolder
    from pixelseg.quality.suggest import KINDS
    from pixelseg.quality.ranking import rarity_weights
    assert SUGGEST_KINDS == KINDS
    _, run, pool = tiny_run
    a = suggest(run, pool, 8, out=tmp_path / "a", kind="balanced", device="cpu", gallery=0)
    assert a == suggest(run, pool, 8, out=tmp_path / "a", kind="balanced", device="cpu", gallery=0)
    counts = RunFolder(run).recipe()["class_pixels"]["train"][:-1]       # the ignored pixels' count is last
    assert a["class_weights"] == [round(float(w), 4) for w in rarity_weights(counts)]
    assert len(set(a["class_weights"])) > 1          # the tiny run's classes are not equally common
    # a run folder without its recipe (e.g. pulled without it) has no counts: balanced is plain entropy
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "recipe.json").unlink()
    b = suggest(bare, pool, 8, out=tmp_path / "b", kind="balanced", device="cpu", gallery=0)
    e = suggest(bare, pool, 8, out=tmp_path / "e", kind="entropy", device="cpu", gallery=0)
    assert b["class_weights"] == [1.0] * len(counts) and "class_weights" not in e
    assert [x["image"] for x in b["picked"]] == [x["image"] for x in e["picked"]]
    np.testing.assert_allclose([x["score"] for x in b["picked"]], [x["score"] for x in e["picked"]], rtol=1e-6)
    with pytest.raises(PixelsegError, match="balanced"):
        suggest(run, pool, 2, out=tmp_path / "c", kind="bald", device="cpu")


def test_uncertain_boxes_outline_the_unsure_regions():
    ent = np.zeros((40, 50), np.float32)
    ent[5:15, 10:30] = 0.9
    ent[30:31, 40:42] = 0.8                        # 2 px (< 0.2 % of the image): too small to mark
    assert uncertain_boxes(ent) == [[10, 5, 30, 15]]


@pytest.mark.parametrize("args, needle", [
    (["suggest", "{tmp}/nowhere", "{pool}"], "run folder not found"),
    (["suggest", "{tmp}", "{pool}"], "not a pixelseg run folder"),
    (["suggest", "{run}", "{tmp}/nopool"], "not found"),
    (["suggest", "{run}", "{tmp}"], "holds no images"),
])
def test_cli_mistakes_are_one_line(tiny_run, tmp_path, capsys, args, needle):
    _, run, pool = tiny_run
    rc = main([a.format(tmp=tmp_path, run=run, pool=pool) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_suggest_prints_and_writes(tiny_run, tmp_path, capsys):
    _, run, pool = tiny_run
    assert main(["suggest", str(run), str(pool), "--n", "2", "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    listed = (tmp_path / "o" / "suggest.txt").read_text().splitlines()
    assert len(listed) == 2 and all(p in out for p in listed)
