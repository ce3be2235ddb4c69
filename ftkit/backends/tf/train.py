"""TensorFlow (Keras 3) training primitives; the loop itself is framework-neutral (ftkit.training).

The mirror of ``ftkit/backends/torch/train.py``, written with ``tf.GradientTape``
and ``tf.function`` rather than Keras ``fit``:

* one Keras optimizer per layer group, so each group really gets its own LR
  (Keras optimizers have no param groups); decoupled weight decay, biases and
  norm weights (ndim <= 1) excluded, as in the torch backend;
* gradients accumulate in ``tf.Variable`` s and are applied only on ``update``;
  global-norm clipping spans all trainable groups together;
* frozen groups keep their weights and run in inference mode (see
  ``models.set_group_trainable``);
* on a GPU, bf16 mixed precision (fp16 with dynamic loss scaling where bf16 is missing).
"""
import logging
from collections import namedtuple

import numpy as np

from ... import _frameworks
from ...errors import ConfigError
from . import data as tdata
from .io import named_weights

tf = _frameworks.tensorflow()
import keras  # noqa: E402

FEATURE_CHUNK = 256


class _NoRetracingWarning(logging.Filter):
    """Each trainable mask gets its own compiled step (by design); TF would warn about that as retracing."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_NoRetracingWarning())


def pick_device(name="auto"):
    """"gpu:0" when TensorFlow sees a GPU (and ``name`` allows it), else "cpu"."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "cuda" and not gpus:
        raise ConfigError("device='cuda' but TensorFlow sees no GPU; use device='auto' or 'cpu'")
    return "gpu:0" if gpus and name in ("auto", "cuda") else "cpu"


def pick_precision(precision, device):
    if device == "cpu":
        return "fp32"
    if precision == "auto":
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return "bf16" if details.get("compute_capability", (0, 0))[0] >= 8 else "fp16"
    return precision


def _spec(x):
    """A TensorSpec (or dict of them) with a free batch size: one trace serves every batch, the last included."""
    if isinstance(x, dict):
        return {k: _spec(v) for k, v in x.items()}
    return tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype))


def _compiled(fn):
    """``tf.function`` of ``fn(x, y)``, traced once at the first call for that batch structure."""
    state = {}

    def call(x, y):
        if "f" not in state:
            state["f"] = tf.function(fn, input_signature=[_spec(x), _spec(y)])
        return state["f"](x, y)
    return call


POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def _set_policy(net, policy):
    """Give every float layer of ``net`` the dtype policy ``policy`` (variables stay float32)."""
    for layer in net._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.dtype_policy.name in POLICIES.values() and layer.dtype_policy.name != policy:
            layer.dtype_policy = policy


def _make_optimizer(cfg):
    """The optimizer of one group: the torch backend's choices (AdamW decoupled; Adam none; SGD decoupled)."""
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=cfg.lr, weight_decay=cfg.weight_decay, epsilon=1e-8)
    if cfg.optimizer == "adam":  # Adam with decoupled decay is AdamW; plain Adam gets none (as in torch)
        return keras.optimizers.Adam(learning_rate=cfg.lr, epsilon=1e-8)
    return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay or None)


_Steps = namedtuple("_Steps", "fused grad apply grads_finite")


