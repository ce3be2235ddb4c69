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
import contextlib
import gc
import logging
import weakref
from collections import OrderedDict, namedtuple

import numpy as np

from ... import _frameworks
from ...errors import ConfigError
from ...machine import in_a_file, release_memory
from ...tasks import IGNORE, get as get_task
from . import data as tdata
from . import models
from .io import named_weights
from .models import dropout_layers, group_variables, sublayers

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


def _signature(x):
    """What a trace depends on in a batch: its structure, shapes after the batch axis, and dtypes."""
    if isinstance(x, dict):
        return tuple(sorted((k, _signature(v)) for k, v in x.items()))
    return tuple(x.shape[1:]), tf.as_dtype(x.dtype).name


class _Traced:
    """``tf.function`` of ``fn(*tensors)``, traced once per batch structure (with a free batch size, so
    the last, smaller batch reuses the trace). Each trace adds one to ``counter["traces"]``."""

    def __init__(self, fn, counter):
        self.fn, self.counter, self.fns = fn, counter, {}

    def __call__(self, *args):
        key = tuple(_signature(a) for a in args)
        if key in self.fns:
            return self.fns[key](*args)

        def traced(*a):
            self.counter["traces"] += 1   # Python code in a tf.function runs only while tracing
            return self.fn(*a)
        self.fns[key] = tf.function(traced, input_signature=[_spec(a) for a in args])
        out = self.fns[key](*args)
        release_memory()   # tracing, graph optimisation and the first run leave 0.3-0.4 GB freed in malloc
        return out


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


def _apply_gradients(optimizer, grads_and_vars):
    """``optimizer.apply_gradients`` in the cross-replica context (a ``merge_call``), where Keras skips its
    all-reduce of the gradients (a no-op on the one device ftkit trains on). Inside a ``tf.function`` that
    all-reduce goes through TensorFlow's custom-gradient registry, which keeps every traced step alive, and
    with it every model's and optimizer's variables, until the process ends: about 0.35 GB per fine-tuned
    MiniLM, so a notebook comparing four of them could not fit in 2 GB (tests/test_session_runs.py)."""
    context = tf.distribute.get_replica_context()
    if context is None:
        optimizer.apply_gradients(grads_and_vars)
    else:
        context.merge_call(lambda _: optimizer.apply_gradients(grads_and_vars))


def describe(config):
    """Where a run with ``config`` trains: device, its name and the precision (see ftkit.device_info)."""
    device = pick_device(config.device)
    name = "CPU"
    if device != "cpu":
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        name = details.get("device_name", "GPU")
    return {"device": "cuda" if device != "cpu" else "cpu", "name": name,
            "precision": pick_precision(config.precision, device)}


_Steps = namedtuple("_Steps", "fused grad apply grads_finite")


