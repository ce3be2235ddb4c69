"""The fine-tuning loop, written once for both frameworks.

``finetune(model, data, config)`` checks everything before the first step,
then for each epoch: applies the strategy's trainable groups, runs the steps
(per-group LRs from the schedule, gradient accumulation), evaluates on the
validation split, records history and calls the callbacks. The backend's
Trainer (ftkit/backends/*/train.py) does the framework-specific work, and the
model's task (ftkit.tasks) says how rows are made, the loss, the predictions
and the metrics; this loop is the same for every task.
"""
import math
import threading
import time
import weakref

import numpy as np

from . import checkpointing as _checkpointing
from . import machine
from . import peft as _peft
from . import sampling
from .config import FineTuneConfig
from .data import Dataset, checked_inputs
from .machine import MemoryWatch, release_memory
from .errors import ConfigError, DataError, choose
from .schedules import group_lrs, lr_factor, schedule_kwargs
from .strategies import plan
from .tasks import get as get_task

# Every run of this process, oldest first, for the RunBoard: a weak reference to each run still in use, and in
# place of a run that was freed, its copy without the model (see _register).
_SESSION_RUNS = []


class Callback:
    """Subclass and override what you need; every method gets the live :class:`Run`."""

    def on_train_begin(self, run): ...

    def on_epoch_begin(self, run, epoch, mask): ...

    def on_step_end(self, run, record): ...

    def on_epoch_end(self, run, record): ...

    def on_train_end(self, run): ...


class Run:
    """A fine-tuning run: its config, its history, its status and the model it trained.

    ``history["steps"]`` has one record per optimizer step (loss, LR of each group);
    ``history["epochs"]`` one per epoch (train/val metrics, trainable parameters,
    wall time, samples/s). ``status`` is running, finished, stopped,
    early_stopped or diverged; ``kept`` says which weights the model holds at the
    end ("last", "best (epoch N)" or "initial"); ``notes`` holds what the run had
    to say about itself (a precision fallback, a re-traced step...).
    """

    def __init__(self, model, dataset_name, config, *, name=None):
        self.model, self.dataset_name, self.config = model, dataset_name, config
        self.model_name, self.framework = model.name, model.framework
        self.history = {"steps": [], "epochs": []}
        self.status, self.message = "created", ""
        self.device = self.precision = None
        self.kept, self.notes, self.dropout = None, [], model.dropout
        self.started_at = self.ended_at = None   # time.perf_counter() at the start and the end of training
        self.group_names = model.group_names
        self.total_steps = 0
        self.test_metrics = None
        self._stop = threading.Event()
        self.task = getattr(model, "task", "classification")
        self.name = name or f"run{len(_SESSION_RUNS) + 1}"
        _register(self)

    def request_stop(self):
        """Ask the run to stop after the current step (safe to call from another thread)."""
        self._stop.set()

    @property
    def stop_requested(self):
        return self._stop.is_set()

    @property
    def best_epoch(self):
        """The epoch record with the best monitored validation metric, or None."""
        eps = [e for e in self.history["epochs"] if self.config.monitor in e]
        if not eps:
            return None
        pick = min if self.config.monitor == "val_loss" else max
        return pick(eps, key=lambda e: e[self.config.monitor])

    @property
    def wall_time(self):
        """Seconds spent in the training steps of the recorded epochs (validation excluded)."""
        return sum(e["wall_time"] for e in self.history["epochs"])

    @property
    def elapsed(self):
        """Seconds since the run started (set-up, steps and validation), frozen when it ends."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at if self.ended_at is not None else time.perf_counter()) - self.started_at

    @property
    def steps_done(self):
        return len(self.history["steps"])

    @property
    def time_left(self):
        """Estimated seconds to the end of a running run (None before its first step or once it ended)."""
        done = self.steps_done
        if self.status != "running" or not done or not self.total_steps:
            return None
        return self.elapsed / done * max(0, self.total_steps - done)

    def summary(self):
        """One flat dict: what the RunBoard shows."""
        best = self.best_epoch or {}
        c = self.config
        return {"run": self.name, "framework": self.framework, "model": self.model_name,
                "dataset": self.dataset_name, "strategy": c.strategy, "lr": c.lr, "schedule": c.schedule,
                "epochs": len(self.history["epochs"]), "steps": self.steps_done, "total_steps": self.total_steps,
                "best_epoch": best["epoch"] + 1 if best else None, "best_val_accuracy": best.get("val_accuracy"),
                "best_val_loss": best.get("val_loss"),
                "trainable_params": best.get("trainable_params"), "wall_time": round(self.elapsed, 2),
                "status": self.status, "kept": self.kept}

    def save(self, path):
        from .runs import save_run
        return save_run(self, path)

    def __repr__(self):
        return f"Run({self.name!r}, {self.model_name}/{self.framework}, {self.status}, epochs={len(self.history['epochs'])})"


def _register(run):
    """Add ``run`` to the session without keeping it, or its model, alive: a notebook that trains one fresh
    model after another would otherwise hold every one of them until the kernel stops. When nothing else
    refers to the run, its place is taken by a copy of its state (name, config, history, status...) whose
    ``model`` is None, so the RunBoard still shows it and the model's memory is freed."""
    slot = len(_SESSION_RUNS)
    _SESSION_RUNS.append(weakref.ref(run))
    weakref.finalize(run, _retire, slot, run.__dict__)   # holds the state, not the run


