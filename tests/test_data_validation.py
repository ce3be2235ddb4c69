"""Bad data is refused at the boundary, and float images in 0..1 are divided by 255 once, never twice.

``Dataset.from_arrays`` refuses bad arrays when the dataset is built; ``Dataset.validate`` (which
``finetune`` calls before any step) refuses them again when they were slipped into a built dataset.
Every refusal is a DataError naming the dataset, the split, the field (x or y) and the index or value.
"""
import numpy as np
import pytest

import ftkit
from ftkit import DataError

SEEDS = [0, 1, 2, 3, 4, 5]
N, H, W = 12, 16, 16


def good_images(seed, n=N):
    rng = np.random.default_rng(1000 + seed)
    return rng.integers(0, 256, (n, H, W), dtype=np.uint8), np.arange(n) % 10


def bad_image_cases(seed):
    """(what, bad x, substrings its refusal must hold), drawn with a seeded RNG: wrong dtypes, NaN or inf
    at a random position, values out of range, wrong ranks, an empty split."""
    rng = np.random.default_rng(seed)
    shape = (N, H, W) if rng.random() < 0.5 else (N, H, W, int(rng.choice([1, 3])))
    base = rng.integers(0, 256, shape)                     # int64, in 0..255
    pos = tuple(int(rng.integers(0, n)) for n in shape)
    at = "train x[" + ", ".join(map(str, pos)) + "]"
    floating = [np.float32, np.float64][int(rng.integers(0, 2))]
    cases = [("strings", base.astype(str), ["train x", "strings", "dtype <U"]),
             ("objects", base.astype(object), ["train x", "dtype object"]),
             ("booleans", base > int(rng.integers(0, 256)), ["train x", "dtype bool"])]
    for value, word in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        x = base.astype(floating)
        x[pos] = value
        cases.append((word, x, [f"{at} is {word}", "finite"]))
    for value in (int(rng.integers(256, 100_000)), -int(rng.integers(1, 1000))):
        x = base.copy()
        x[pos] = value
        cases.append((f"int {value}", x, [f"{at} is {value}", "0..255"]))
    for value in (255 + float(rng.uniform(1, 1000)), -float(rng.uniform(0.5, 100))):
        x = base.astype(floating)
        x[pos] = value
        cases.append((f"float {value}", x, [f"{at} is ", "0..255"]))
    rank = [(N,), (N, H, W, 2), (N, H, W, 3, 1), (N, 4, 4), (N, H, W, 4)][int(rng.integers(0, 5))]
    cases.append((f"shape {rank}", rng.integers(0, 256, rank).astype(np.uint8), ["train x", "must have shape",
                                                                                  str(rank)]))
    cases.append(("empty", base[:0].astype(np.uint8), ["'train' split is empty"]))
    return cases


@pytest.fixture(scope="module")
def torch_model():
    return ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)


def torch_weights(model):
    return {k: v.detach().clone() for k, v in model.native.state_dict().items()}


def torch_unchanged(model, before):
    import torch
    now = model.native.state_dict()
    return now.keys() == before.keys() and all(torch.equal(before[k], v) for k, v in now.items())


def refused(call, words, what=""):
    with pytest.raises(DataError) as e:
        call()
    msg = str(e.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"{what}: {missing} not in {msg!r}"
    return msg


@pytest.mark.parametrize("seed", SEEDS)
def test_random_bad_images_are_refused_by_from_arrays(seed):
    x, y = good_images(seed)
    for what, bad, words in bad_image_cases(seed):
        refused(lambda: ftkit.Dataset.from_arrays("mine", (bad, y[:len(bad)]), (x, y)), ["dataset 'mine'", *words],
                what)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_bad_images_slipped_into_a_built_dataset_stop_finetune_before_any_step(torch_model, seed):
    x, y = good_images(seed)
    before, n_runs = torch_weights(torch_model), len(ftkit.session_runs())
    for what, bad, words in bad_image_cases(seed):
        ds = ftkit.Dataset.from_arrays("mine", (x, y), (x, y))
        ds.splits["train"] = ftkit.Split(bad, y[:len(bad)])       # bypasses the constructor's checks
        refused(lambda: ds.validate(), words, what)
        refused(lambda: ftkit.finetune(torch_model, ds, epochs=1, batch_size=4, progress=False),
                ["dataset 'mine'", *words], what)
    assert torch_unchanged(torch_model, before)
    assert len(ftkit.session_runs()) == n_runs


def test_tf_finetune_refuses_bad_images_before_any_step():
    model = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=32, verbose=False)
    before, n_runs = [w.numpy().copy() for w in model.native.weights], len(ftkit.session_runs())
    x, y = good_images(0)
    nan = x.astype(np.float32)
    nan[5, 6, 7] = np.nan
    for bad, words in ((nan, ["train x[5, 6, 7] is nan"]), (x.astype(str), ["train x", "strings"]),
                       (x / 255.0, ["train x", "0..1", "rescaled"])):   # 0..1 floats that were never rescaled
        ds = ftkit.Dataset.from_arrays("mine", (x, y), (x, y))
        ds.splits["train"] = ftkit.Split(bad, y)
        refused(lambda: ftkit.finetune(model, ds, epochs=1, batch_size=4, progress=False), words)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.native.weights))
    assert len(ftkit.session_runs()) == n_runs
    # TF sees the same prepared batch for images given in 0..1 as for the same images in uint8
    from ftkit._frameworks import backend
    data = backend("tf").data
    prepared = [data.prepare(model, data.to_tensors(model, ds.train)[0]).numpy()
                for ds in (ftkit.Dataset.from_arrays("u8", (x, y), (x, y)),
                           ftkit.Dataset.from_arrays("f01", (x / 255.0, y), (x / 255.0, y)))]
    np.testing.assert_allclose(prepared[1], prepared[0], atol=1e-5)


