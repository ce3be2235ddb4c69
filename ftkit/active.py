"""Pool-based active learning: label the examples the model is least sure about, then train again.

    model = ftkit.load_model("mobilenet_v2", num_classes=10, verbose=False)
    result = ftkit.active_learning(model, data, ftkit.FineTuneConfig(strategy="feature_extraction", epochs=5),
                                   query="entropy", initial=20, per_round=20, rounds=6)
    plt.plot(result.labels, result.accuracy)     # test accuracy against the number of labels

The training split plays the pool: its labels are hidden until an example is queried. Round 0
trains on ``initial`` labelled examples; each round fine-tunes a *fresh* model (the given model put
back as it was when the loop started, or a new one from ``make_model()``) on the labelled set
(through :func:`ftkit.finetune`, the one training loop), evaluates it, predicts
the rest of the pool and labels the ``per_round`` examples it is least sure about (Settles 2009,
"Active learning literature survey"): the highest entropy of the predicted class distribution, the
smallest margin between the two most likely classes, or (the baseline) a random choice.
"""
from dataclasses import dataclass, field

import numpy as np

from .config import FineTuneConfig
from .data import Dataset
from .errors import ConfigError, DataError, choose, whole_number
from .models import FTModel

QUERIES = ("entropy", "margin", "random")


@dataclass
class ActiveLearningResult:
    """What an active-learning loop did, round by round.

    ``history``: one dict per round: ``round``, ``labels`` (how many labelled examples trained that
    round's model), the metrics of :func:`ftkit.evaluate` on ``split`` (``accuracy``, ``f1_macro``, ...),
    ``run`` (the run's name), ``status`` and ``chosen`` (the training indices that round's model
    queried, labelled for the next round; empty in the last round). ``labelled``: every labelled index,
    in the order they were labelled.
    """
    query: str
    history: list = field(default_factory=list)
    labelled: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def labels(self):
        """The number of labels of each round (the x axis of a learning curve)."""
        return [r["labels"] for r in self.history]

    @property
    def accuracy(self):
        """The test accuracy of each round."""
        return [r["accuracy"] for r in self.history]

    def __repr__(self):
        last = self.history[-1] if self.history else {}
        return (f"ActiveLearningResult(query={self.query!r}, rounds={len(self.history)}, "
                f"labels={last.get('labels')}, accuracy={last.get('accuracy')})")