def _retire(slot, state):
    copy = Run.__new__(Run)
    copy.__dict__.update(state, model=None)
    _SESSION_RUNS[slot] = copy


def session_runs():
    """Every run made in this Python process, oldest first (runs no longer referenced have ``model=None``)."""
    return [entry() if isinstance(entry, weakref.ref) else entry for entry in _SESSION_RUNS]


def check(model, data, config):
    """Refuse a bad model/data/config combination before any training starts."""
    if not isinstance(config, FineTuneConfig):
        raise ConfigError("config must be a ftkit.FineTuneConfig")
    if not isinstance(data, Dataset):
        raise DataError("data must be a ftkit Dataset (ftkit.load_dataset or Dataset.from_arrays)")
    n_groups = len(model.groups)
    task = get_task(model.task)
    config.validate(n_groups=n_groups, num_classes=model.num_classes, monitors=task.monitors)
    data.validate()
    if data.modality != model.modality:
        raise DataError(f"model {model.name!r} takes {model.modality} inputs but dataset {data.name!r} "
                        f"holds {data.modality}")
    if data.task != model.task:
        raise DataError(f"model {model.name!r} is for task {model.task!r} but dataset {data.name!r} is "
                        f"{data.task!r}; load the model with task={data.task!r}")
    if config.class_weights is not None and model.task != "classification":
        raise ConfigError(f"class_weights={config.class_weights!r} weights each example's loss by its one class, "
                          f"which only classification has (task {model.task!r}); leave class_weights=None")
    task.check(model, data)
    task.check_config(config)
    if config.dropout is not None:
        model.check_dropout(config.dropout)
    sampling.check(config, data)
    if config.strategy == "feature_extraction" and (model.body is None or model.head is None):
        why = " (a detector's heads read the backbone's feature maps, not one pooled vector)" \
            if model.task == "detection" else ""
        raise ConfigError(f"strategy='feature_extraction' needs a model with a separate body and head{why}; "
                          "use 'head_only' (the body frozen) or wrap_model(..., body=..., head=...)")
    _peft.check(model, config)
    _checkpointing.check(model, config)


def _class_weights(config, data):
    if config.class_weights is None:
        return None
    if config.class_weights == "balanced":
        counts = np.maximum(data.class_counts("train"), 1)
        return (counts.sum() / (len(counts) * counts)).astype(np.float32)
    return np.asarray(config.class_weights, dtype=np.float32)


def batches_per_epoch(n_train, config):
    """Batches read in one epoch."""
    batches = math.ceil(n_train / config.batch_size)
    if config.max_steps_per_epoch:
        batches = min(batches, config.max_steps_per_epoch * config.grad_accum)
    return batches