class Trainer:
    """One model, one config: optimizers per group, steps, predictions and weight snapshots."""

    def __init__(self, model, config, class_weights=None):
        keras.utils.set_random_seed(config.seed)
        self.model, self.config = model, config
        self.net = model.native
        self._reset_seed_generators(config.seed)
        self.device = pick_device(config.device)
        self.precision = pick_precision(config.precision, self.device)
        self._tf_device = "/GPU:0" if self.device.startswith("gpu") else "/CPU:0"
        _set_policy(self.net, POLICIES[self.precision])
        if model.head is not None and model.head is not self.net:
            _set_policy(model.head, POLICIES[self.precision])
        self.class_weights = None if class_weights is None else tf.constant(np.asarray(class_weights, np.float32))
        self.mask = list(model.trainable_mask())
        self.features = None  # cached body features (feature_extraction)
        self._cache = {}
        # the variables of each group that can train (BatchNorm moving statistics cannot), fixed once
        self._vars = []
        seen = set()
        for g in model.groups:
            vs = []
            for m in g.members:
                for v in m.weights:
                    if v.trainable and id(v) not in seen:
                        seen.add(id(v))
                        vs.append(v)
            self._vars.append(vs)
        self._pretrained = None
        if config.l2sp > 0:  # anchor: the pre-trained weights of every group but the head
            with tf.device(self._tf_device):
                self._pretrained = {id(v): (v, tf.constant(v.numpy())) for vs in self._vars[:-1] for v in vs}
        self._optimizers = self._accum = self._loss_scale = None   # made at the first train_step
        self._lrs = [config.lr] * len(model.groups)
        self._good_steps = 0
        self._fns = {}
        with tf.device(self._tf_device):   # training accuracy counters (see train_metrics), kept on the device
            self._correct = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._seen = 0

    def _build_optimizers(self):
        """One optimizer and one set of gradient accumulators per group (only when training: predict-only
        Trainers, as evaluate() makes, need neither)."""
        if self._optimizers is not None:
            return
        with tf.device(self._tf_device):
            self._accum = [[tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in vs]
                           for vs in self._vars]
            self._optimizers = []
            for vs, lr in zip(self._vars, self._lrs):
                opt = _make_optimizer(self.config)
                opt.exclude_from_weight_decay(var_list=[v for v in vs if len(v.shape) <= 1])
                opt.build(vs)
                opt.learning_rate = lr
                self._optimizers.append(opt)
            if self.precision == "fp16":
                self._loss_scale = tf.Variable(2.0 ** 15, trainable=False)

    def _reset_seed_generators(self, seed):
        """Dropout's random state is fixed when a layer is built; reset it so a seed gives the same run."""
        i = 0
        for v in self.net.variables:
            if v.path.endswith("seed_generator_state"):
                v.assign(np.array([seed * 1000 + i, 0], dtype=v.dtype))
                i += 1

    # -- groups and LRs ----------------------------------------------------------------------------------
    def set_lrs(self, lrs):
        self._lrs = [float(lr) for lr in lrs]
        for opt, lr in zip(self._optimizers or (), self._lrs):
            opt.learning_rate = lr

    def set_trainable(self, mask):
        """Freeze groups (weights fixed, inference mode) and unfreeze the others."""
        self.mask = [bool(m) for m in mask]
        self.model.set_trainable(self.mask)

    def trainable_params(self):
        return int(sum(np.prod(v.shape) for v in self.net.trainable_weights))

    # -- data --------------------------------------------------------------------------------------------
    def _tensors(self, split):
        key = id(split)
        if key not in self._cache:
            self._cache[key] = (split, *tdata.to_tensors(self.model, split))
        return self._cache[key][1:]

    def cache_features(self, splits):
        """feature_extraction: run the frozen body once over each split; later steps train only the head."""
        body = self.model.body

        @_compiled
        def features(x, _):
            x = tdata.prepare(self.model, x, train=False)
            return tf.cast(body(x, training=False), tf.float32)

        self.features = {}
        with tf.device(self._tf_device):
            for split in splits:
                x, y = self._tensors(split)
                feats = [features(tdata.take(x, slice(i, i + FEATURE_CHUNK)), y[:1])
                         for i in range(0, len(y), FEATURE_CHUNK)]
                self.features[id(split)] = (tf.concat(feats, 0), tf.constant(y))

    def batches(self, split, shuffle=False, seed=0):
        """Yield batches ``(x, y)`` of a split (cached features when there are)."""
        if self.features is not None:
            x, y = self.features[id(split)]
            n = int(y.shape[0])
        else:
            x, y = self._tensors(split)
            n = len(y)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for i in range(0, n, self.config.batch_size):
            idx = order[i:i + self.config.batch_size]
            if self.features is not None:
                yield tf.gather(x, idx), tf.gather(y, idx)
            else:
                yield tdata.take(x, idx), y[idx]

    # -- steps -------------------------------------------------------------------------------------------
    def _forward(self, x, train):
        if self.features is not None:
            return self.model.head(x, training=train)
        x = tdata.prepare(self.model, x, train=train, augment=train and self.config.augment)
        return self.net(x, training=train)

    def _loss(self, logits, y):
        logits = tf.cast(logits, tf.float32)
        if self.model.task == "regression":
            return tf.square(tf.squeeze(logits, -1) - tf.cast(y, tf.float32))
        logp = tf.nn.log_softmax(logits)
        nll = -tf.gather(logp, tf.cast(y, tf.int32), batch_dims=1)
        eps = self.config.label_smoothing
        if eps:  # torch's label_smoothing: (1 - eps) * NLL + eps * mean over classes of -log p
            return (1 - eps) * nll - eps * tf.reduce_mean(logp, -1)
        return nll

    def _reduce(self, per_sample, y):
        if self.class_weights is None:
            return tf.reduce_mean(per_sample)
        w = tf.gather(self.class_weights, tf.cast(y, tf.int32))
        return tf.reduce_sum(per_sample * w) / tf.reduce_sum(w)

    def _step_fns(self):
        """The compiled gradient and update steps of the current mask (traced once per mask)."""
        key = (tuple(self.mask), self.features is not None)
        if key in self._fns:
            return self._fns[key]
        self._build_optimizers()
        live = {id(v) for v in self.net.trainable_weights}   # a layer frozen by hand inside a group stays fixed
        if self.model.head is not None:
            live |= {id(v) for v in self.model.head.trainable_weights}
        # (group index, [(variable, accumulator)]) of every group that trains now
        plan = [(i, [(v, a) for v, a in zip(self._vars[i], self._accum[i]) if id(v) in live])
                for i, m in enumerate(self.mask) if m]
        variables = [v for _, pairs in plan for v, _ in pairs]
        accums = [a for _, pairs in plan for _, a in pairs]
        anchors = [] if self._pretrained is None else \
            [self._pretrained[id(v)] for v in variables if id(v) in self._pretrained]
        cfg, scale, correct = self.config, self._loss_scale, self._correct
        no_grad = set()  # variables the loss does not reach (filled when grad_step is traced; not stepped)

        def losses(x, y):
            """The batch loss, and what is differentiated (L2-SP added); counts correct answers on the device."""
            logits = self._forward(x, train=True)
            loss = self._reduce(self._loss(logits, y), y)
            if self.model.task == "classification":   # no extra sync per step
                hits = tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64))
                correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.int64)))
            total = loss
            if anchors:
                total = total + cfg.l2sp / 2 * tf.add_n([tf.reduce_sum(tf.square(v - v0)) for v, v0 in anchors])
            return loss, total

        def apply(grads_and_vars):
            """Clip (one global norm over all groups, as torch's clip_grad_norm_) and step each group's optimizer."""
            grads = [g for g, _ in grads_and_vars]
            if cfg.clip_norm and grads:
                grads, _ = tf.clip_by_global_norm(grads, cfg.clip_norm)
            grad_of = {id(v): g for g, (_, v) in zip(grads, grads_and_vars)}
            for i, pairs in plan:
                todo = [(grad_of[id(v)], v) for v, _ in pairs if id(v) in grad_of]
                if todo:
                    self._optimizers[i].apply_gradients(todo)
            return tf.constant(True)

        @_compiled
        def fused_step(x, y):
            """grad_accum == 1 without loss scaling: gradients go straight to the optimizers (no accumulators);
            a non-finite loss skips the update."""
            with tf.GradientTape() as tape:
                loss, total = losses(x, y)
            grads = tape.gradient(total, variables)
            kept = [(g, v) for g, v in zip(grads, variables) if g is not None]
            tf.cond(tf.math.is_finite(loss), lambda: apply(kept), lambda: tf.constant(False))
            return loss

        @_compiled
        def grad_step(x, y):
            with tf.GradientTape() as tape:
                loss, total = losses(x, y)
                scaled = total / cfg.grad_accum
                if scale is not None:
                    scaled = scaled * scale
            grads = tape.gradient(scaled, variables)
            for a, g in zip(accums, grads):
                if g is None:
                    no_grad.add(id(a))
                    continue
                if scale is not None:
                    g = g / scale
                if isinstance(g, tf.IndexedSlices):
                    a.scatter_add(tf.IndexedSlices(tf.cast(g.values, tf.float32), g.indices, g.dense_shape))
                else:
                    a.assign_add(tf.cast(g, tf.float32))
            return loss

        @tf.function
        def apply_step():
            apply([(a.read_value(), v) for a, v in zip(accums, variables) if id(a) not in no_grad])
            for a in accums:
                a.assign(tf.zeros_like(a))

        @tf.function
        def grads_finite():
            return tf.reduce_all([tf.reduce_all(tf.math.is_finite(a)) for a in accums]) if accums else True

        self._fns[key] = _Steps(fused_step, grad_step, apply_step, grads_finite)
        return self._fns[key]

    def train_step(self, batch, update=True):
        """Forward and backward one batch; step the optimizers when ``update``. Returns the batch loss.

        The optimizers never step on a non-finite loss: the caller then calls discard_grads().
        """
        x, y = batch
        steps = self._step_fns()
        with tf.device(self._tf_device):
            self._seen += len(y)
            if update and self.config.grad_accum == 1 and self._loss_scale is None:
                return float(steps.fused(x, y))
            value = float(steps.grad(x, y))
            if update and np.isfinite(value):
                if self._loss_scale is not None and not bool(steps.grads_finite()):
                    self._loss_scale.assign(self._loss_scale / 2)   # fp16 overflow: skip this step
                    self._good_steps = 0
                    self.discard_grads()
                else:
                    steps.apply()
                    if self._loss_scale is not None:
                        self._good_steps += 1
                        if self._good_steps % 2000 == 0:
                            self._loss_scale.assign(self._loss_scale * 2)
        return value

    def train_metrics(self):
        """Training accuracy since the last call (classification), then reset."""
        out = {"train_accuracy": int(self._correct.numpy()) / self._seen} \
            if self._seen and self.model.task == "classification" else {}
        self._correct.assign(0)
        self._seen = 0
        return out

    def discard_grads(self):
        for accs in self._accum or ():
            for a in accs:
                a.assign(tf.zeros_like(a))

    def predict(self, split):
        """Mean loss and scores (class probabilities, or predictions for regression) over a split."""
        key = ("predict", self.features is not None)   # training=False: independent of the mask
        if key not in self._fns:
            @_compiled
            def forward(x, y):
                logits = tf.cast(self._forward(x, train=False), tf.float32)
                out = tf.squeeze(logits, -1) if self.model.task == "regression" else tf.nn.softmax(logits, -1)
                return self._loss(logits, y), out
            self._fns[key] = forward
        forward = self._fns[key]
        losses, scores = [], []
        with tf.device(self._tf_device):
            for x, y in self.batches(split):
                loss, out = forward(x, y)
                losses.append(loss.numpy())
                scores.append(out.numpy())
        return float(np.concatenate(losses).mean()), np.concatenate(scores)

    # -- weights -----------------------------------------------------------------------------------------
    def get_weights(self):
        """A copy of every weight (BatchNorm statistics included), keyed like io.save_weights."""
        return {k: np.array(v.numpy(), copy=True) for k, v in named_weights(self.net).items()}

    def set_weights(self, snapshot):
        weights = named_weights(self.net)
        if set(weights) != set(snapshot):
            raise ValueError("snapshot does not match the model's weights")
        for k, v in weights.items():
            v.assign(snapshot[k])
