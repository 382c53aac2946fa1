import json
import math
import warnings

import numpy as np
import pytest
import torch

from pixelseg.errors import PixelsegError
from pixelseg.measure.metrics import (
    ConfusionMatrix,
    class_accuracy,
    dice,
    format_table,
    fw_iou,
    iou,
    mean_accuracy,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    summarize,
)

# A 3-class example with two ignore pixels (255), written out so the counts can be checked by hand.
TARGET = np.array([[0, 0, 0, 1],
                   [1, 1, 2, 2],
                   [255, 255, 0, 1]], dtype=np.uint8)
PRED = np.array([[0, 0, 1, 1],
                 [1, 2, 2, 0],
                 [2, 1, 0, 1]], dtype=np.int64)
# rows = ground truth, columns = prediction; the (255, 2) and (255, 1) pixels are not counted
EXPECTED = np.array([[3, 1, 0],
                     [0, 3, 1],
                     [1, 0, 1]], dtype=np.int64)


def filled(pred=PRED, target=TARGET, k=3):
    cm = ConfusionMatrix(k)
    cm.update(pred, target)
    return cm


def test_matrix_matches_hand_count_and_skips_ignore():
    cm = filled()
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, EXPECTED)
    assert cm.matrix.sum() == 10  # 12 pixels, 2 ignored


def test_hand_computed_metrics():
    m = EXPECTED
    np.testing.assert_allclose(iou(m), [3 / 5, 3 / 5, 1 / 3])
    np.testing.assert_allclose(class_accuracy(m), [3 / 4, 3 / 4, 1 / 2])
    np.testing.assert_allclose(dice(m), [6 / 8, 6 / 8, 2 / 4])
    assert pixel_accuracy(m) == pytest.approx(7 / 10)
    assert mean_iou(m) == pytest.approx((3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert mean_accuracy(m) == pytest.approx(2 / 3)
    assert mean_dice(m) == pytest.approx(2 / 3)
    # ground-truth shares 4/10, 4/10, 2/10
    assert fw_iou(m) == pytest.approx(0.4 * 0.6 + 0.4 * 0.6 + 0.2 / 3)
    assert iou(m).dtype == np.float64


def test_absent_and_prediction_only_classes():
    # class 2 appears only in the prediction, class 3 nowhere
    cm = filled(np.array([0, 2, 1, 1]), np.array([0, 0, 1, 1]), k=4)
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    ious = iou(cm.matrix)
    assert ious[2] == 0.0 and math.isnan(ious[3])
    assert mean_iou(cm.matrix) == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # pred-only counts, absent does not
    acc = class_accuracy(cm.matrix)
    assert math.isnan(acc[2]) and math.isnan(acc[3])
    assert mean_accuracy(cm.matrix) == pytest.approx(0.75)
    d = dice(cm.matrix)
    assert d[2] == 0.0 and math.isnan(d[3])
    s = summarize(cm.matrix, ["a", "b", "c", "d"])
    assert s["classes_absent"] == ["d"]
    assert s["per_class"]["d"] == {"iou": None, "accuracy": None, "dice": None, "gt_pixels": 0, "pred_pixels": 0}
    assert s["per_class"]["c"]["iou"] == 0.0 and s["per_class"]["c"]["accuracy"] is None
    assert s["per_class"]["c"]["pred_pixels"] == 1
    assert s["mIoU"] == pytest.approx(0.5)


def test_empty_matrix_is_nan_without_warnings():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), np.int64), np.full((2, 2), 255))  # everything ignored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = cm.matrix
        assert m.sum() == 0
        for f in (iou, class_accuracy, dice):
            assert np.isnan(f(m)).all()
        for f in (pixel_accuracy, mean_iou, mean_accuracy, fw_iou, mean_dice):
            assert math.isnan(f(m))
        s = summarize(m, ["a", "b", "c"])
    assert s["mIoU"] is None and s["num_pixels"] == 0 and s["classes_absent"] == ["a", "b", "c"]
    json.dumps(s, allow_nan=False)
    np.testing.assert_array_equal(ConfusionMatrix(3).matrix, np.zeros((3, 3)))  # never updated


def test_out_of_range_target_names_the_values():
    target = TARGET.copy()
    target[0, 0], target[0, 1] = 7, 9
    with pytest.raises(PixelsegError, match=r"7, 9") as e:
        filled(PRED, target)
    assert "255" in str(e.value) and "0..2" in str(e.value)
    with pytest.raises(PixelsegError, match="-1"):
        filled(PRED, np.where(TARGET == 2, -1, TARGET.astype(np.int64)))