def steps_per_epoch(n_train, config):
    """Optimizer steps in one epoch (a last, partial accumulation also steps)."""
    return math.ceil(batches_per_epoch(n_train, config) / config.grad_accum)


def finetune(model, data, config=None, *, callbacks=(), name=None, **overrides):
    """Fine-tune ``model`` on ``data`` and return the :class:`Run`.

    ``config`` is a FineTuneConfig; keyword ``overrides`` change some of its
    fields (``finetune(model, data, strategy="partial", lr=1e-3)``).

    Every random draw of the run comes from ``config.seed``: a fresh head's
    initialisation (the first run of a model from ``load_model``), dropout,
    shuffling and augmentation. On a CPU, two runs with the same config and data
    are bitwise identical; some GPU kernels are not deterministic, so on a GPU
    they agree closely but not bitwise. The global random state is left as it was.
    """
    config = config or FineTuneConfig()
    if overrides:
        config = config.replace(**overrides)
    check(model, data, config)
    if config.dropout is not None:
        model.set_dropout(config.dropout)
    if model.class_names is None and data.class_names and len(data.class_names) == model.num_classes:
        model.class_names = list(data.class_names)
    run = Run(model, data.name, config, name=name)
    try:
        _fit(run, data, list(callbacks))
    except BaseException:
        run.status = "failed"
        raise
    finally:
        if run.started_at is not None and run.ended_at is None:
            run.ended_at = time.perf_counter()
        for cb in callbacks:
            cb.on_train_end(run)
    return run


def _fit(run, data, callbacks):
    model, config = run.model, run.config
    _peft.prepare(model, config)   # LoRA adapters on a model's first LoRA run (before the optimizers exist)
    _peft.note_trained(model, config)
    trainer = model.backend.train.Trainer(model, config, _class_weights(config, data))
    run.device, run.precision = str(trainer.device), trainer.precision
    if config.precision not in ("auto", trainer.precision):
        run.notes.append(f"precision={config.precision!r} needs a GPU; this run uses {trainer.precision} on "
                         f"{run.device}")
    masks = plan(config, len(model.groups), model.new_groups)
    n_train = trainer.rows(data.train)   # rows the task makes: examples, or QA windows
    run.total_steps = steps_per_epoch(n_train, config) * config.epochs
    run.started_at = time.perf_counter()
    with trainer.seeded():
        if model.fresh_head:   # the new head's initial weights come from this run's seed
            model.init_head(config.seed)
            model.fresh_head = False
        for cb in callbacks:
            cb.on_train_begin(run)
        run.status = "running"
        if config.strategy == "feature_extraction":
            trainer.set_trainable(masks[0])
            trainer.cache_features([data.train, data.val])
        best = _Best(config.monitor, _first_snapshot(trainer))
        watch = MemoryWatch()
        for epoch, mask in enumerate(masks):
            trainer.set_trainable(mask)
            for cb in callbacks:
                cb.on_epoch_begin(run, epoch, mask)
            record = _train_epoch(run, trainer, data, epoch, mask, callbacks, watch)
            _take_notes(run, trainer)
            if watch.message:   # near the machine's memory limit: stop with a message, not a killed kernel
                return _end(run, trainer, best, "stopped", watch.message)
            if record is not None:
                record = _validate(run, trainer, data, record)
            if record is not None and not trainer.weights_finite():
                run.message, record = f"weights became infinite or NaN in epoch {epoch + 1}", None
            if record is None:  # the loss, the validation loss or the weights are no longer finite
                trainer.discard_grads()
                return _end(run, trainer, best, "diverged", run.message + "; training stopped: try a lower "
                            "learning rate")
            run.history["epochs"].append(record)
            best.update(record, trainer)
            release_memory()   # what the epoch freed goes back to the system (a notebook runs on after it)
            for cb in callbacks:
                cb.on_epoch_end(run, record)
            if config.early_stopping and best.bad_epochs >= config.early_stopping:
                return _end(run, trainer, best, "early_stopped",
                            f"no better {config.monitor} for {config.early_stopping} epochs")
            if run.stop_requested:
                return _end(run, trainer, best, "stopped", f"stopped by request in epoch {epoch + 1} after "
                            f"{record['steps']} of {steps_per_epoch(n_train, config)} steps")
        return _end(run, trainer, best, "finished", "")


