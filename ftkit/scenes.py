"""Detection data that ftkit composes from real images it has: Fashion-MNIST items on a canvas.

No detection set with boxes is installed on these machines, so ftkit builds one, and says so: each
scene is a black square canvas with 0 to 3 real Fashion-MNIST photos (28x28, grayscale) pasted at random
positions and scales, overlapping a little at most, each with its exact box and its class. It is
what detection needs (several objects, sizes, positions, classes, empty images) on real pixels, but the
objects sit on a plain background and never occlude much, so it is far easier than photos of streets.
Scenes are seeded: the same arguments give the same scenes. Training scenes use Fashion-MNIST's training
photos; validation and test scenes use its test photos, so no item is seen in training.
"""
import numpy as np

from .errors import ConfigError

THRESHOLD = 16   # item pixels darker than this (of 255) are dropped, so a box hugs what is pasted


def compose_scenes(images, labels, n, *, size=128, objects=(1, 3), empty=0.05, scale=(1.0, 2.0),
                   max_overlap=0.15, seed=0):
    """``n`` scenes of ``size`` x ``size`` pixels made of ``images`` (M, h, w) uint8 and their ``labels``.

    Each scene gets no object with probability ``empty``, else a number of objects drawn from ``objects``
    (inclusive); each object is a random item, resized by a factor drawn from ``scale`` (bilinear), its
    pixels below THRESHOLD dropped, and pasted where its box overlaps no earlier box by more than
    ``max_overlap`` (IoU; 30 tries, else it is left out); overlapping pixels keep the brighter value.

    Returns ``(x, y)``: ``x`` uint8 (n, size, size, 1); ``y`` a list of ``{"boxes": float32 (k, 4)
    [x1, y1, x2, y2] in pixels, "labels": int64 (k,)}``; each box is the bounding box of the item's pasted
    pixels (x2, y2 exclusive, so ``x2 - x1`` is the width in pixels).
    """
    from PIL import Image
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 (M, h, w); got {images.dtype} {images.shape}")
    lo, hi = objects
    if not 0 <= lo <= hi or not 0 <= empty < 1 or not 0 < scale[0] <= scale[1]:
        raise ConfigError(f"objects={objects!r}, empty={empty!r}, scale={scale!r}: need 0 <= lo <= hi, "
                          "0 <= empty < 1 and 0 < smallest <= largest")
    largest = int(round(max(images.shape[1:]) * scale[1]))
    if largest > size:
        raise ConfigError(f"scale={scale!r} makes items up to {largest} px, larger than the {size} px canvas")
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 1), np.uint8)
    y = []
    for i in range(n):
        count = 0 if rng.random() < empty else int(rng.integers(lo, hi + 1))
        boxes, classes = [], []
        for _ in range(count):
            j = int(rng.integers(len(images)))
            f = rng.uniform(*scale)
            h, w = (int(round(d * f)) for d in images.shape[1:])
            item = np.asarray(Image.fromarray(images[j]).resize((w, h), Image.BILINEAR))
            item = np.where(item >= THRESHOLD, item, 0).astype(np.uint8)
            rows, cols = np.flatnonzero(item.any(1)), np.flatnonzero(item.any(0))
            if not len(rows):
                continue
            item = item[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]   # the box hugs the pixels
            for _ in range(30):
                top, left = (int(rng.integers(0, size - d + 1)) for d in item.shape)
                box = [left, top, left + item.shape[1], top + item.shape[0]]
                if all(_iou(box, b) <= max_overlap for b in boxes):
                    region = x[i, top:box[3], left:box[2], 0]
                    np.maximum(region, item, out=region)
                    boxes.append(box)
                    classes.append(int(labels[j]))
                    break
        y.append({"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(classes, np.int64)})
    return x, y


def _iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])   # noqa: E731
    return inter / (area(a) + area(b) - inter)


SIZES = {"train": 3000, "val": 400, "test": 400}


def fashion_scenes(seed=0, size=128, sizes=None):
    """Splits of scenes made of Fashion-MNIST (train scenes from its training photos, val and test from its
    test photos): ``({split: (x, y)}, class names)``; ``sizes`` maps a split to its number of scenes."""
    from .data import FASHION_CLASSES, _fashion_mnist_arrays
    (x_train, y_train), (x_test, y_test), _ = _fashion_mnist_arrays()
    sizes = {**SIZES, **(sizes or {})}
    out = {}
    for k, (which, (xs, ys)) in enumerate((("train", (x_train, y_train)), ("val", (x_test[:5000], y_test[:5000])),
                                          ("test", (x_test[5000:], y_test[5000:]))), start=1):
        out[which] = compose_scenes(xs, ys, sizes[which], size=size, seed=seed * 1000 + k)
    return out, list(FASHION_CLASSES)


