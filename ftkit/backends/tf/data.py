"""TensorFlow input pipeline: whole splits in memory, batches prepared on the device.

The mirror of ``ftkit/backends/torch/data.py``. Small datasets stay in host
memory as uint8 (NHWC) or int32 token arrays; each batch is sliced with NumPy
and only then, inside the trainer's ``tf.function``, resized and normalised on
the device, so the CPU does no per-image Python work. Images are NHWC
(channels last), Keras' native layout.
"""
from functools import lru_cache

import numpy as np

from ... import _frameworks
from ...augment import POLICIES, policy
from ...tasks import get as get_task

tf = _frameworks.tensorflow()
import keras  # noqa: E402


# transformers' names for token arrays (ftkit.tasks) -> keras-hub's
KERAS_HUB_NAMES = {"input_ids": "token_ids", "attention_mask": "padding_mask", "token_type_ids": "segment_ids"}


def to_tensors(model, split):
    """A split's inputs and targets as host arrays (see :func:`from_encoded`), encoded by the model's task."""
    return from_encoded(model, get_task(model.task).encode(model, split))


def from_encoded(model, encoded):
    """Rows of a split (ftkit.tasks.Encoded) as host arrays: uint8 images (N, H, W, C) or a dict of
    int32 token arrays with keras-hub's names (``token_ids``, ``padding_mask``, ``segment_ids``), and
    the targets."""
    if isinstance(encoded.inputs, dict):
        x = {KERAS_HUB_NAMES.get(k, k): np.asarray(v, dtype=np.int32) for k, v in encoded.inputs.items()}
    elif model.modality == "tabular":
        x = np.asarray(encoded.inputs, dtype=np.float32)
    else:
        arr = np.asarray(encoded.inputs)
        x = np.ascontiguousarray(arr[..., None] if arr.ndim == 3 else arr)
    return x, np.asarray(encoded.targets)


def take(x, idx):
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def prepare(model, x, *, train=False, augment=False, seed=None):
    """Turn a batch into what the model takes: float, resized, 3 channels, normalised (NHWC).

    The same steps, in the same order, as the torch backend: /255, bilinear resize without antialiasing
    (torch's ``F.interpolate(..., align_corners=False)`` = TF's half-pixel centres), then (training with
    ``augment`` only) the augmentation policy on the images in 0..1, its draws from ``seed`` (two integers;
    see :func:`augment_images`), then grey -> 3 channels and ``(x - mean) / std``.
    """
    if model.modality != "image":
        return x
    spec = model.input_spec
    x = unit_images(x, spec.get("image_size"))
    if train and augment:
        x = augment_images(x, augment, seed=seed)
    if spec.get("mean") is not None:
        if x.shape[-1] == 1:
            x = tf.repeat(x, 3, axis=-1)
        x = (x - tf.constant(spec["mean"], tf.float32)) / tf.constant(spec["std"], tf.float32)
    return x


def unit_images(x, size=None):
    """Images (N, H, W[, C]) in 0..255 as float32 (N, H, W, C) in 0..1, resized to ``size`` x ``size``."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 3:
        x = x[..., None]
    x = tf.cast(x, tf.float32) / 255.0
    if size and tuple(x.shape[1:3]) != (size, size):
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=False)
    return x


def augment_images(x, augment=True, seed=None):
    """Augment images (N, H, W, C) in 0..1 with policy ``augment`` (True or a name in ftkit.augment.POLICIES).

    Keras' random layers draw a new transformation for every image of a batch. Each draws from its own
    seed generator, whose state is set here, before the layer runs, from ``seed`` (two integers; the
    trainer passes the run's seed and the step): the augmentation is a function of ``seed`` alone, the
    same in every run and in a traced step as outside one.
    """
    layers = _layers(policy(augment))
    seed = tf.constant([0, 0], tf.int64) if seed is None else tf.cast(seed, tf.int64)
    for layer, layer_seed in zip(layers, tf.unstack(tf.random.experimental.stateless_split(seed, len(layers)))):
        for v in layer.variables:
            if v.path.endswith("seed_generator_state"):
                v.assign(layer_seed)
        x = layer(x, training=True)
    return x


# operation of ftkit.augment.POLICIES -> the Keras preprocessing layer that does it (fill: 0, black). seed=0:
# augment_images sets each layer's seed state before every call; a layer made without a seed would draw
# one from Python's global random generator and change the global random state.
LAYERS = {
    "flip": lambda: keras.layers.RandomFlip("horizontal", seed=0),
    "translate": lambda fraction: keras.layers.RandomTranslation(fraction, fraction, fill_mode="constant", seed=0),
    "zoom": lambda fraction: keras.layers.RandomZoom((-fraction, 0.0), fill_mode="constant", seed=0),
    "rotate": lambda degrees: keras.layers.RandomRotation(degrees / 360, fill_mode="constant", seed=0),
    # (f, f): [1 - f, 1 + f]; a single f would draw from [1, 1 + f] only
    "contrast": lambda fraction: keras.layers.RandomContrast((fraction, fraction), value_range=(0, 1), seed=0),
    # (p, p): probability p; a single p would draw the probability itself from [0, p]
    "erase": lambda p, area: keras.layers.RandomErasing((p, p), scale=area, fill_value=0.0, value_range=(0, 1),
                                                        seed=0),
}


@lru_cache(maxsize=None)
def _layers(name):
    """The Keras layers of policy ``name``, made once per process, outside any traced function (each owns a
    variable: its seed generator's state)."""
    with tf.init_scope():
        return tuple(LAYERS[op](**params) for op, params in POLICIES[name])


def augment_examples(x, augment, *, n, seed, image_size=None):
    """``n`` augmented draws of each image of ``x`` (N, H, W, C) in 0..255: (N, n, H', W', C) in 0..1.

    The same steps as training: :func:`unit_images`, then :func:`augment_images` with the seed ``(seed, 0)``.
    """
    batch = tf.repeat(unit_images(x, image_size), n, axis=0)
    out = augment_images(batch, augment, seed=[seed, 0]).numpy()
    return out.reshape(len(x), n, *out.shape[1:])


def raw_loader(split, batch_size, shuffle):
    """A tf.data.Dataset of raw ``(x, y)`` batches of a split (used by ``Dataset.to_tf``), prefetching."""
    x = split.x if isinstance(split.x, list) else np.asarray(split.x)
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(split.y)))
    if shuffle:
        ds = ds.shuffle(len(split.y), reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