def _first_snapshot(trainer):
    """The weights a run starts from, copied; after save_memory in a file's pages, not in memory (the copy in
    memory is freed on return)."""
    weights = trainer.get_weights()
    return trainer.in_a_file(weights) if machine.SNAPSHOTS_IN_A_FILE else weights


def _take_notes(run, trainer):
    """Move what the trainer had to say (e.g. TensorFlow tracing a step) into the run, and print it."""
    for note in trainer.notes:
        run.notes.append(note)
        if run.config.progress:
            print(f"ftkit: {note}")
    trainer.notes.clear()


def _end(run, trainer, best, status, message):
    """The one exit of a run: choose the weights it keeps, restore them and record the choice.

    finished and stopped keep the last weights; early_stopped keeps the best epoch's by
    ``config.monitor``; diverged keeps the best epoch's, or the weights the run started from
    when no epoch finished.
    """
    if status == "early_stopped" or status == "diverged":
        if best.epoch is None:
            trainer.set_weights(best.initial)
            run.kept = "initial"
        else:
            trainer.set_weights(best.weights)
            run.kept = f"best (epoch {best.epoch + 1})"
    else:
        run.kept = "last"
    _take_notes(run, trainer)
    release_memory()
    run.ended_at = time.perf_counter()
    run.status = status
    run.message = f"{message}; kept the {run.kept} weights" if message else f"kept the {run.kept} weights"