def test_out_of_range_prediction():
    pred = PRED.copy()
    pred[0, 0] = 3
    with pytest.raises(PixelsegError, match="prediction value.*3"):
        filled(pred, TARGET)
    pred = PRED.copy()
    pred[2, 0] = 5  # at an ignored pixel: not counted, not checked
    np.testing.assert_array_equal(filled(pred, TARGET).matrix, EXPECTED)


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(PixelsegError, match="same shape"):
        cm.update(PRED[:2], TARGET)
    with pytest.raises(PixelsegError, match="argmax"):
        cm.update(torch.randn(3, 4), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(PixelsegError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=1)


def test_streaming_chunks_equal_one_update():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, size=(6, 9, 7))
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, 5, size=target.shape)
    whole = filled(pred, target, k=5)
    chunks = ConfusionMatrix(5)
    for i in range(0, 6, 2):
        chunks.update(torch.from_numpy(pred[i:i + 2]), torch.from_numpy(target[i:i + 2]))
    np.testing.assert_array_equal(chunks.matrix, whole.matrix)
    assert whole.matrix.sum() == (target != 255).sum()
    # merging two accumulators is the same as streaming
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(pred[:3], target[:3])
    b.update(pred[3:], target[3:])
    a += b
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    a.reset()
    assert a.matrix.sum() == 0


def test_numpy_and_torch_inputs_agree():
    np_cm = filled(PRED, TARGET)
    t_cm = filled(torch.from_numpy(PRED), torch.from_numpy(TARGET.astype(np.int64)))
    mixed = filled(torch.from_numpy(PRED).int(), TARGET)
    np.testing.assert_array_equal(np_cm.matrix, t_cm.matrix)
    np.testing.assert_array_equal(np_cm.matrix, mixed.matrix)


def test_all_reduce_noop_and_single_rank_group(tmp_path):
    import torch.distributed as dist
    cm = filled()
    assert cm.all_reduce() is cm  # not initialized: no-op
    np.testing.assert_array_equal(cm.matrix, EXPECTED)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cm.all_reduce()
        np.testing.assert_array_equal(cm.matrix, EXPECTED)
        empty = ConfusionMatrix(3).all_reduce()  # a rank that saw no batch still takes part
        np.testing.assert_array_equal(empty.matrix, np.zeros((3, 3)))
    finally:
        dist.destroy_process_group()


def _rank_gathers(rank: int, world: int, store: str, maps: list, out: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cm = ConfusionMatrix(3, per_image=True)
        for i in range(rank, len(maps), world):        # the strided split every pixelseg loop uses
            cm.update(maps[i][0][None], maps[i][1][None])
        cm.all_reduce()
        np.save(f"{out}{rank}.npy", cm.per_image)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_gathers_per_image_matrices_in_split_order(tmp_path):
    """3 ranks, 5 images (shares 2, 2, 1): every rank ends with all 5 per-image matrices in the order one
    process counts them, so bootstrap intervals under torchrun equal a single process's."""
    import torch.multiprocessing as mp
    rng = np.random.default_rng(3)
    maps = [(rng.integers(0, 3, (4, 5)), rng.integers(0, 3, (4, 5))) for _ in range(5)]
    one = ConfusionMatrix(3, per_image=True)
    for p, t in maps:
        one.update(p[None], t[None])
    mp.spawn(_rank_gathers, args=(3, str(tmp_path / "store"), maps, str(tmp_path / "r")), nprocs=3)
    for r in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / f"r{r}.npy"), one.per_image)


def test_summarize_is_json_ready():
    s = summarize(filled().matrix, ["road", "car", "tree"])
    text = json.dumps(s, allow_nan=False)
    back = json.loads(text)
    assert set(back) == {"mIoU", "pixel_accuracy", "mean_accuracy", "fw_iou", "mean_dice", "num_pixels",
                         "classes_absent", "per_class"}
    assert back["num_pixels"] == 10 and isinstance(s["num_pixels"], int)
    assert back["per_class"]["tree"] == {"iou": pytest.approx(1 / 3), "accuracy": 0.5, "dice": 0.5,
                                         "gt_pixels": 2, "pred_pixels": 2}
    assert type(s["mIoU"]) is float and 0 <= s["mIoU"] <= 1
    assert back["classes_absent"] == []
    with pytest.raises(PixelsegError):
        summarize(EXPECTED, ["road", "car"])


def test_format_table_renders_absent_and_means():
    from rich.console import Console
    cm = filled(np.array([0, 2, 1, 1]), np.array([0, 0, 1, 1]), k=4)
    console = Console(record=True, width=120)
    console.print(format_table(summarize(cm, ["sky", "car", "bus", "boat"])))
    out = console.export_text()
    assert "boat (absent)" in out and "—" in out
    assert "bus (not in GT)" in out
    assert "mean" in out and "50.0" in out  # mIoU 0.5


