"""Fine-tuning strategies: which layer groups train in which epoch.

A strategy is a plan, written once for both frameworks: for every epoch, one
boolean per layer group (input to output, the head last) saying whether that
group trains. Frozen groups keep their weights *and* run in inference mode, so
BatchNorm statistics do not move and dropout is off.
"""
from .errors import ConfigError

STRATEGIES = {
    "full": "train every layer: the most accurate when you have plenty of data",
    "partial": "train only the last k groups: a middle way for medium-sized data",
    "feature_extraction": "freeze the body, compute its features once, train a new head on them: fastest, tiny data",
    "head_only": "freeze the body but run it every step, so augmentation still works; train only the head",
    "progressive": "start with the head, unfreeze one more group every few epochs (ULMFiT's gradual unfreezing)",
}


def trainable_mask(strategy, n_groups, epoch=0, *, trainable_groups=2, unfreeze_every=1):
    """Which of the ``n_groups`` groups train during ``epoch`` (0-based)."""
    if strategy == "full":
        k = n_groups
    elif strategy == "partial":
        k = trainable_groups
    elif strategy in ("feature_extraction", "head_only"):
        k = 1
    elif strategy == "progressive":
        k = 1 + epoch // max(1, unfreeze_every)
    else:
        raise ConfigError(f"strategy={strategy!r} is not valid; choose one of: {', '.join(STRATEGIES)}")
    k = max(1, min(k, n_groups))
    return [i >= n_groups - k for i in range(n_groups)]


def plan(config, n_groups):
    """The mask of every epoch of a run: a list of ``config.epochs`` lists."""
    return [trainable_mask(config.strategy, n_groups, e, trainable_groups=config.trainable_groups,
                           unfreeze_every=config.unfreeze_every) for e in range(config.epochs)]


# examples per class -> suggested strategy: (upper bound, strategy), checked in order
SUGGESTION_RULE = ((25, "feature_extraction"), (200, "partial"), (None, "full"))


def suggest_strategy(examples_per_class, augment=False):
    """A sensible strategy for the data size (the rule is :data:`SUGGESTION_RULE`, stated by :func:`rule_text`).

    Fewer than 25 training examples per class: ``feature_extraction`` (``head_only`` with augmentation,
    which needs the body run every step); fewer than 200: ``partial``; otherwise ``full``.
    """
    for bound, strategy in SUGGESTION_RULE:
        if bound is None or examples_per_class < bound:
            return "head_only" if strategy == "feature_extraction" and augment else strategy


def rule_text():
    """The suggestion rule in words."""
    return ("fewer than 25 examples per class: feature_extraction (head_only with augmentation); "
            "fewer than 200: partial; more: full")