# --------------------------------------------------------------------------------------------- captions

NOUNS = {"T-shirt/top": ("top", "tops"), "Trouser": ("pair of trousers", "pairs of trousers"),
         "Pullover": ("pullover", "pullovers"), "Dress": ("dress", "dresses"), "Coat": ("coat", "coats"),
         "Sandal": ("sandal", "sandals"), "Shirt": ("shirt", "shirts"), "Sneaker": ("sneaker", "sneakers"),
         "Bag": ("bag", "bags"), "Ankle boot": ("ankle boot", "ankle boots")}
COUNTS = {2: "two", 3: "three", 4: "four"}


def caption(boxes, labels, class_names, size):
    """One sentence for a scene: what is in it, how many of each, and where.

    The items are read left to right (by the centre of their boxes). The sentence names each class with its
    count, in that order ("a bag and two sneakers"); then, for one item, where it is on the canvas ("at the
    top left", "in the middle"); for two classes or more, where the first class's first item is from the
    second's ("the bag above the sneakers"; "left of" unless it is further up or down than across); for
    several items of one class, "side by side" or "one above the other" (from the first two). A scene with
    nothing in it is "an empty canvas"."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return "an empty canvas"
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    order = np.argsort(centres[:, 0], kind="stable")
    names = [class_names[int(labels[i])] for i in order]
    classes = list(dict.fromkeys(names))   # in order of first appearance, left to right
    counts = {c: names.count(c) for c in classes}

    def noun(c, definite=False):
        one, many = NOUNS.get(c, (c.lower(), c.lower() + "s"))
        if counts[c] > 1:
            return f"the {many}" if definite else f"{COUNTS.get(counts[c], counts[c])} {many}"
        return f"the {one}" if definite else f"{'an' if one[0] in 'aeiou' else 'a'} {one}"

    items = [noun(c) for c in classes]
    what = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if len(boxes) == 1:
        (cx, cy), third = centres[0], size / 3
        v = ("top", "middle", "bottom")[min(int(cy // third), 2)]
        h = ("left", "centre", "right")[min(int(cx // third), 2)]
        where = "in the middle" if (v, h) == ("middle", "centre") else f"on the {h}" if v == "middle" else \
            f"at the {v}" if h == "centre" else f"at the {v} {h}"
        return f"{what} {where}"
    first = [order[names.index(c)] for c in classes[:2]]
    if len(classes) == 1:
        first = list(order[:2])
    dx, dy = centres[first[1]] - centres[first[0]]
    if len(classes) == 1:
        return f"{what} {'one above the other' if abs(dy) > abs(dx) else 'side by side'}"
    relation = ("above" if dy > 0 else "below") if abs(dy) > abs(dx) else "left of"
    return f"{what}, {noun(classes[0], True)} {relation} {noun(classes[1], True)}"


CAPTION_SIZES = {"train": 3000, "val": 300, "test": 300}


def fashion_captions(seed=0, size=128, sizes=None):
    """Splits of captioned scenes made of Fashion-MNIST (train from its training photos, val and test from its
    test photos): ``{split: (x, captions)}``; 1 to 3 items per scene, each caption from :func:`caption`;
    ``sizes`` maps a split to its number of scenes."""
    from .data import FASHION_CLASSES, _fashion_mnist_arrays
    (x_train, y_train), (x_test, y_test), _ = _fashion_mnist_arrays()
    sizes = {**CAPTION_SIZES, **(sizes or {})}
    out = {}
    for k, (which, (xs, ys)) in enumerate((("train", (x_train, y_train)), ("val", (x_test[:5000], y_test[:5000])),
                                          ("test", (x_test[5000:], y_test[5000:]))), start=1):
        x, found = compose_scenes(xs, ys, sizes[which], size=size, objects=(1, 3), empty=0.0, seed=seed * 1000 + 500 + k)
        out[which] = (x, [caption(f["boxes"], f["labels"], FASHION_CLASSES, size) for f in found])
    return out