def _train_epoch(run, trainer, data, epoch, mask, callbacks, watch):
    """One pass over the training split; returns the epoch record, or None if the loss diverged. It ends early
    when a stop is requested or when ``watch`` (a MemoryWatch) finds the process near the memory limit."""
    config = run.config
    base_lrs = group_lrs(config, len(mask))
    sched = schedule_kwargs(config)
    n_rows = trainer.rows(data.train)
    n_batches = batches_per_epoch(n_rows, config)
    bar = _progress(config, steps_per_epoch(n_rows, config), f"epoch {epoch + 1}/{config.epochs}")
    t0, seen, losses, micro, done = time.perf_counter(), 0, [], 0, 0
    step = len(run.history["steps"])
    guard = _SpikeGuard(config.loss_spike, run.history["steps"])
    order = sampling.epoch_order(config, data.train, epoch)   # None: the trainer's seeded shuffle
    batches = trainer.batches(data.train, shuffle=True, seed=config.seed * 1000 + epoch, order=order)
    try:
        for b, batch in zip(range(n_batches), batches):
            if micro == 0:  # a new optimizer step: set each group's LR from the schedule
                lrs = [lr * lr_factor(step, run.total_steps, **sched) for lr in base_lrs]
                trainer.set_lrs(lrs)
            micro += 1
            update = micro == config.grad_accum or b == n_batches - 1
            loss = trainer.train_step(batch, update=update)
            if not math.isfinite(loss):
                run.message = f"loss became {loss} at step {step} (epoch {epoch + 1})"
                return None
            if guard.spiked(loss):
                what = "first loss" if guard.n < guard.warmup else "running mean"
                run.message = (f"loss spiked to {loss:.4g} at step {step} (epoch {epoch + 1}), more than "
                               f"loss_spike={config.loss_spike} times its {what} {guard.reference:.4g}")
                return None
            seen += len(batch[1])   # the targets: one row each
            losses.append(loss)
            if update:
                rec = {"step": step, "epoch": epoch, "loss": float(np.mean(losses[-micro:])),
                       "lrs": [lr if m else 0.0 for lr, m in zip(lrs, mask)]}
                micro, step, done = 0, step + 1, done + 1
                run.history["steps"].append(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                for cb in callbacks:
                    cb.on_step_end(run, rec)
                if run.stop_requested or watch.full():
                    break
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    return {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
            **trainer.train_metrics(), "trainable_params": trainer.trainable_params(),
            "trainable_mask": list(mask), "steps": done, "wall_time": wall,
            "samples_per_sec": seen / wall if wall > 0 else 0.0}


def _validate(run, trainer, data, record):
    """Add validation loss and metrics to the epoch record; None if they are not finite."""
    val_loss, logits = trainer.predict(data.val)
    if not (math.isfinite(val_loss) and np.isfinite(logits).all()):
        run.message = f"validation loss became {val_loss} after epoch {record['epoch'] + 1}"
        return None
    record["val_loss"] = val_loss
    task = get_task(run.model.task)
    encoded = trainer.encoded(data.val)
    outputs = task.outputs(logits, encoded, data.val)
    for k, v in task.metrics(data.val, outputs, encoded).items():
        if k != "confusion_matrix":
            record[f"val_{k}"] = v
    return record


class _SpikeGuard:
    """``config.loss_spike``: a step whose loss exceeds ``factor`` times a reference stops the run.

    The reference is the run's first loss for the first ``warmup`` steps (an LR too high from the
    start blows up at once), then the running (exponential) mean of the previous steps' losses.
    """

    def __init__(self, factor, steps, warmup=10, decay=0.9):
        self.factor, self.warmup, self.decay = factor, warmup, decay
        self.n, self.mean, self.first = 0, 0.0, None
        for rec in steps:   # carry the mean across epochs
            self.add(rec["loss"])

    def add(self, loss):
        self.first = loss if self.first is None else self.first
        self.mean = loss if self.n == 0 else self.decay * self.mean + (1 - self.decay) * loss
        self.n += 1

    @property
    def reference(self):
        return self.first if self.n < self.warmup else self.mean

    def spiked(self, loss):
        if self.factor is None:
            return False
        if self.n >= 1 and loss > self.factor * self.reference:
            return True
        self.add(loss)
        return False


class _Best:
    """The best monitored value so far, its epoch and weights, and the epochs since it improved. The weights
    the run started from are kept only until an epoch finishes (then a diverged run keeps the best epoch's).
    One snapshot is held at a time: a new best overwrites the one held, in place."""

    def __init__(self, monitor, initial):
        self.monitor, self.initial = monitor, initial
        self.score = self.weights = self.epoch = None
        self.bad_epochs = 0

    @property
    def kept(self):
        """The snapshot held now (the best epoch's, else the initial): a new one shares its unchanged weights."""
        return self.initial if self.weights is None else self.weights

    def update(self, record, trainer):
        """Score the epoch of ``record``; a new best takes the trainer's weights (a copy only of what changed)."""
        score = record[self.monitor] * (1 if self.monitor == "val_loss" else -1)
        if self.score is None or score < self.score:
            self.weights = trainer.get_weights(previous=self.kept, reuse=True)
            self.score, self.epoch, self.bad_epochs = score, record["epoch"], 0
        else:
            self.bad_epochs += 1
        self.initial = None


def _progress(config, total, desc):
    if not config.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


def predict(model, data, split="test", config=None, *, head="new", batch_size=64):
    """Predictions of ``model``, one per example: class probabilities (N, classes), predictions for
    regression (N,), answer strings for question answering (a list), texts for seq2seq and captioning (greedy: see
    :func:`generate` for beam search), or for detection a list of
    ``{"boxes": (d, 4) [x1, y1, x2, y2] pixels, "scores": (d,), "labels": (d,)}`` after non-maximum
    suppression, best first.

    ``data`` is a Dataset (predictions for its ``split``, in the split's order) or raw inputs: images
    (N, H, W[, C]) in 0..255 or 0..1, one image (H, W[, C]), a list of images of any sizes (each is
    resized by the model), a list of texts, or for QA a list of ``{"question", "context"}`` dicts.
    ``head="original"`` scores with the pre-trained ImageNet classifier kept beside the new head
    (:attr:`FTModel.original_head`).
    """
    choose("head", head, ["new", "original"])
    if head == "original" and model.original_head is None:
        raise ConfigError(f"head='original': model {model.name!r} keeps no original head (only pre-trained "
                          "image models loaded with a new num_classes do); use head='new'")
    if isinstance(data, Dataset):
        return _predict(model, data, split, config, head)[1]
    config = config or FineTuneConfig(progress=False, batch_size=batch_size)
    if model.task == "detection":   # images of the detector's size: one (H, W[, C]), an array or a list
        from .tasks.detection import check_size
        inputs = checked_inputs(np.stack([np.asarray(i) for i in data]) if isinstance(data, list) else
                                _one_image(data), task="detection", modality="image")
        check_size(model, inputs.test.x, "images")
        return _predict(model, inputs, "test", config)[1]
    if model.task == "qa":
        return _predict(model, checked_inputs(data, task="qa", modality="text"), "test", config)[1]
    if model.task == "seq2seq":   # source texts: one, or a list
        from .tasks.seq2seq import check_sources
        inputs = checked_inputs(data, task="seq2seq", modality="text")
        check_sources(model, inputs.test.x, "inputs")
        return _predict(model, inputs, "test", config)[1]
    if model.task == "captioning":   # images: one (H, W[, C]), an array, or a list of one size
        inputs = checked_inputs(np.stack([np.asarray(i) for i in data]) if isinstance(data, list) and data else
                                _one_image(data), task="captioning", modality="image")
        return _predict(model, inputs, "test", config)[1]
    if isinstance(data, list) and data and not isinstance(data[0], str):   # images of different sizes
        return np.concatenate([predict(model, _one_image(x), config=config, head=head) for x in data])
    if model.modality == "image" and not isinstance(data, list):
        data = _one_image(data)
    inputs = checked_inputs(data, task=model.task, modality=model.modality)
    return _predict(model, inputs, "test", config, head)[1]


def generate(model, data, split="test", *, num_beams=1, max_length=None, config=None, batch_size=64):
    """The texts a seq2seq or captioning model writes for ``data``: source texts (one, or a list), images
    (one, or an array) or a Dataset's ``split``.

    ``num_beams=1`` is greedy decoding (the likeliest next token, every step); more is beam search, which
    keeps the ``num_beams`` likeliest partial texts and returns the best finished one. A text ends at the
    end token or after ``max_length`` tokens (default: the model's ``max_length``). Both frameworks decode
    with a cache of the past keys and values, so each new token costs one decoder step."""
    from .tasks.seq2seq import decoding_settings
    with decoding_settings(model, num_beams, max_length):
        return predict(model, data, split, config, batch_size=batch_size)


def _one_image(x):
    """An image batch: a single (H, W) or (H, W, 1|3) image gets a batch axis of 1."""
    x = np.asarray(x)
    single = x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (1, 3))
    return x[None] if single else x


