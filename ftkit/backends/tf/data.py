"""TensorFlow input pipeline: whole splits in memory, batches prepared on the device.

The mirror of ``ftkit/backends/torch/data.py``. Small datasets stay in host
memory as uint8 (NHWC) or int32 token arrays; each batch is sliced with NumPy
and only then, inside the trainer's ``tf.function``, resized and normalised on
the device, so the CPU does no per-image Python work. Images are NHWC
(channels last), Keras' native layout.
"""
import numpy as np

from ... import _frameworks
from ...text import tokenize

tf = _frameworks.tensorflow()


def to_tensors(model, split):
    """A split's inputs as host arrays: uint8 images (N, H, W, C) or a dict of int32 token arrays.

    Token arrays use keras-hub's names: ``token_ids`` and ``padding_mask``.
    """
    if model.modality == "text":
        tok = tokenize(model, split.x)
        x = {"token_ids": tok["input_ids"].astype(np.int32), "padding_mask": tok["attention_mask"].astype(np.int32)}
    elif model.modality == "tabular":
        x = np.asarray(split.x, dtype=np.float32)
    else:
        arr = np.asarray(split.x)
        x = np.ascontiguousarray(arr[..., None] if arr.ndim == 3 else arr)
    return x, np.asarray(split.y)


def take(x, idx):
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def prepare(model, x, *, train=False, augment=False, seed=None):
    """Turn a batch into what the model takes: float, resized, 3 channels, normalised (NHWC).

    The same steps, in the same order, as the torch backend: /255, bilinear resize without antialiasing
    (torch's ``F.interpolate(..., align_corners=False)`` = TF's half-pixel centres), grey -> 3 channels,
    ``(x - mean) / std``, then (training with ``augment`` only) a random flip and translation drawn
    from ``seed`` (two integers; see :func:`augment_images`).
    """
    if model.modality != "image":
        return x
    spec = model.input_spec
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 3:
        x = x[..., None]
    x = tf.cast(x, tf.float32) / 255.0
    size = spec.get("image_size")
    if size and tuple(x.shape[1:3]) != (size, size):
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=False)
    if spec.get("mean") is not None:
        if x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        x = (x - tf.constant(spec["mean"], tf.float32)) / tf.constant(spec["std"], tf.float32)
    if train and augment:
        x = augment_images(x, seed=seed)
    return x


def augment_images(x, max_shift=0.1, seed=None):
    """Random horizontal flip and a random translation of up to ``max_shift`` of the size (zero fill).

    As torch's ``affine_grid``/``grid_sample`` (bilinear, zeros): output pixel (i, j) reads input
    (i + dy, j + dx), with dx, dy uniform in [-max_shift, max_shift] times the width/height.
    The draws are stateless, from ``seed`` (two integers; the trainer passes the run's seed and the
    step), so a traced step gives the same augmentation for the same seed in every run.
    """
    n = tf.shape(x)[0]
    h, w = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
    seed = tf.constant([0, 0], tf.int64) if seed is None else tf.cast(seed, tf.int64)
    flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    flip = tf.random.stateless_uniform([n], seed=flip_seed) < 0.5
    x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    shift = (tf.random.stateless_uniform([n, 2], seed=shift_seed) * 2 - 1) * max_shift
    dx, dy = shift[:, 0] * w, shift[:, 1] * h
    ones, zeros = tf.ones([n]), tf.zeros([n])
    transforms = tf.stack([ones, zeros, dx, zeros, ones, dy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def raw_loader(split, batch_size, shuffle):
    """A tf.data.Dataset of raw ``(x, y)`` batches of a split (used by ``Dataset.to_tf``), prefetching."""
    x = split.x if isinstance(split.x, list) else np.asarray(split.x)
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(split.y)))
    if shuffle:
        ds = ds.shuffle(len(split.y), reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