def uncertainty(probs, query):
    """How unsure each prediction is, higher is less sure: the entropy of each row of ``probs``
    (scipy.stats.entropy, in nats), or for ``"margin"`` minus the gap between its two largest probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    if query == "entropy":
        from scipy.stats import entropy
        return entropy(probs, axis=1)
    top2 = np.sort(probs, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def active_learning(model, data, config=None, *, query="entropy", initial=20, per_round=20, rounds=5,
                    seed=0, split="test", callbacks=()):
    """Pool-based active learning over ``data.train``; returns an :class:`ActiveLearningResult`.

    Each round trains a fresh model, so the rounds differ only in their labelled data. ``model`` is
    an :class:`FTModel`, which every round starts from as it is now (its weights, BatchNorm statistics,
    freeze state, dropout and, for a new head, the head's initialisation from the run's seed), or a
    function that returns a new model (``make_model``, e.g. ``lambda: ftkit.load_model(...)``). A model
    is faster in TensorFlow (its traced steps are reused); ``peft="lora"`` adds adapters that stay in a
    model, so it needs ``make_model``. At the end a given model holds the last round's weights.

    ``config`` is the FineTuneConfig of every round's :func:`ftkit.finetune`
    (``strategy="feature_extraction"`` keeps a round cheap on a CPU). ``initial`` examples are labelled
    first, spread over the classes (one of each class in turn, drawn with ``seed``); each round labels
    ``per_round`` more, chosen by ``query`` ("entropy", "margin" or "random", the last drawn with
    ``seed``). ``rounds`` is the number of models trained (None: until the pool is empty); the loop also
    stops when the pool is empty. No example is labelled twice. ``split`` is the split each round's
    model is evaluated on; ``callbacks`` go to every run.
    """
    from .training import evaluate, finetune, predict
    config = config or FineTuneConfig()
    if not isinstance(config, FineTuneConfig):
        raise ConfigError("config must be a ftkit.FineTuneConfig")
    config.validate()
    if not isinstance(data, Dataset):
        raise DataError("data must be a ftkit Dataset (ftkit.load_dataset or Dataset.from_arrays)")
    if data.task != "classification":
        raise ConfigError(f"active_learning queries by the uncertainty of class probabilities; dataset "
                          f"{data.name!r} is {data.task}")
    choose("query", query, QUERIES)
    choose("split", split, list(data.splits))
    n = len(data.train)
    whole_number("initial", initial, 1)
    whole_number("per_round", per_round, 1)
    if rounds is not None:
        whole_number("rounds", rounds, 1, ", or None (until the pool is empty)")
    whole_number("seed", seed, 0)
    if initial > n:
        raise ConfigError(f"initial={initial} is more than the {n} training examples of dataset {data.name!r}")

    fresh_model = _Fresh(model, config)
    rng = np.random.default_rng(seed)
    labelled = _spread_over_classes(data.train.y, rng)[:initial]
    result = ActiveLearningResult(query)
    r = 0
    while True:
        model = fresh_model()
        run = finetune(model, data._with_splits(train=data.train.take(labelled)), config, callbacks=callbacks,
                       name=f"al-{query}-round{r}")
        record = {"round": r, "labels": len(labelled), **evaluate(model, data, split, config),
                  "run": run.name, "status": run.status}
        pool = np.setdiff1d(np.arange(n), labelled)   # sorted: the unlabelled training indices
        last = pool.size == 0 or (rounds is not None and r + 1 >= rounds)
        chosen = np.zeros(0, np.int64)
        if not last:
            k = min(per_round, pool.size)
            if query == "random":
                chosen = rng.choice(pool, size=k, replace=False)
            else:
                probs = predict(model, data._with_splits(train=data.train.take(pool)), "train", config)
                chosen = pool[np.argsort(-uncertainty(probs, query), kind="stable")[:k]]
        record["chosen"] = chosen.tolist()
        result.history.append(record)
        if last:
            break
        labelled = np.concatenate([labelled, chosen])
        r += 1
    result.labelled = labelled
    return result


class _Fresh:
    """Each round's model: ``make_model()``, or the given model put back as it was at the start."""

    def __init__(self, model, config):
        self.make = self.model = None
        if isinstance(model, FTModel):
            if config.peft == "lora":
                raise ConfigError("peft='lora' adds adapters that stay in the model, so each round needs a new "
                                  "model: give a function that returns one, e.g. lambda: ftkit.load_model(...)")
            self.model, self.trainer = model, model.backend.train.Trainer(model, FineTuneConfig(progress=False))
            self.weights, self.fresh_head = self.trainer.get_weights(), model.fresh_head
            self.mask, self.dropout = model.trainable_mask(), model.dropout
        elif callable(model):
            self.make = model
        else:
            raise ConfigError(f"model is a {type(model).__name__}; give an ftkit model (ftkit.load_model or "
                              "ftkit.wrap_model) or a function that returns a new one")

    def __call__(self):
        if self.make is not None:
            model = self.make()
            if not isinstance(model, FTModel):
                raise ConfigError(f"make_model() returned {type(model).__name__}; it must return a new ftkit "
                                  "model (ftkit.load_model or ftkit.wrap_model)")
            return model
        model = self.model
        self.trainer.set_weights(self.weights)
        model.fresh_head = self.fresh_head      # a new head is drawn again from the run's seed
        model.set_trainable(self.mask)
        if self.dropout is not None:
            model.set_dropout(self.dropout)
        return model


def _spread_over_classes(y, rng):
    """All indices of ``y`` in an order that takes one example of each class in turn (each class's
    examples shuffled): its first k hold every class as evenly as k allows."""
    perm = rng.permutation(len(y))
    rank = np.empty(len(y), np.int64)   # the position of each example among its class's, in perm order
    labels = np.asarray(y)[perm]
    for c in np.unique(labels):
        members = labels == c
        rank[members] = np.arange(members.sum())
    return perm[np.argsort(rank, kind="stable")]