class _Runtime:
    """What a model keeps between runs in ``model.runtime``: each group's variables, one optimizer set
    per optimizer setting, and the traced steps with what they use. A second run on the same model
    therefore reuses its traced steps instead of tracing again; each run resets the optimizer state.
    """

    MAX_TRACED = 16   # traced step sets kept per model (least recently used dropped first)
    _training = None  # a weak reference to the runtime of the model that trained last (see hold)

    def __init__(self, model, tf_device):
        self.tf_device = tf_device
        self.vars = [group_variables(g.members) for g in model.groups]
        self.optimizers = {}            # (optimizer, weight_decay, momentum) -> one optimizer per group
        self.accum = None               # gradient accumulators per group, made when first needed
        self.traced = OrderedDict()     # step key -> _Steps, or a predict/feature function
        self.anchors = {}               # id(variable) -> its value when the run started (L2-SP)
        self.counter = {"traces": 0}
        with tf.device(tf_device):
            self.correct = tf.Variable(0, dtype=tf.int64, trainable=False)   # training accuracy, on the device
            self.loss_scale = tf.Variable(2.0 ** 15, trainable=False)         # fp16 only

    @staticmethod
    def of(model, tf_device):
        key = ("tf", tf_device)
        if key not in model.runtime:
            model.runtime[key] = _Runtime(model, tf_device)
        return model.runtime[key]

    def hold(self):
        """This model starts training: the model that trained before it, if another, frees its training state
        (optimizers, accumulators, traced steps: about three times its weights, plus the graphs), which it
        rebuilds, and traces again, only if it trains again. So a notebook comparing several models holds
        one model's training state, not all of them; its weights and predictions are untouched."""
        last = _Runtime._training() if _Runtime._training is not None else None
        if last is not None and last is not self:
            last.optimizers.clear()
            last.accum = None
            last.traced.clear()
            last.anchors.clear()
            gc.collect()   # Keras layers and traced functions refer to each other: free them now, not later
        _Runtime._training = weakref.ref(self)

    def optimizer_set(self, cfg):
        """The optimizers for ``cfg``'s optimizer settings (one per group), reset to a fresh state; the
        accumulators, if any, are zeroed."""
        self.hold()
        key = (cfg.optimizer, float(cfg.weight_decay), float(cfg.momentum))
        if key not in self.optimizers:
            with tf.device(self.tf_device):
                opts = []
                for vs in self.vars:
                    opt = _make_optimizer(cfg)
                    opt.exclude_from_weight_decay(var_list=[v for v in vs if len(v.shape) <= 1])
                    opt.build(vs)
                    opts.append(opt)
            self.optimizers[key] = opts
        opts = self.optimizers[key]
        for opt in opts:   # a new run starts from a fresh optimizer: zero moments and step count
            for v in opt.variables:
                v.assign(tf.zeros_like(v))
        for accs in self.accum or ():
            for a in accs:
                a.assign(tf.zeros_like(a))
        return key, opts

    def accumulators(self):
        """The gradient accumulators (a float32 zero copy of every weight, per group), made by the first step
        that needs them: gradient accumulation, fp16 loss scaling or ``train_step(update=False)``. A plain
        step hands its gradients straight to the optimizers, so most runs never hold this copy."""
        if self.accum is None:
            with tf.device(self.tf_device):
                self.accum = [[tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in vs]
                              for vs in self.vars]
        return self.accum

    def get(self, key, make):
        """The traced function(s) stored under ``key``, made with ``make()`` if missing; (value, is_new)."""
        if key in self.traced:
            self.traced.move_to_end(key)
            return self.traced[key], False
        self.traced[key] = make()
        while len(self.traced) > self.MAX_TRACED:
            self.traced.popitem(last=False)
        return self.traced[key], True


def trace_count(model):
    """How many times TensorFlow traced a step of ``model`` in this process (training, prediction, features)."""
    return sum(rt.counter["traces"] for k, rt in model.runtime.items() if k[0] == "tf")


def _forward(model, x, *, train, features, augment=False, seed=None, head=None, body=None):
    if features:
        return (head or model.head)(x, training=train)
    x = tdata.prepare(model, x, train=train, augment=train and augment, seed=seed)
    if head is not None:   # another head on the same body (the original ImageNet classifier)
        return head(model.body(x, training=train), training=train)
    if body is not None:   # grad_checkpointing: the body piece by piece (models.checkpointed_body)
        return model.head(body(x, train), training=train)
    return model.native(x, training=train)


def _gradient(tape, target, variables, statistics):
    """``tape.gradient``, then ``statistics`` (the BatchNorm moving statistics of the groups recomputed by
    grad_checkpointing) put back to their values after the forward pass, which the recomputation in the
    backward pass would otherwise update a second time."""
    after_forward = [tf.identity(v.value) for v in statistics]
    grads = tape.gradient(target, variables)
    for v, value in zip(statistics, after_forward):
        v.assign(value)
    return grads


