"""Tasks: what a model learns to do, written once for both frameworks (the *task seam*).

A task says four things; the training loop (ftkit.training), the strategies, the LR tools and the
widgets never ask which task they run:

``encode(model, split) -> Encoded``
    How batches are made: a split's examples as NumPy rows, ``inputs`` (an image array, or a dict of
    token arrays named as transformers names them) and ``targets`` (an array, one row per input row),
    plus ``meta`` for ``outputs``. A row is what the model sees once; it need not be an example (QA
    splits a long context into several windows, each a row).
``loss``
    The name of the per-row loss, over the model's output (its logits): ``"cross_entropy"`` (over the
    last axis; targets index it, ``IGNORE`` marks positions without a target; a row's loss is the mean
    over its targets) or ``"mse"`` (squared error of the one output). Each backend computes these in
    its framework (``train.per_row_loss``). ``"native"``: the model computes its own loss, as detectors
    do: the backend calls it with a prepared batch and its targets and gets ``(loss, outputs)``
    (ftkit.tasks.detection).
``outputs(logits, encoded, split)``
    Predictions, in NumPy, one per example of the split: class probabilities, regression values,
    answer strings.
``metrics(split, outputs, encoded)``
    The task's metrics, a dict of numbers (``evaluate``, and ``val_<name>`` in a run's history);
    ``encoded`` is the split's rows (seq2seq reads its tokenizer there).

The model side is the backend's: ``load_model(name, task=...)`` builds a network whose output is what the
task's loss takes (logits (N, classes); (N, 1); span logits (N, 2, tokens) for QA; for detection a
detector returning its loss and its boxes (N, boxes, 6); for seq2seq an encoder-decoder returning its
loss and, in inference mode, the token ids it generated (N, max_length); for captioning the same with an
image encoder). ``check_split``, ``check`` and
``check_config`` refuse bad targets, a mismatched model and dataset, or a setting the task cannot use,
before training.
A new task subclasses :class:`Task`, registers in ``TASKS`` and gets a builder per backend; the loop
stays as it is.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import choose

IGNORE = -100   # a target position without a target (the loss skips it), as torch's ignore_index


@dataclass
class Encoded:
    """A split as rows the model takes: ``inputs``, ``targets`` (one per row) and ``meta`` (what turns
    the rows' outputs back into one prediction per example)."""
    inputs: object
    targets: np.ndarray
    meta: object = None

    def __len__(self):
        return len(self.targets)


class Task:
    """The seam's interface; see the module docstring."""
    name = None
    loss = "cross_entropy"
    counts_correct = False      # True: a run reports its training accuracy (argmax of the logits = target)
    monitors = ()               # validation metrics a run may monitor, besides val_loss
    per_class = False           # True: Dataset.subset draws n examples per class
    checks_examples = False     # True: inputs are not plain images, rows or texts; check_split checks them all

    def check_split(self, dataset, which, split, num_classes):
        """Refuse split ``which`` of ``dataset`` (its name) when this task cannot learn from its targets
        (a DataError naming the dataset, the split and the example)."""
        raise NotImplementedError

    def check(self, model, data):
        """Refuse a model/dataset pair that does not fit (before training)."""

    def check_config(self, config):
        """Refuse a FineTuneConfig setting this task cannot honour (before training)."""

    def refuse(self, config, reasons):
        """Refuse each ``{field: why}`` setting of ``config`` that is on (a ConfigError naming the field, its
        value and the task); ``check_config`` of a task that cannot use some settings calls this."""
        from ..errors import ConfigError
        for field, why in reasons.items():
            value = getattr(config, field)
            if value:
                raise ConfigError(f"{field}={value!r}: for task {self.name!r} it {why}; leave it off")

    def encode(self, model, split):
        raise NotImplementedError

    def outputs(self, logits, encoded, split):
        raise NotImplementedError

    def metrics(self, split, outputs, encoded=None):
        raise NotImplementedError


def get(name):
    """The task called ``name`` (one of ``NAMES``); tasks hold no state, so one of each serves."""
    tasks = _tasks()
    choose("task", name, list(tasks))
    return tasks[name]


@lru_cache(maxsize=1)
def _tasks():
    from .classification import Classification, Regression
    from .detection import Detection
    from .qa import QuestionAnswering
    from .captioning import Captioning
    from .seq2seq import SequenceToSequence
    return {"classification": Classification(), "regression": Regression(), "qa": QuestionAnswering(),
            "detection": Detection(), "seq2seq": SequenceToSequence(), "captioning": Captioning()}


NAMES = ("classification", "regression", "qa", "detection", "seq2seq", "captioning")
GENERATES = ("seq2seq", "captioning")   # tasks whose model writes text (ftkit.generate)
