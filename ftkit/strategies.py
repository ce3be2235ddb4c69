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
    "lp_ft": "linear probe, then fine-tune: the head alone for probe_epochs, then every group (Kumar et al. 2022)",
    "plan": "your own plan: config.plan says, for each epoch, which groups train",
}


def trainable_counts(config, n_groups, new=1):
    """How many of the last groups train in each epoch, for the strategies that train the last k groups.

    ``new`` is how many of the last groups are new (no pre-trained weights: the head, and a detector's
    feature pyramid too); they always train, and "the head" below means all of them.
    ``progressive`` and ``lp_ft`` are presets of a plan: progressive adds one group every
    ``unfreeze_every`` epochs; lp_ft trains the head for ``probe_epochs``, then every group.
    """
    counts = []
    for epoch in range(config.epochs):
        if config.strategy == "full":
            k = n_groups
        elif config.strategy == "partial":
            k = config.trainable_groups
        elif config.strategy in ("feature_extraction", "head_only"):
            k = new
        elif config.strategy == "progressive":
            k = new + epoch // max(1, config.unfreeze_every)
        elif config.strategy == "lp_ft":
            k = new if epoch < config.probe_epochs else n_groups
        else:
            raise ConfigError(f"strategy={config.strategy!r} has no trainable counts; choose one of: "
                              f"{', '.join(s for s in STRATEGIES if s != 'plan')}")
        counts.append(max(new, 1, min(k, n_groups)))
    return counts


def last_k(k, n_groups):
    """The mask that trains the last ``k`` of ``n_groups`` groups."""
    return [i >= n_groups - k for i in range(n_groups)]


def plan(config, n_groups, new=1):
    """The mask of every epoch of a run: a list of ``config.epochs`` lists of ``n_groups`` booleans
    (input to output, the head last; the last ``new`` groups are new and always train, see
    :func:`trainable_counts`). ``strategy="plan"`` takes them from ``config.plan`` as given, where each
    entry is a number k (the last k groups train) or a list of booleans."""
    if config.strategy == "plan":
        return [last_k(e, n_groups) if isinstance(e, int) else [bool(v) for v in e] for e in config.plan]
    return [last_k(k, n_groups) for k in trainable_counts(config, n_groups, new)]


def check_plan(value, epochs, n_groups=None):
    """Refuse a ``config.plan`` that is not one entry per epoch, each a group count or a mask."""
    if not isinstance(value, (list, tuple)) or len(value) != epochs:
        raise ConfigError(f"plan={value!r} must be a list with one entry per epoch (epochs={epochs}); each "
                          "entry is how many of the last groups train (e.g. [1, 1, 5]) or a list of booleans")
    for e, entry in enumerate(value):
        if isinstance(entry, bool) or not isinstance(entry, (int, list, tuple)):
            raise ConfigError(f"plan[{e}]={entry!r} must be a number of groups or a list of booleans")
        if isinstance(entry, int):
            top = n_groups if n_groups is not None else entry
            if not 1 <= entry <= top:
                raise ConfigError(f"plan[{e}]={entry!r} must be a number of groups in 1..{top}")
            continue
        if not all(isinstance(v, bool) for v in entry) or not any(entry):
            raise ConfigError(f"plan[{e}]={list(entry)!r} must be a list of True/False with at least one True")
        if n_groups is not None and len(entry) != n_groups:
            raise ConfigError(f"plan[{e}] has {len(entry)} values; the model has {n_groups} groups")


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