def per_row_loss(kind, logits, y, label_smoothing=0.0):
    """Each row's loss (float32), for a task's ``loss`` (ftkit.tasks): ``"cross_entropy"`` over the last
    axis of ``logits`` (N, ..., C) with targets ``y`` (N, ...), the mean over a row's targets that are not
    IGNORE; ``"mse"``: the squared error of the one output (N, 1) against ``y`` (N,)."""
    logits = tf.cast(logits, tf.float32)
    if kind == "mse":
        return tf.square(tf.squeeze(logits, -1) - tf.cast(y, tf.float32))
    y = tf.cast(y, tf.int32)
    kept = tf.not_equal(y, IGNORE)
    logp = tf.nn.log_softmax(logits)
    nll = -tf.gather(logp, tf.where(kept, y, 0), batch_dims=len(y.shape))
    if label_smoothing:  # torch's label_smoothing: (1 - eps) * NLL + eps * mean over classes of -log p
        nll = (1 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(logp, -1)
    if len(y.shape) == 1:
        return nll
    kept = tf.cast(tf.reshape(kept, [tf.shape(y)[0], -1]), tf.float32)
    nll = tf.reshape(nll, [tf.shape(y)[0], -1])
    return tf.reduce_sum(nll * kept, 1) / tf.maximum(tf.reduce_sum(kept, 1), 1.0)


def _reduce(class_weights, per_sample, y):
    if class_weights is None:
        return tf.reduce_mean(per_sample)
    w = tf.gather(tf.constant(class_weights, tf.float32), tf.cast(y, tf.int32))
    return tf.reduce_sum(per_sample * w) / tf.reduce_sum(w)


class Trainer:
    """One model, one config: optimizers per group, steps, predictions and weight snapshots.

    The traced steps live in the model's runtime (see :class:`_Runtime`) and are keyed by everything
    they depend on (trainable groups, batch structure, the config fields baked into the graph, dropout
    rates, precision), so a repeated run reuses them and a change traces anew; ``notes`` says when.
    """

    def __init__(self, model, config, class_weights=None):
        self.model, self.config = model, config
        self.task = get_task(model.task)
        self.net = model.native
        self.device = pick_device(config.device)
        self.precision = pick_precision(config.precision, self.device)
        self._tf_device = "/GPU:0" if self.device.startswith("gpu") else "/CPU:0"
        _set_policy(self.net, POLICIES[self.precision])
        if model.head is not None and model.head is not self.net:
            _set_policy(model.head, POLICIES[self.precision])
        self.rt = _Runtime.of(model, self._tf_device)
        self._vars = self.rt.vars
        self.class_weights = None if class_weights is None else tuple(float(w) for w in class_weights)
        self.mask = list(model.trainable_mask())
        self.features = None  # cached body features (feature_extraction)
        self.notes = []       # what the trainer has to say (a new trace); the training loop reports it
        self._cache = {}
        self._steps = None    # the traced steps of the current mask
        self._opt_key = self._optimizers = self._accum = None   # chosen at the first train_step
        self._lrs = [config.lr] * len(model.groups)
        self._good_steps, self._seen, self._step_count = 0, 0, 0
        if config.l2sp > 0:  # anchor: this run's starting weights of every group but the new ones
            with tf.device(self._tf_device):
                for vs in self._vars[:-model.new_groups]:
                    for v in vs:
                        if id(v) in self.rt.anchors:
                            self.rt.anchors[id(v)].assign(v)
                        else:
                            self.rt.anchors[id(v)] = tf.Variable(v.value, trainable=False)
        if self.precision == "fp16":
            self.rt.loss_scale.assign(2.0 ** 15)

    @contextlib.contextmanager
    def seeded(self):
        """Inside: dropout draws from ``config.seed`` (Keras' seed generators are reset) and augmentation
        from (seed, step); nothing global is touched, so the global random state stays as it was."""
        i = 0
        for v in self.net.variables:
            if v.path.endswith("seed_generator_state"):
                v.assign(np.array([self.config.seed * 1000 + i, 0], dtype=v.dtype))
                i += 1
        self._step_count = 0
        yield

    def _build_optimizers(self):
        """The optimizers and accumulators (only when training: predict-only Trainers, as evaluate() makes,
        need neither), reset for this run."""
        if self._optimizers is None:
            self._opt_key, self._optimizers = self.rt.optimizer_set(self.config)
            if self.config.grad_accum > 1 or self.precision == "fp16":
                self._accum = self.rt.accumulators()
            for opt, lr in zip(self._optimizers, self._lrs):
                opt.learning_rate = lr

    # -- groups and LRs ----------------------------------------------------------------------------------
    def set_lrs(self, lrs):
        self._lrs = [float(lr) for lr in lrs]
        for opt, lr in zip(self._optimizers or (), self._lrs):
            opt.learning_rate = lr

    def set_trainable(self, mask):
        """Freeze groups (weights fixed, inference mode) and unfreeze the others (with ``config.peft``, only the
        adapters or biases of the unfrozen body groups train: ftkit.peft)."""
        self.mask = [bool(m) for m in mask]
        self.model.set_trainable(self.mask, peft=self.config.peft)
        self._steps = None

    def trainable_params(self):
        return int(sum(np.prod(v.shape) for v in self.net.trainable_weights))

    # -- data --------------------------------------------------------------------------------------------
    def _tensors(self, split):
        return self._encoded(split)[2:]

    def _encoded(self, split):
        """(split, its rows from the task, their input arrays, their targets), made once per split."""
        key = id(split)
        if key not in self._cache:
            encoded = self.task.encode(self.model, split)
            self._cache[key] = (split, encoded, *tdata.from_encoded(self.model, encoded))
        return self._cache[key]

    def encoded(self, split):
        """The task's rows of ``split`` (ftkit.tasks.Encoded): what ``batches`` reads and ``predict`` scores."""
        return self._encoded(split)[1]

    def rows(self, split):
        """How many rows ``batches`` reads from ``split`` in one pass (examples, or QA windows)."""
        return len(self.encoded(split))

    def cache_features(self, splits):
        """feature_extraction: run the frozen body once over each split; later steps train only the head."""
        model = self.model

        def make():
            def features(x):
                x = tdata.prepare(model, x, train=False)
                return tf.cast(model.body(x, training=False), tf.float32)
            return _Traced(features, self.rt.counter)

        features, _ = self.rt.get(("features", self.precision), make)
        self.features = {}
        with tf.device(self._tf_device):
            for split in splits:
                x, y = self._tensors(split)
                feats = [features(tdata.take(x, slice(i, i + FEATURE_CHUNK))) for i in range(0, len(y), FEATURE_CHUNK)]
                self.features[id(split)] = (tf.concat(feats, 0), tf.constant(y))
        self._steps = None

    def body_features(self, split):
        """The body's features of ``split`` as a NumPy array (N, D), computed as feature_extraction does
        (inference mode); used by ftkit.difficulty."""
        self.cache_features([split])
        return self.features[id(split)][0].numpy()

    def batches(self, split, shuffle=False, seed=0, order=None):
        """Yield batches ``(x, y)`` of a split (cached features when there are): in ``order`` (indices,
        which may repeat: see ftkit.sampling) when given, else shuffled with ``seed``, else in order."""
        if self.features is not None:
            x, y = self.features[id(split)]
            n = int(y.shape[0])
        else:
            x, y = self._tensors(split)
            n = len(y)
        if order is not None:
            order = np.asarray(order, dtype=np.int64)
        else:
            order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        n = len(order)
        for i in range(0, n, self.config.batch_size):
            idx = order[i:i + self.config.batch_size]
            if self.features is not None:
                yield tf.gather(x, idx), tf.gather(y, idx)
            else:
                yield tdata.take(x, idx), y[idx]

    # -- steps -------------------------------------------------------------------------------------------
    def _step_key(self):
        """Everything a traced training step depends on."""
        cfg = self.config
        live = {id(v) for v in self.net.trainable_weights}   # a layer frozen by hand inside a group stays fixed
        if self.model.head is not None:
            live |= {id(v) for v in self.model.head.trainable_weights}
        dropout = tuple(float(d.rate) for d in dropout_layers([self.net]))
        return ("train", tuple(self.mask), self.features is not None, frozenset(live), dropout, self.precision,
                self._opt_key, cfg.grad_accum, cfg.clip_norm, cfg.l2sp, cfg.label_smoothing, cfg.augment,
                self.class_weights, cfg.grad_checkpointing, self._accum is not None), live

    def _step_fns(self):
        """The traced gradient and update steps of the current mask, from the model's runtime."""
        if self._steps is not None:
            return self._steps
        self._build_optimizers()
        key, live = self._step_key()
        self._steps, new = self.rt.get(key, lambda: self._make_steps(live))
        if new:
            names = [n for n, m in zip(self.model.group_names, self.mask) if m]
            self.notes.append(f"tracing the TensorFlow training step for trainable groups {', '.join(names)} "
                              "(once per group structure and setting; later runs reuse it)")
        return self._steps

    def _make_steps(self, live):
        """Trace-ready step functions. They capture the model, the runtime's variables and the config values
        in the step key, never this Trainer (so a cached step holds no run's data)."""
        model, rt, cfg = self.model, self.rt, self.config
        features = self.features is not None
        kind, counts, smoothing = self.task.loss, self.task.counts_correct, cfg.label_smoothing
        augment, class_weights = cfg.augment, self.class_weights
        grad_accum, clip_norm, l2sp = cfg.grad_accum, cfg.clip_norm, cfg.l2sp
        optimizers = self._optimizers
        # (group index, [(variable, accumulator)]) of every group that trains now
        accum = self._accum or [[None] * len(vs) for vs in self._vars]   # None: only fused steps, no accumulators
        plan = [(i, [(v, a) for v, a in zip(self._vars[i], accum[i]) if id(v) in live])
                for i, m in enumerate(self.mask) if m]
        variables = [v for _, pairs in plan for v, _ in pairs]
        accums = [a for _, pairs in plan for _, a in pairs if a is not None]
        anchors = [(v, rt.anchors[id(v)]) for v in variables if id(v) in rt.anchors] if l2sp > 0 else []
        scale = rt.loss_scale if self.precision == "fp16" else None
        correct = rt.correct
        no_grad = set()  # accumulators the loss does not reach (found when grad_step is traced; not stepped)
        # grad_checkpointing: the members of the body groups that train are recomputed in the backward pass
        members = [m for g, t in zip(model.groups[:-1], self.mask) if t for m in g.members] \
            if cfg.grad_checkpointing and not features else []
        body = models.checkpointed_body(model, members) if members else None
        statistics = models.recomputed_statistics(model, members) if members else []

        def losses(x, y, seed):
            """The batch loss, and what is differentiated (L2-SP added); counts correct answers on the device."""
            if kind == "native":   # the model computes its own loss (a detector: ftkit.tasks.detection)
                loss, _ = model.native.loss_and_outputs(tdata.prepare(model, x, train=True), y, training=True)
            else:
                logits = _forward(model, x, train=True, features=features, augment=augment, seed=seed, body=body)
                loss = _reduce(class_weights, per_row_loss(kind, logits, y, smoothing), y)
            if counts and kind != "native":   # no extra sync per step
                hits = tf.equal(tf.argmax(logits, -1), tf.cast(y, tf.int64))
                correct.assign_add(tf.reduce_sum(tf.cast(hits, tf.int64)))
            total = loss
            if anchors:
                total = total + l2sp / 2 * tf.add_n([tf.reduce_sum(tf.square(v - v0)) for v, v0 in anchors])
            return loss, total

        def apply(grads_and_vars):
            """Clip (one global norm over all groups, as torch's clip_grad_norm_) and step each group's optimizer."""
            grads = [g for g, _ in grads_and_vars]
            if clip_norm and grads:
                grads, _ = tf.clip_by_global_norm(grads, clip_norm)
            grad_of = {id(v): g for g, (_, v) in zip(grads, grads_and_vars)}
            for i, pairs in plan:
                todo = [(grad_of[id(v)], v) for v, _ in pairs if id(v) in grad_of]
                if todo:
                    _apply_gradients(optimizers[i], todo)
            return tf.constant(True)

        def fused_step(x, y, seed):
            """grad_accum == 1 without loss scaling: gradients go straight to the optimizers (no accumulators);
            a non-finite loss skips the update."""
            with tf.GradientTape() as tape:
                loss, total = losses(x, y, seed)
            grads = _gradient(tape, total, variables, statistics)
            kept = [(g, v) for g, v in zip(grads, variables) if g is not None]
            tf.cond(tf.math.is_finite(loss), lambda: apply(kept), lambda: tf.constant(False))
            return loss

        def grad_step(x, y, seed):
            with tf.GradientTape() as tape:
                loss, total = losses(x, y, seed)
                scaled = total / grad_accum
                if scale is not None:
                    scaled = scaled * scale
            grads = _gradient(tape, scaled, variables, statistics)
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

        return _Steps(_Traced(fused_step, rt.counter), _Traced(grad_step, rt.counter), apply_step, grads_finite)

    def train_step(self, batch, update=True):
        """Forward and backward one batch; step the optimizers when ``update``. Returns the batch loss.

        The optimizers never step on a non-finite loss: the caller then calls discard_grads().
        """
        x, y = batch
        steps = self._step_fns()
        seed = np.array([self.config.seed, self._step_count], np.int64)   # augmentation's stateless draws
        self._step_count += 1
        scale = self.rt.loss_scale if self.precision == "fp16" else None
        with tf.device(self._tf_device):
            self._seen += len(y)
            if update and self.config.grad_accum == 1 and scale is None:
                return float(steps.fused(x, y, seed))
            if self._accum is None:   # train_step(update=False) on a plain run: accumulators from now on
                self._accum, self._steps = self.rt.accumulators(), None
                steps = self._step_fns()
            value = float(steps.grad(x, y, seed))
            if update and np.isfinite(value):
                if scale is not None and not bool(steps.grads_finite()):
                    scale.assign(scale / 2)   # fp16 overflow: skip this step
                    self._good_steps = 0
                    self.discard_grads()
                else:
                    steps.apply()
                    if scale is not None:
                        self._good_steps += 1
                        if self._good_steps % 2000 == 0:
                            scale.assign(scale * 2)
        return value

    def train_metrics(self):
        """Training accuracy since the last call (classification), then reset."""
        out = {"train_accuracy": int(self.rt.correct.numpy()) / self._seen} \
            if self._seen and self.task.counts_correct else {}
        self.rt.correct.assign(0)
        self._seen = 0
        return out

    def discard_grads(self):
        for accs in self._accum or ():
            for a in accs:
                a.assign(tf.zeros_like(a))

    def predict(self, split, head=None):
        """Mean loss and the logits of every row of a split (float32 NumPy; the task turns them into
        predictions: ftkit.tasks).

        ``head`` replaces the model's head (the original ImageNet classifier, see FTModel.original_head)."""
        model, features = self.model, self.features is not None
        kind, smoothing = self.task.loss, self.config.label_smoothing

        def make():
            def forward(x, y):
                if kind == "native":   # (the batch's loss for each row, detections): ftkit.tasks.detection
                    loss, found = model.native.loss_and_outputs(tdata.prepare(model, x, train=False), y,
                                                                training=False)
                    return tf.fill([tf.shape(found)[0]], loss), found
                logits = tf.cast(_forward(model, x, train=False, features=features, head=head), tf.float32)
                return per_row_loss(kind, logits, y, smoothing), logits
            return _Traced(forward, self.rt.counter)

        # training=False: independent of the mask and of dropout
        key = ("predict", features, kind, smoothing, self.precision, None if head is None else id(head),
               tuple(sorted(getattr(model.native, "decoding", {}).items())))   # seq2seq: beams and length
        forward, _ = self.rt.get(key, make)
        losses, scores = [], []
        with tf.device(self._tf_device):
            for x, y in self.batches(split):
                loss, out = forward(x, y)
                losses.append(loss.numpy())
                scores.append(out.numpy())
        return float(np.concatenate(losses).mean()), np.concatenate(scores)

    # -- weights -----------------------------------------------------------------------------------------
    def get_weights(self, previous=None, reuse=False):
        """A copy of every weight (BatchNorm statistics included), keyed like io.save_weights. A weight still
        equal to its copy in ``previous`` (an earlier snapshot) shares that copy, so a snapshot costs memory
        only for what changed (a LoRA run changes about 2% of the weights). ``reuse=True`` overwrites
        ``previous`` instead: a changed weight is copied into its old copy, so no second snapshot is ever held
        (``previous`` is the new snapshot afterwards)."""
        out = {}
        for k, v in named_weights(self.net).items():
            value, old = v.numpy(), (previous or {}).get(k)
            if old is None or old.dtype != value.dtype or old.shape != value.shape:
                out[k] = np.array(value, copy=True)
            elif np.array_equal(old, value):
                out[k] = old
            elif reuse:
                np.copyto(old, value)
                out[k] = old
            else:
                out[k] = np.array(value, copy=True)
        return out

    def in_a_file(self, snapshot):
        """``snapshot`` (get_weights) in a temporary file's pages (ftkit.machine.in_a_file)."""
        return in_a_file(snapshot)

    def weights_finite(self):
        """True when every floating-point weight (BatchNorm statistics included) is finite."""
        values = (np.asarray(v.numpy()) for v in named_weights(self.net).values())
        return all(np.isfinite(a).all() for a in values if a.dtype.kind == "f")

    def set_weights(self, snapshot):
        weights = named_weights(self.net)
        if set(weights) != set(snapshot):
            raise ValueError("snapshot does not match the model's weights")
        for k, v in weights.items():
            v.assign(snapshot[k])
