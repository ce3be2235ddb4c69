"""TensorFlow (Keras 3) side of ``ftkit.analysis``: the mirror of ``ftkit/backends/torch/analysis.py``."""
import numpy as np

from ... import _frameworks
from ...errors import ConfigError
from . import data as tdata
from .models import sublayers

tf = _frameworks.tensorflow()
import keras  # noqa: E402  (after _frameworks.tensorflow(), which sets KERAS_BACKEND)


def group_weights(members, statistics=False):
    """Copies of the weights of ``members`` (each once, in layer order) as NumPy arrays, without
    BatchNorm's moving mean and variance (the tensors torch holds as parameters) unless ``statistics``."""
    stats = set() if statistics else {
        id(w) for m in members for sub in sublayers(m) if isinstance(sub, keras.layers.BatchNormalization)
        for w in (sub.moving_mean, sub.moving_variance)}
    seen, out = set(stats), []
    for m in members:
        for w in m.weights:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(np.array(w.numpy(), dtype=np.float32, copy=True))
    return out


def _owner(model, layer):
    """The functional model (the body, else the whole model) whose graph holds ``layer``."""
    for net in (model.body, model.native):
        if isinstance(net, keras.Model) and any(sub is layer for sub in net.layers):
            return net
    raise ConfigError(f"layer {layer.name!r} is not a layer of the model's body or of the model itself; "
                      "group_features reads each group's last layer from there")


def _pooled(t):
    """(N, H, W, C) conv maps -> (N, C) by averaging over space; other outputs flattened to (N, D)."""
    t = tf.cast(t, tf.float32)
    if t.shape.rank == 4:
        t = tf.reduce_mean(t, axis=(1, 2))
    return tf.reshape(t, (tf.shape(t)[0], -1)).numpy()


def group_features(model, images, batch_size):
    """Each group's output on ``images`` (raw, 0..255): the output of its last layer, read from a
    multi-output model over the same graph; the last group's is the model's output (the logits).
    Inference mode (``training=False``); nothing is trained."""
    last = [g.members[-1] for g in model.groups[:-1]]
    owner = _owner(model, last[0]) if last else model.native
    if any(_owner(model, layer) is not owner for layer in last):
        raise ConfigError("group_features needs every group but the head in one functional model")
    outputs = [layer.output for layer in last] + [owner.outputs[0]]
    tap = keras.Model(owner.inputs, outputs, name="ftkit_group_outputs")
    head = None if owner is model.native else model.head
    # traced, not eager: a graph frees each activation once used (eagerly, a batch of 64 images at 128 px
    # left the process about 2 GB larger; traced, 0.35 GB)
    run = tf.function(lambda x: tap(x, training=False), reduce_retracing=True)
    outs = [[] for _ in model.groups]
    for i in range(0, len(images), batch_size):
        got = run(tdata.prepare(model, images[i:i + batch_size]))
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        if head is not None:   # the body's output -> the head's logits
            got = [*got[:-1], head(got[-1], training=False)]
        for o, t in zip(outs, got):
            o.append(_pooled(t))
    return [np.concatenate(o) for o in outs]
