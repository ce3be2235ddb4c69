"""Boxes for people to look at: detections drawn on images, the anchors a detector starts from, and a
small matcher that sorts one image's predictions into right, wrong class, false positive and missed.

Framework-neutral (NumPy and matplotlib only). Boxes are ``[x1, y1, x2, y2]`` in pixels, as everywhere in
ftkit's detection task (:mod:`ftkit.tasks.detection`); a target is ``{"boxes": (k, 4), "labels": (k,)}`` and
a prediction also has ``"scores": (k,)``.
"""
import math

import numpy as np

from .tasks.detection import ASPECT_RATIOS, MAX_LEVEL, MIN_LEVEL, anchor_sizes

TRUTH = "#009E73"        # true boxes: dashed bluish green (colours from Okabe and Ito's colour-blind-safe set)
STATUS_COLOURS = {"correct": "#56B4E9",        # right class, IoU >= threshold: sky blue
                  "wrong_class": "#E69F00",    # on a true box, wrong class: orange
                  "false_positive": "#D55E00",  # on no true box (or a second box on a found one): vermilion
                  "missed": "#CC79A7"}         # a true box no prediction found: dashed reddish purple


def iou(a, b):
    """Intersection over union of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): an (n, m) array."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])   # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(truth, prediction, iou_threshold=0.5, min_score=0.3):
    """Sort one image's predictions (those scoring at least ``min_score``) against its true boxes.

    Best score first, each prediction takes the unmatched true box of **its class** it overlaps most, if that
    IoU is at least ``iou_threshold``: ``correct``. Then each prediction left takes the unmatched true box of
    **any** class it overlaps that much: ``wrong_class``. Predictions still left are ``false_positive`` (on
    background, badly placed, or a second box on an object already found); true boxes no prediction took are
    ``missed``. (COCO's mAP matches the same way within each class, over all scores.)

    Returns ``{"correct": [(p, t), ...], "wrong_class": [(p, t), ...], "false_positive": [p, ...],
    "missed": [t, ...]}``: ``p`` indexes ``prediction``'s boxes, ``t`` ``truth``'s.
    """
    t_boxes = np.asarray(truth["boxes"], np.float64).reshape(-1, 4)
    t_labels = np.asarray(truth["labels"]).ravel()
    p_boxes = np.asarray(prediction["boxes"], np.float64).reshape(-1, 4)
    p_labels = np.asarray(prediction["labels"]).ravel()
    scores = np.asarray(prediction.get("scores", np.ones(len(p_boxes))), np.float64).ravel()
    kept = [int(p) for p in np.argsort(-scores, kind="stable") if scores[p] >= min_score]
    overlap = iou(p_boxes, t_boxes)
    taken, out = set(), {"correct": [], "wrong_class": [], "false_positive": [], "missed": []}
    for kind, same_class in (("correct", True), ("wrong_class", False)):
        left = []
        for p in kept:
            free = [t for t in range(len(t_boxes)) if t not in taken and (not same_class or t_labels[t] == p_labels[p])]
            best = max(free, key=lambda t: overlap[p, t], default=None)
            if best is not None and overlap[p, best] >= iou_threshold:
                taken.add(best)
                out[kind].append((p, best))
            else:
                left.append(p)
        kept = left
    out["false_positive"] = kept
    out["missed"] = [t for t in range(len(t_boxes)) if t not in taken]
    return out


def _grid(n, cols, size, ax):
    import matplotlib.pyplot as plt
    if ax is not None:
        axes = list(np.ravel(ax))
        if len(axes) < n:
            raise ValueError(f"{n} images but {len(axes)} axes given")
        return axes[0].figure, axes[:n]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.4), squeeze=False)
    for extra in grid.ravel()[n:]:
        extra.axis("off")
    return fig, list(grid.ravel()[:n])


def _shown(image):
    """An image as imshow takes it: (H, W) grey or (H, W, 3) in [0, 1], whatever its scale."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    image = image.astype(np.float64)
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def _rectangle(ax, box, colour, style="-", width=1.8):
    from matplotlib.patches import Rectangle
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=style,
                           linewidth=width))