def test_fast_argmax_matches_torch_argmax_ties_included():
    from pixelseg.models.outputs import argmax
    g = torch.Generator().manual_seed(0)
    for shape, dim in (((3, 19, 17, 23), 1), ((19, 31, 9), 0)):
        x = torch.randint(0, 3, shape, generator=g).float()      # many ties: the first maximal index wins
        assert torch.equal(argmax(x, dim), x.argmax(dim))
        y = torch.randn(shape, generator=g)
        assert torch.equal(argmax(y, dim), y.argmax(dim))


def reference_matrix(pred, target, k, ignore=255):
    """The plain masked bincount the fast path must reproduce exactly."""
    t, p = np.asarray(target).astype(np.int64).ravel(), np.asarray(pred).astype(np.int64).ravel()
    keep = t != ignore
    return np.bincount(k * t[keep] + p[keep], minlength=k * k).reshape(k, k)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.int64])
def test_fast_path_equals_masked_bincount_for_every_dtype(dtype):
    rng = np.random.default_rng(1)
    k = 19
    target = rng.integers(0, k, size=(3, 33, 47)).astype(dtype)
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, k, size=target.shape).astype(dtype)
    cm = ConfusionMatrix(k, per_image=True).update(pred, target)
    np.testing.assert_array_equal(cm.matrix, reference_matrix(pred, target, k))
    np.testing.assert_array_equal(cm.per_image, [reference_matrix(pred[i], target[i], k) for i in range(3)])
    # torch inputs, and an int64 prediction with a uint8 mask (argmax output against a stored mask)
    mixed = ConfusionMatrix(k).update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target))
    np.testing.assert_array_equal(mixed.matrix, cm.matrix)


def test_per_image_matrices():
    from pixelseg.measure.metrics import per_image_confusion
    rng = np.random.default_rng(2)
    target = rng.integers(0, 4, size=(5, 6, 7))
    target[0] = 255                       # an all-ignore image still has its (empty) matrix
    pred = rng.integers(0, 4, size=target.shape)
    mats = per_image_confusion(pred, target, 4)
    assert mats.shape == (5, 4, 4) and mats.dtype == np.int64
    assert mats[0].sum() == 0 and mats[1].sum() == 42
    for i in range(5):
        np.testing.assert_array_equal(mats[i], filled(pred[i], target[i], k=4).matrix)
    # streamed in batches of 2, 2 and 1 the list is the same, and the total is their sum
    cm = ConfusionMatrix(4, per_image=True)
    for i in range(0, 5, 2):
        cm.update(torch.from_numpy(pred[i:i + 2]), torch.from_numpy(target[i:i + 2]))
    np.testing.assert_array_equal(cm.per_image, mats)
    np.testing.assert_array_equal(cm.matrix, mats.sum(0))
    assert per_image_confusion(pred[1], target[1], 4).shape == (1, 4, 4)      # a 2-D map is one image
    assert per_image_confusion(pred[:0], target[:0], 4).shape == (0, 4, 4)
    other = ConfusionMatrix(4, per_image=True).update(pred[:1], target[:1])
    cm += other
    assert len(cm.per_image) == 6
    with pytest.raises(ValueError, match="per_image=True"):
        _ = ConfusionMatrix(4).per_image
    with pytest.raises(ValueError, match="per-image"):
        cm += ConfusionMatrix(4)
    cm.reset()
    assert cm.per_image.shape == (0, 4, 4)


def test_per_image_errors_name_the_values():
    target = np.zeros((2, 3, 3), np.uint8)
    target[1, 0, 0] = 200                  # between the classes and the ignore index: the fast path must not count it
    with pytest.raises(PixelsegError, match="200"):
        ConfusionMatrix(3, per_image=True).update(np.zeros_like(target), target)
    with pytest.raises(PixelsegError, match="200"):
        ConfusionMatrix(3).update(np.zeros_like(target), target)


def test_negative_and_large_ignore_index():
    rng = np.random.default_rng(3)
    for ignore, dtype in ((-1, np.int64), (1000, np.int32), (65535, np.uint16)):
        target = rng.integers(0, 3, size=(4, 5)).astype(dtype)
        target[0, :3] = ignore
        pred = rng.integers(0, 3, size=(4, 5))
        pred[0, 0] = 7                        # out of range but at an ignored pixel: not counted, not checked
        cm = ConfusionMatrix(3, ignore_index=ignore).update(pred, target)
        np.testing.assert_array_equal(cm.matrix, reference_matrix(pred, target, 3, ignore))
        assert cm.matrix.sum() == 17


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_per_image_counts_equal_cpu():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 19, size=(4, 64, 96)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    pred = torch.from_numpy(rng.integers(0, 19, size=target.shape))
    cpu = ConfusionMatrix(19, per_image=True).update(pred, target)
    gpu = ConfusionMatrix(19, per_image=True).update(pred.cuda(), torch.from_numpy(target).cuda())
    np.testing.assert_array_equal(gpu.per_image, cpu.per_image)
    np.testing.assert_array_equal(gpu.matrix, cpu.matrix)
