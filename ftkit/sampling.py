"""The order of the training examples in each epoch (``FineTuneConfig.sampler``), and how hard each one is.

* ``"shuffle"`` (default): a new random permutation each epoch; the backend draws it.
* ``"balanced"``: each epoch draws ``len(train)`` indices *with replacement*, every example weighted
  by 1 / (the size of its class), so every class present is drawn equally often in expectation: the
  minority classes are oversampled, the majority undersampled (resampling against class imbalance).
* ``"curriculum"``: easy examples first (Hacohen & Weinshall 2019, "On the power of curriculum learning
  in training deep networks"). Each training example needs a difficulty score (:func:`difficulty`:
  the loss of a linear probe on the pre-trained model's features, then ``data.with_difficulty``).
  Epoch ``e`` of ``E`` draws only from the easiest fraction :func:`pacing` of the examples, from
  ``curriculum_start`` in the first epoch up to all of them in the last.

Every epoch yields ``len(train)`` examples whatever the sampler, so the steps per epoch, and the LR
schedules counted in steps, stay the same. The orders are framework-neutral NumPy arrays, drawn from
``(config.seed, epoch)``; the backend's ``Trainer.batches(split, order=...)`` reads the batches in that order.
"""
import math

import numpy as np

from .errors import ConfigError, DataError, whole_number


def epoch_order(config, split, epoch):
    """The indices of ``split`` to train on in ``epoch`` (0-based), in order, or None for ``"shuffle"``
    (the backend's own seeded permutation, as before samplers existed)."""
    if config.sampler == "shuffle":
        return None
    rng = np.random.default_rng((config.seed, epoch))
    if config.sampler == "balanced":
        return balanced_order(split.y, rng)
    if split.difficulty is None:
        raise DataError(_NO_SCORES)
    return curriculum_order(split.difficulty, pacing(epoch, config.epochs, config.curriculum_start), rng)


def balanced_order(y, rng):
    """``len(y)`` indices drawn with replacement, example i with probability proportional to
    1 / count(y[i]): each class present gets the same share of the draws in expectation."""
    y = np.asarray(y)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return rng.choice(len(y), size=len(y), replace=True, p=weights / weights.sum())


def pacing(epoch, epochs, start):
    """The fraction of the training set, easiest first, in play in ``epoch`` (0-based) of ``epochs``:
    a linear pacing function from ``start`` in the first epoch to 1 in the last."""
    return start + (1 - start) * epoch / max(epochs - 1, 1)


def curriculum_order(scores, fraction, rng):
    """``len(scores)`` indices from the easiest ``fraction`` of the examples (lowest scores; ties by index):
    that subset, shuffled, again and again (a new shuffle each pass) until the epoch is full."""
    n = len(scores)
    k = max(1, math.ceil(fraction * n - 1e-9))   # (the 1e-9: 0.3 * 100 is 30.000000000000004 in floats)
    easiest = np.argsort(np.asarray(scores), kind="stable")[:k]
    passes = math.ceil(n / len(easiest))
    return np.concatenate([rng.permutation(easiest) for _ in range(passes)])[:n]


_NO_SCORES = ("sampler='curriculum' needs a difficulty score per training example, and data.train.difficulty "
              "is None; compute them with scores = ftkit.difficulty(model, data) and train on "
              "data.with_difficulty(scores), or choose sampler='shuffle' or 'balanced'")


def check(config, data):
    """Refuse a sampler the data cannot serve (called by ftkit.training.check, before training)."""
    if config.sampler == "balanced" and data.task != "classification":
        raise ConfigError(f"sampler='balanced' draws every class equally often, which needs one class per example "
                          f"(classification), but dataset {data.name!r} is {data.task}; choose sampler='shuffle' "
                          "or 'curriculum'")
    if config.sampler == "curriculum" and data.task == "qa":
        raise ConfigError(f"sampler='curriculum' orders training examples by difficulty, but dataset {data.name!r} "
                          "is question answering, which trains on windows of the contexts, not on examples; "
                          "choose sampler='shuffle'")
    if config.sampler == "curriculum" and data.train.difficulty is None:
        raise DataError(_NO_SCORES)


def difficulty(model, data, *, folds=5, seed=0):
    """How hard each training example is for the pre-trained ``model``: one score per example of
    ``data.train`` (higher is harder), for ``sampler="curriculum"`` via ``data.with_difficulty(scores)``.

    The score is the cross-entropy loss of a linear probe (scikit-learn's LogisticRegression on
    standardised features) on the model body's features, computed in inference mode as
    ``feature_extraction`` does. The probe is cross-validated (``cross_val_predict`` over ``folds``
    stratified folds, shuffled with ``seed``): each example is scored by a probe that never saw it,
    so a mislabeled or unusual example gets a high loss instead of being memorised.
    Classification only; the model needs a separate body and head (every built-in model has them).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .config import FineTuneConfig
    if data.task != "classification" or model.task != "classification":
        raise ConfigError("difficulty() scores examples by a classifier's loss; it needs a classification "
                          f"model and dataset (model {model.name!r}: {model.task}, dataset {data.name!r}: "
                          f"{data.task}); give your own scores to data.with_difficulty(scores)")
    if model.body is None:
        raise ConfigError(f"difficulty() reads the features of the model's body, and model {model.name!r} has "
                          "no separate body; wrap_model(..., body=..., head=...) or give your own scores to "
                          "data.with_difficulty(scores)")
    whole_number("folds", folds, 2)
    if data.modality != model.modality:
        raise DataError(f"model {model.name!r} takes {model.modality} inputs but dataset {data.name!r} "
                        f"holds {data.modality}")
    y = np.asarray(data.train.y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        raise DataError(f"difficulty() with folds={folds} needs at least 2 classes with {folds} training "
                        f"examples each; dataset {data.name!r} has class counts "
                        f"{dict(zip(classes.tolist(), counts.tolist()))}; lower folds or use more data")
    features = model.backend.train.Trainer(model, FineTuneConfig(progress=False)).body_features(data.train)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probs = cross_val_predict(probe, features, y, method="predict_proba",
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    p_true = probs[np.arange(len(y)), np.searchsorted(classes, y)]   # columns are the sorted classes
    return -np.log(np.clip(p_true, 1e-12, None))