def _predict(model, data, split, config, head="new"):
    """(mean loss, predictions) of ``model`` on ``data.splits[split]``: the task's outputs (ftkit.tasks)."""
    if split not in data.splits:
        raise ConfigError(f"split={split!r} is not valid; choose one of: {', '.join(data.splits)}")
    trainer = model.backend.train.Trainer(model, config or FineTuneConfig(progress=False))
    trainer.set_trainable(model.trainable_mask())
    s = data.splits[split]
    loss, logits = trainer.predict(s, head=model.original_head if head == "original" else None)
    encoded = trainer.encoded(s)
    return loss, get_task(model.task).outputs(logits, encoded, s), encoded


def device_info(framework="torch", config=None):
    """Where a run of ``framework`` with ``config`` would train: ``{"device", "name", "precision"}``,
    e.g. ``{"device": "cuda", "name": "NVIDIA H100 80GB HBM3", "precision": "bf16"}``."""
    from . import _frameworks
    config = config or FineTuneConfig()
    return _frameworks.backend(framework).train.describe(config)


def evaluate(model, data, split="test", config=None):
    """The loss and the task's metrics of ``model`` on one split: classification and regression with
    scikit-learn; question answering with SQuAD's exact match and F1 (ftkit.tasks)."""
    loss, outputs, encoded = _predict(model, data, split, config)
    return {"loss": loss, **get_task(model.task).metrics(data.splits[split], outputs, encoded)}