def _tag(ax, x, y, text, colour, below=False):
    ax.text(x, y, text, color="black", fontsize=7, va="top" if below else "bottom", ha="left", clip_on=True,
            bbox=dict(facecolor=colour, edgecolor="none", pad=0.6, alpha=0.85))


def show_detections(images, truth=None, predictions=None, class_names=None, min_score=0.3, iou_threshold=0.5,
                    cols=4, size=2.6, titles=None, ax=None):
    """Draw ``images`` with their true boxes (dashed green) and predicted boxes (solid, class and score).

    ``images``: (N, H, W[, C]) or a list of images; ``truth``: a list of targets, ``predictions``: a list of
    predictions (``model.predict(images)``), either may be None. Predictions scoring below ``min_score`` are
    not drawn. With ``truth``, each prediction is coloured by what :func:`match` makes of it (right, wrong class,
    false positive) and missed true boxes are dashed purple; without it, by class. ``titles``: one string per
    image (default: its index, and with truth what was found). ``ax``: an Axes (one image) or a sequence of
    them to draw into; else a new figure of ``cols`` columns, ``size`` inches per image. Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    images = list(images) if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]
    n = len(images)
    for what, given in (("truth", truth), ("predictions", predictions)):
        if given is not None and len(given) != n:
            raise ValueError(f"{n} images but {len(given)} {what}; give one per image")
    name = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: str(int(c)))
    fig, axes = _grid(n, cols, size, ax)
    by_class = plt.get_cmap("tab10")
    for i, (a, image) in enumerate(zip(axes, images)):
        shown = _shown(image)
        a.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        a.axis("off")
        t = truth[i] if truth is not None else None
        p = predictions[i] if predictions is not None else None
        m = match(t, p, iou_threshold, min_score) if t is not None and p is not None else None
        if t is not None:
            missed = set(m["missed"]) if m else set()
            for j, (box, label) in enumerate(zip(np.asarray(t["boxes"]).reshape(-1, 4), np.ravel(t["labels"]))):
                colour = STATUS_COLOURS["missed"] if j in missed else TRUTH
                _rectangle(a, box, colour, "--", 1.4)
                _tag(a, box[0], box[3], ("missed: " if j in missed else "") + name(label), colour, below=True)
        if p is not None:
            status = {}
            if m:
                status.update({q: "correct" for q, _ in m["correct"]})
                status.update({q: "wrong_class" for q, _ in m["wrong_class"]})
                status.update({q: "false_positive" for q in m["false_positive"]})
            scores = np.ravel(p["scores"])
            for q, (box, label) in enumerate(zip(np.asarray(p["boxes"]).reshape(-1, 4), np.ravel(p["labels"]))):
                if scores[q] < min_score:
                    continue
                colour = STATUS_COLOURS[status[q]] if m else by_class(int(label) % 10)
                _rectangle(a, box, colour)
                _tag(a, box[0], box[1], f"{name(label)} {scores[q]:.2f}", colour)
        if titles is not None:
            title = titles[i]
        elif m:
            found, total = len(m["correct"]), len(m["correct"]) + len(m["wrong_class"]) + len(m["missed"])
            extra = [f"{len(m[k])} {w}" for k, w in (("wrong_class", "wrong class"), ("false_positive", "false pos."))
                     if m[k]]
            title = f"#{i}: {found} of {total} found" + ("\n" + ", ".join(extra) if extra else "\n ")
        else:
            title = f"#{i}"
        a.set_title(title, fontsize=8)
    handles = []
    if truth is not None:
        handles.append(Line2D([], [], color=TRUTH, linestyle="--", label="true box"))
    if truth is not None and predictions is not None:
        handles += [Line2D([], [], color=STATUS_COLOURS[k], linestyle="--" if k == "missed" else "-",
                           label=k.replace("_", " ") + (" true box" if k == "missed" else ""))
                    for k in ("correct", "wrong_class", "false_positive", "missed")]
    elif predictions is not None:
        handles.append(Line2D([], [], color="gray", label=f"prediction (colour: class; score >= {min_score})"))
    if handles and ax is None:
        across = min(len(handles), max(2, len(axes) * 2))
        fig.legend(handles=handles, loc="lower center", ncol=across, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.3 * math.ceil(len(handles) / across) / fig.get_size_inches()[1], 1, 1))
    return fig


def anchors_at(level, x, y):
    """The ``NUM_SCALES * len(ASPECT_RATIOS)`` anchors of pyramid ``level`` centred at pixel (x, y): (9, 4)
    xyxy. Side ``s`` from :func:`ftkit.tasks.detection.anchor_sizes`, aspect ratio ``r`` = height / width:
    width ``s / sqrt(r)``, height ``s * sqrt(r)`` (torchvision's and keras-hub's convention)."""
    sides = anchor_sizes()[level - MIN_LEVEL]
    out = []
    for r in ASPECT_RATIOS:
        for s in sides:
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            out.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
    return np.asarray(out)


def anchor_grid(image_size=128):
    """One row per pyramid level: ``{"level", "stride", "positions"`` (per side), ``"sizes"``,
    ``"anchors"`` (positions squared times 9)``}``. Centres are at ``(i * stride, j * stride)``, i, j =
    0, 1, ... as both libraries place them."""
    rows = []
    for level, sizes in zip(range(MIN_LEVEL, MAX_LEVEL + 1), anchor_sizes()):
        positions = math.ceil(image_size / 2 ** level)
        rows.append({"level": level, "stride": 2 ** level, "positions": positions, "sizes": sizes,
                     "anchors": positions ** 2 * len(sizes) * len(ASPECT_RATIOS)})
    return rows


def show_anchors(image_size=128, image=None, levels=None, size=3.0):
    """Draw what a RetinaNet level looks at: one panel per pyramid level (``levels``, default all), with the
    grid of anchor centres (stride ``2**level``) as dots and the 9 anchors (3 sizes x 3 aspect ratios) of
    the centre nearest the middle of the image, coloured by size, line style by aspect ratio. ``image``
    (optional, ``image_size`` square) is drawn underneath. Returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    rows = [r for r in anchor_grid(image_size) if levels is None or r["level"] in levels]
    fig, axes = plt.subplots(1, len(rows), figsize=(size * len(rows), size + 0.9), squeeze=False)
    styles = ("--", "-", ":")
    colours = ("#0072B2", "#E69F00", "#009E73")
    for a, r in zip(axes[0], rows):
        if image is not None:
            a.imshow(_shown(image), cmap="gray", vmin=0, vmax=1, extent=(0, image_size, image_size, 0))
        a.add_patch(plt.Rectangle((0, 0), image_size, image_size, fill=False, edgecolor="black", linewidth=1.2))
        centres = np.arange(r["positions"]) * r["stride"]
        gx, gy = np.meshgrid(centres, centres)
        a.plot(gx.ravel(), gy.ravel(), ".", color="gray", markersize=3 if r["positions"] > 4 else 6)
        middle = centres[np.argmin(np.abs(centres - image_size / 2))]
        boxes = anchors_at(r["level"], middle, middle)
        for k, box in enumerate(boxes):
            ratio, scale = divmod(k, len(r["sizes"]))
            _rectangle(a, box, colours[scale], styles[ratio], 1.3)
        a.plot([middle], [middle], "o", color="black", markersize=5)
        reach = max(image_size, float(np.abs(boxes - image_size / 2).max() + image_size / 2))
        pad = reach - image_size / 2
        a.set_xlim(image_size / 2 - pad - 4, image_size / 2 + pad + 4)
        a.set_ylim(image_size / 2 + pad + 4, image_size / 2 - pad - 4)
        a.set_aspect("equal")
        a.set(xlabel="x (pixels)", ylabel="y (pixels)")
        a.set_title(f"P{r['level']}: stride {r['stride']}, {r['positions']}x{r['positions']} positions\n"
                    f"sides {', '.join(f'{s:.0f}' for s in r['sizes'])} px; {r['anchors']} anchors", fontsize=9)
    handles = [Line2D([], [], color=c, label=f"size {i + 1} of 3") for i, c in enumerate(colours)]
    handles += [Line2D([], [], color="black", linestyle=s, label=f"height/width {q:g}")
                for s, q in zip(styles, ASPECT_RATIOS)]
    handles += [Line2D([], [], color="black", linewidth=1.2, label=f"the {image_size}x{image_size} image")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