def test_float_images_in_0_1_are_rescaled_once_and_give_the_same_batches_as_uint8(torch_model):
    import torch
    from ftkit._frameworks import backend
    u8, y = good_images(7, n=40)
    f01 = u8.astype(np.float32) / 255
    given = f01.copy()
    ds = ftkit.Dataset.from_arrays("f01", (f01, y), (f01[:20], y[:20]))
    ref = ftkit.Dataset.from_arrays("u8", (u8, y), (u8[:20], y[:20]))
    assert ds.pixel_range == (0, 1) and ref.pixel_range == (0, 255)
    assert ds.train.x.dtype == np.float32
    np.testing.assert_allclose(ds.train.x, u8 * 1.0, atol=1e-3)
    assert np.array_equal(f01, given)                         # the caller's array is not changed
    ds.validate()
    ds.validate()                                              # validate (called again by check) never rescales
    np.testing.assert_allclose(ds.train.x, u8 * 1.0, atol=1e-3)
    sub = ds.subset(2)                                         # nor do subset and Split.take
    assert sub.pixel_range == (0, 1)
    np.testing.assert_allclose(sub.train.x, ref.subset(2).train.x * 1.0, atol=1e-3)
    np.testing.assert_allclose(ds.train.take([3, 1]).x, u8[[3, 1]] * 1.0, atol=1e-3)
    data, cpu = backend("torch").data, torch.device("cpu")
    # (a clone: prepare divides a float tensor in place, and to_tensors may share the split's memory)
    a, b = (data.prepare(torch_model, data.to_tensors(torch_model, d.train, cpu)[0].clone()) for d in (ds, ref))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_first_step_loss_is_the_same_for_0_1_floats_and_uint8():
    u8, y = good_images(8, n=32)
    losses = []
    for x in (u8, u8.astype(np.float32) / 255):
        model = ftkit.load_model("mobilenet_v2", framework="torch", num_classes=10, image_size=32, verbose=False)
        ds = ftkit.Dataset.from_arrays("same", (x, y), (x[:10], y[:10]))
        run = ftkit.finetune(model, ds, epochs=1, batch_size=8, max_steps_per_epoch=2, seed=3, device="cpu",
                             precision="fp32", progress=False)
        losses.append([s["loss"] for s in run.history["steps"]])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # twice /255 differs by ~2%


def test_uint8_images_are_kept_as_they_are(digits):
    x, y = good_images(9)
    ds = ftkit.Dataset.from_arrays("u8", (x, y), (x, y))
    assert ds.train.x is x and ds.pixel_range == (0, 255)
    assert digits.pixel_range == (0, 255) and digits.train.x.dtype == np.uint8
    assert digits.subset(3).pixel_range == (0, 255) and digits.subset(3).train.x.dtype == np.uint8
    # integer images of another dtype are kept too, once their values are checked
    wide = x.astype(np.int32)
    assert ftkit.Dataset.from_arrays("i32", (wide, y), (wide, y)).train.x is wide


