"""What fine-tuning changed, and where: weights and features, layer group by layer group.

    before_w = ftkit.analysis.snapshot(model)                 # copies of each group's weights
    before_f = ftkit.analysis.group_features(model, images)   # each group's output on some images
    ftkit.finetune(model, data, strategy="full")
    ftkit.analysis.weight_change(model, before_w)             # {group: ||W - W0|| / ||W0||}
    ftkit.analysis.feature_similarity(before_f, ftkit.analysis.group_features(model, images))  # {group: CKA}

Framework-neutral here; ``ftkit/backends/<framework>/analysis.py`` reads the weights and
the group outputs of its framework.
"""
import importlib
import math

import numpy as np

from .data import Split, check_images, checked_inputs
from .errors import ConfigError, DataError


def _backend(model):
    """The ``analysis`` module of the model's backend (imports the framework on first use)."""
    return importlib.import_module(f"{model.backend.__name__}.analysis")


def snapshot(model, statistics=False):
    """A copy of each group's weights: ``{group name: [NumPy arrays]}``, groups and tensors in model order.

    The weights are the ones training changes: torch's parameters; Keras' weights without
    BatchNorm's moving mean and variance (statistics, like torch's buffers). So both frameworks
    hold the same tensors in each group (Keras lays conv kernels out differently: HWIO, not OIHW).
    ``statistics=True`` adds the statistics (torch's buffers, Keras' moving mean and variance):
    use it to check that a frozen part was left *exactly* as it was, BatchNorm included.

    A new head (``model.fresh_head``) is initialised by the model's first run from the run's seed:
    call ``model.init_head(seed)`` with that seed before the snapshot if the head's change matters.
    """
    if not isinstance(statistics, bool):
        raise ConfigError(f"statistics={statistics!r} must be True or False")
    weights = _backend(model).group_weights
    return {g.name: weights(g.members, statistics) for g in model.groups}


def weight_change(model, before, statistics=False):
    """How far each group's weights moved since ``before`` (a :func:`snapshot` of this model):
    ``{group: ||W - W0|| / ||W0||}``, W being all the group's tensors together (one Frobenius norm).

    0 means untouched, bit for bit; 0.1 means the weights moved by a tenth of their size.
    ``statistics``: as given to :func:`snapshot` for ``before``.
    """
    now = snapshot(model, statistics)
    if set(before) != set(now):
        raise ConfigError(f"before has groups {sorted(before)}; the model has {list(now)}: give snapshot(model) "
                          "of this model")
    out = {}
    for name, ws in now.items():
        w0 = before[name]
        if [np.shape(a) for a in w0] != [a.shape for a in ws]:
            raise ConfigError(f"group {name!r}: the snapshot's tensors do not have this model's shapes "
                              f"(was it taken with statistics={not statistics}?)")
        diff = math.sqrt(sum(float(np.sum((a.astype(np.float64) - b) ** 2)) for a, b in zip(ws, w0)))
        size = math.sqrt(sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in w0))
        out[name] = diff / size if size > 0 else (0.0 if diff == 0 else math.inf)
    return out


def group_features(model, images, batch_size=64):
    """The output of each layer group on ``images``: ``{group: (N, D) float32 array}``.

    ``images``: (N, H, W) or (N, H, W, C) in 0..255 (uint8, as ftkit's datasets) or 0..1, or a
    :class:`~ftkit.Split`. They are prepared as for prediction (resized, normalised) and run in
    inference mode without gradients. A group's output is that of its last member; conv maps are
    averaged over space, (N, C, H, W) -> (N, C); the last group (the head) gives the logits.
    """
    if model.modality != "image":
        raise ConfigError(f"group_features takes images; model {model.name!r} takes {model.modality} inputs")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a whole number >= 1")
    x = np.asarray(images.x if isinstance(images, Split) else images)
    check_images(x, "group_features: images")
    x = checked_inputs(x, name="images").test.x   # checked, on the 0..255 scale
    outs = _backend(model).group_features(model, x, batch_size)
    return dict(zip(model.group_names, outs))


def linear_cka(X, Y):
    """Linear CKA (Kornblith et al. 2019) of two sets of features of the same N examples.

    ``X`` (N, D1) and ``Y`` (N, D2), rows in the same order. Each is centred (column means
    removed), then ``CKA = ||Y^T X||^2 / (||X^T X|| ||Y^T Y||)`` (Frobenius norms): 1 when Y is
    X rotated and scaled, near 0 when they are unrelated. NaN when X or Y is constant.
    """
    X, Y = _matrix(X, "X"), _matrix(Y, "Y")
    if len(X) != len(Y):
        raise DataError(f"linear_cka: X has {len(X)} rows and Y {len(Y)}; give features of the same examples")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    if len(X) < max(X.shape[1], Y.shape[1]):   # same value through the N x N Gram matrices: cheaper here
        K, L = X @ X.T, Y @ Y.T
        cross, nx, ny = np.sum(K * L), np.linalg.norm(K), np.linalg.norm(L)
    else:
        cross, nx, ny = np.linalg.norm(Y.T @ X) ** 2, np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    if nx == 0 or ny == 0:
        return math.nan
    return float(min(max(cross / (nx * ny), 0.0), 1.0))


def _matrix(a, name):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise DataError(f"linear_cka: {name} must be a 2-D array (examples, features) with >= 2 rows; "
                        f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"linear_cka: {name} holds NaN or infinite values")
    return a


def feature_similarity(before, after):
    """Linear CKA of each group's features before and after: ``{group: CKA}`` (1 = unchanged
    up to rotation and scale). ``before`` and ``after`` come from :func:`group_features` on the same images."""
    if set(before) != set(after):
        raise ConfigError(f"before has groups {sorted(before)} and after {sorted(after)}")
    return {g: linear_cka(before[g], after[g]) for g in before}