def test_declared_pixel_range():
    u8, y = good_images(10)
    f01 = u8 / 255.0
    as_is = ftkit.Dataset.from_arrays("dark", (f01, y), (f01, y), pixel_range=(0, 255))   # taken at its word
    assert as_is.train.x is f01 and as_is.pixel_range == (0, 255)
    scaled = ftkit.Dataset.from_arrays("f", (f01, y), (f01, y), pixel_range=(0, 1))
    np.testing.assert_allclose(scaled.train.x, u8 * 1.0, atol=1e-3)
    over = f01.copy()
    over[4, 2, 9] = 1.5
    refused(lambda: ftkit.Dataset.from_arrays("f", (f01, y), (over, y), pixel_range=(0, 1)),
            ["val x[4, 2, 9] is 1.5", "outside 0..1", "pixel_range=(0, 1)"])
    refused(lambda: ftkit.Dataset.from_arrays("f", (u8, y), (u8, y), pixel_range=(0, 2)),
            ["pixel_range=(0, 2)", "(0, 255)", "(0, 1)"])
    rows = np.zeros((N, 4), np.float32)
    refused(lambda: ftkit.Dataset.from_arrays("rows", (rows, y), (rows, y), pixel_range=(0, 1)),
            ["pixel_range", "images only"])


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (-2.1, 2.6), (0.0, 300.0)])
def test_float_images_on_no_usable_scale_are_refused(lo, hi):
    u8, y = good_images(11)
    x = lo + (hi - lo) * u8.astype(np.float32) / 255
    msg = refused(lambda: ftkit.Dataset.from_arrays("norm", (x, y), (x, y)),
                  ["dataset 'norm'", "train x[", "0..255 or 0..1", "normalisation is done by the model"])
    assert f"{lo:g}" in msg and f"{hi:g}" in msg


def test_splits_on_different_scales_are_refused():
    u8, y = good_images(12)
    refused(lambda: ftkit.Dataset.from_arrays("mixed", (u8 / 255.0, y), (u8, y)),
            ["train x", "0..1", "val x", "uint8", "different scales"])
    refused(lambda: ftkit.Dataset.from_arrays("mixed", (u8 * 1.0, y), (u8 / 255.0, y)),
            ["val x", "0..1", "train x", "different scales"])


def test_regression_targets_with_nan_and_tabular_inputs_with_inf_are_refused():
    import torch
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(size=30).astype(np.float32)
    nan_t, inf_x, str_t = t.copy(), x.copy(), t.astype(str)
    nan_t[17] = np.nan
    inf_x[21, 2] = np.inf
    cases = [((x, nan_t), ["train y[17] is nan", "regression targets"]),
             ((inf_x, t), ["train x[21, 2] is inf", "tabular inputs"]),
             ((x, str_t), ["train y", "strings", "regression targets must be numbers"]),
             ((x > 0, t), ["train x", "dtype bool", "tabular inputs must be numbers"])]
    for pair, words in cases:
        refused(lambda: ftkit.Dataset.from_arrays("rows", pair, (x, t), task="regression"), words)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    model = ftkit.wrap_model(net, [("head", [net])], task="regression", input_spec={"modality": "tabular"})
    before, n_runs = torch_weights(model), len(ftkit.session_runs())
    for pair, words in cases:
        ds = ftkit.Dataset.from_arrays("rows", (x, t), (x, t), task="regression")
        ds.splits["train"] = ftkit.Split(*pair)
        refused(lambda: ftkit.finetune(model, ds, epochs=1, batch_size=8, progress=False), words)
    assert torch_unchanged(model, before) and len(ftkit.session_runs()) == n_runs


def test_text_inputs_are_all_checked_and_bad_arrays_are_data_errors():
    texts = ["a fine film"] * 150 + [3.5] + ["a dull film"] * 9
    labels = np.arange(160) % 2
    refused(lambda: ftkit.Dataset.from_arrays("t", (texts, labels), (texts[:4], labels[:4])),
            ["train x[150] is 3.5", "strings"])
    ds = ftkit.Dataset.from_arrays("t", (texts[:150], labels[:150]), (texts[:4], labels[:4]))
    ds.splits["val"] = ftkit.Split(["ok"] * 120 + [None], np.zeros(121, np.int64))
    refused(ds.validate, ["val x[120] is None", "strings"])
    # ragged images and string labels: a DataError, not NumPy's ValueError or a TypeError
    u8, y = good_images(13)
    refused(lambda: ftkit.Dataset.from_arrays("r", ([u8[0], u8[1][:5]], [0, 1]), (u8, y)), ["train x", "one array"])
    refused(lambda: ftkit.Dataset.from_arrays("r", (u8, y.astype(str)), (u8, y)), ["'train' labels must be integers"])
