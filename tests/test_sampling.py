"""Data order and data selection: the balanced sampler, curriculum learning (difficulty scores and
pacing) and pool-based active learning (ftkit.sampling, ftkit.difficulty, ftkit.active_learning)."""
import numpy as np
import pytest

import ftkit
from ftkit import ConfigError, DataError, FineTuneConfig
from ftkit.sampling import epoch_order, pacing

FRAMEWORKS = ["torch", "tf"]


def mlp(framework, hidden=16, num_classes=10):
    """A tiny model on 8x8 grey images: body = flatten (then a ReLU layer of ``hidden`` units when
    ``hidden``), head = one linear layer. With ``hidden=0`` the body's features are the pixels / 255."""
    width = hidden or 64
    if framework == "torch":
        import torch
        from torch import nn
        torch.manual_seed(0)
        body = nn.Sequential(nn.Flatten(), *([nn.Linear(64, hidden), nn.ReLU()] if hidden else []))
        head = nn.Linear(width, num_classes)
        native = nn.Sequential(body, head)
        groups = [("body", [body]), ("head", [head])]
    else:
        import keras
        keras.utils.set_random_seed(0)
        inp = keras.Input((8, 8, 1))
        layers = keras.Sequential([keras.layers.Flatten()]
                                  + ([keras.layers.Dense(hidden, activation="relu")] if hidden else []), name="layers")
        body = keras.Model(inp, layers(inp))
        head = keras.Sequential([keras.layers.Dense(num_classes)], name="head")
        head.build((None, width))
        native = keras.Model(inp, head(body(inp)))
        groups = [("body", [layers]), ("head", [head])]
    return ftkit.wrap_model(native, groups, body=body, head=head, num_classes=num_classes, name="mlp")


def split_of(y):
    return ftkit.Split(np.zeros((len(y), 8, 8), np.uint8), np.asarray(y))


def spy_labels(monkeypatch, model, seen, epoch=None):
    """Record the labels of every batch the trainer trains on (under ``epoch[0]``, when given)."""
    trainer = model.backend.train.Trainer
    original = trainer.train_step

    def train_step(self, batch, update=True):
        seen.setdefault(epoch[0] if epoch else 0, []).append(np.asarray(batch[1]).copy())
        return original(self, batch, update)
    monkeypatch.setattr(trainer, "train_step", train_step)


class EpochMarker(ftkit.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, run, epoch, mask):
        self.epoch[0] = epoch


# -- the balanced sampler --------------------------------------------------------------------------------

def test_balanced_order_draws_every_class_equally_often():
    y = np.array([0] * 400 + [1] * 100 + [2] * 20)   # 20:5:1
    config = FineTuneConfig(sampler="balanced", seed=3)
    orders = [epoch_order(config, split_of(y), e) for e in range(40)]
    assert all(len(o) == len(y) for o in orders)   # an epoch is as long as with "shuffle"
    share = np.bincount(y[np.concatenate(orders)], minlength=3) / (40 * len(y))
    # 20,800 draws: each share is 1/3 with a standard deviation of 0.0033; 0.015 is 4.5 of them
    np.testing.assert_allclose(share, 1 / 3, atol=0.015)
    assert np.array_equal(orders[5], epoch_order(config, split_of(y), 5))              # same seed, same order
    assert not np.array_equal(orders[5], epoch_order(config.replace(seed=4), split_of(y), 5))
    assert not np.array_equal(orders[5], orders[6])                                      # each epoch anew
    assert epoch_order(FineTuneConfig(), split_of(y), 0) is None                         # shuffle: the backend's


def imbalanced(digits):
    """Digits 0 and 1 at 20:1 (100 and 5 training images)."""
    t = digits.train
    idx = np.concatenate([np.flatnonzero(t.y == 0)[:100], np.flatnonzero(t.y == 1)[:5]])
    v = np.flatnonzero(digits.val.y < 2)
    return ftkit.Dataset.from_arrays("imbalanced", (t.x[idx], t.y[idx]), (digits.val.x[v], digits.val.y[v]),
                                     class_names=["0", "1"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_balanced_run_sees_the_minority_class_far_more_often(framework, digits, monkeypatch):
    data = imbalanced(digits)
    counts, steps = {}, {}
    for sampler in ("shuffle", "balanced"):
        seen = {}
        model = mlp(framework, num_classes=2)
        spy_labels(monkeypatch, model, seen)
        run = ftkit.finetune(model, data, epochs=3, batch_size=16, progress=False, sampler=sampler)
        monkeypatch.undo()
        counts[sampler] = np.bincount(np.concatenate(seen[0]), minlength=2)
        steps[sampler] = len(run.history["steps"])
    assert counts["shuffle"].tolist() == [300, 15]                # every example once per epoch
    assert counts["balanced"].sum() == 315 and steps["balanced"] == steps["shuffle"] == 3 * 7
    assert counts["balanced"][1] > 5 * counts["shuffle"][1]       # about 157 of 315 draws
    assert 0.4 < counts["balanced"][1] / 315 < 0.6


def test_balanced_sampler_with_balanced_class_weights_is_refused():
    with pytest.raises(ConfigError, match="sampler='balanced'.*class_weights='balanced'.*choose one"):
        FineTuneConfig(sampler="balanced", class_weights="balanced").validate()
    FineTuneConfig(sampler="balanced", class_weights=[1.0, 2.0]).validate()   # costs on top: allowed


def test_balanced_sampler_on_a_regression_dataset_is_refused():
    x = np.random.default_rng(0).normal(size=(20, 3))
    data = ftkit.Dataset.from_arrays("rows", (x, x[:, 0]), (x, x[:, 0]), task="regression")
    with pytest.raises(ConfigError, match="sampler='balanced'.*regression"):
        ftkit.sampling.check(FineTuneConfig(sampler="balanced"), data)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_batches_follow_the_given_order_and_keep_the_seeded_shuffle_without_one(framework, digits_small):
    model = mlp(framework)
    trainer = model.backend.train.Trainer(model, FineTuneConfig(batch_size=4, progress=False))
    split = digits_small.train
    order = np.array([5, 5, 0, 79, 3, 5])     # repeats allowed
    got = [np.asarray(y) for _, y in trainer.batches(split, order=order)]
    assert [len(b) for b in got] == [4, 2]
    assert np.array_equal(np.concatenate(got), split.y[order])
    # order=None: the shuffle every run used before samplers existed
    shuffled = np.concatenate([np.asarray(y) for _, y in trainer.batches(split, shuffle=True, seed=7)])
    if framework == "torch":
        import torch
        perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(7)).numpy()
    else:
        perm = np.random.default_rng(7).permutation(len(split))
    assert np.array_equal(shuffled, split.y[perm])


# -- curriculum ------------------------------------------------------------------------------------------

def test_curriculum_order_paces_from_the_easiest_fraction_to_all():
    rng = np.random.default_rng(0)
    scores = rng.permutation(100).astype(float)   # example i has rank scores[i]: 0 is the easiest
    split = ftkit.Split(np.zeros((100, 8, 8), np.uint8), np.zeros(100, np.int64), scores)
    config = FineTuneConfig(sampler="curriculum", epochs=5, curriculum_start=0.2)
    assert [pacing(e, 5, 0.2) for e in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    for epoch, fraction in enumerate([0.2, 0.4, 0.6, 0.8, 1.0]):
        order = epoch_order(config, split, epoch)
        assert len(order) == 100                                  # steps per epoch unchanged
        easiest = set(np.flatnonzero(scores < round(fraction * 100)))
        assert set(order.tolist()) == easiest                     # exactly the easiest fraction, all of it
        counts = np.bincount(order, minlength=100)[sorted(easiest)]
        assert counts.min() >= 100 // len(easiest) and counts.max() <= -(-100 // len(easiest))   # cycled evenly
    last = epoch_order(config, split, 4)
    assert sorted(last.tolist()) == list(range(100))             # the last epoch: every example once
    assert np.array_equal(epoch_order(config, split, 2), epoch_order(config, split, 2))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_curriculum_run_starts_with_the_easiest_examples(framework, digits_small, monkeypatch):
    data = digits_small.with_difficulty(digits_small.train.y)   # digit 0 easiest ... 9 hardest (8 each)
    seen, epoch = {}, [0]
    model = mlp(framework)
    spy_labels(monkeypatch, model, seen, epoch)
    run = ftkit.finetune(model, data, epochs=3, batch_size=16, progress=False, sampler="curriculum",
                         curriculum_start=0.3, callbacks=[EpochMarker(epoch)])
    assert len(run.history["steps"]) == 3 * 5
    labels = {e: np.concatenate(b) for e, b in seen.items()}
    assert all(len(v) == 80 for v in labels.values())
    assert set(labels[0].tolist()) == {0, 1, 2}                  # the easiest 30%: 24 of 80
    assert set(labels[1].tolist()) == set(range(7))              # 65%: 52 of 80, digits 0-5 and four 6s
    assert np.bincount(labels[2]).tolist() == [8] * 10           # the last epoch: all, once each


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_curriculum_without_scores_is_refused_before_training(framework, digits_small):
    model, runs = mlp(framework), len(ftkit.session_runs())
    with pytest.raises(DataError, match="sampler='curriculum'.*difficulty.*ftkit.difficulty.*with_difficulty"):
        ftkit.finetune(model, digits_small, sampler="curriculum", progress=False)
    assert len(ftkit.session_runs()) == runs     # refused by the checks: no run was even created


def test_difficulty_scores_travel_with_the_examples_and_are_checked(digits_small):
    scores = np.arange(len(digits_small.train), dtype=float)
    scored = digits_small.with_difficulty(scores)
    assert digits_small.train.difficulty is None                 # a copy: the original is unchanged
    assert np.array_equal(scored.train.difficulty, scores)
    assert scored.train.x is digits_small.train.x                # no copy of the images
    part = scored.train.take([7, 2])
    assert part.difficulty.tolist() == [7.0, 2.0]
    smaller = scored.subset(3)                                   # each score still names its own image
    assert np.array_equal(smaller.train.x, digits_small.train.x[smaller.train.difficulty.astype(int)])
    with pytest.raises(DataError, match=r"difficulty scores have shape \(3,\); give one score per training example"):
        digits_small.with_difficulty([1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"train difficulty\[4\] is nan"):
        digits_small.with_difficulty(np.where(scores == 4, np.nan, scores))


def planted(digits):
    """60 training images per digit, five of them given a wrong label."""
    data = digits.subset(60)
    y = data.train.y.copy()
    flipped = np.arange(0, 600, 120)
    y[flipped] = (y[flipped] + 5) % 10
    return ftkit.Dataset.from_arrays("planted", (data.train.x, y), (data.val.x, data.val.y)), flipped


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_difficulty_is_the_cross_validated_loss_of_a_linear_probe(framework, digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    data, flipped = planted(digits)
    model = mlp(framework, hidden=0)        # its body's features are the pixels / 255
    scores = ftkit.difficulty(model, data)
    # by hand: the same probe on the pixels, each example scored by the folds that did not see it
    x = data.train.x.reshape(len(data.train), -1).astype(np.float32) / np.float32(255)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probs = cross_val_predict(probe, x, data.train.y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")
    # to 1e-3: TensorFlow's x / 255 may differ from NumPy's in the last bit; the solver amplifies it
    np.testing.assert_allclose(scores, -np.log(probs[np.arange(600), data.train.y]), rtol=1e-3, atol=1e-5)
    # the mislabeled examples are the five hardest, far above the typical example
    assert set(np.argsort(-scores)[:5].tolist()) == set(flipped.tolist())
    assert scores[flipped].min() > 50 * np.median(scores)


def test_difficulty_refuses_what_it_cannot_score(digits_small):
    model = mlp("torch", hidden=0)
    with pytest.raises(DataError, match="folds=5 needs at least 2 classes with 5 training examples"):
        ftkit.difficulty(model, digits_small.subset(3))
    with pytest.raises(ConfigError, match="folds=1 must be a whole number >= 2"):
        ftkit.difficulty(model, digits_small, folds=1)
    import torch
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    bodiless = ftkit.wrap_model(net, [("all", [net])], num_classes=10)
    with pytest.raises(ConfigError, match="no separate body"):
        ftkit.difficulty(bodiless, digits_small)


# -- active learning -------------------------------------------------------------------------------------

AL_CONFIG = FineTuneConfig(epochs=2, batch_size=16, lr=1e-2, progress=False)


def models_made(framework, made):
    def make():
        made.append(mlp(framework))
        return made[-1]
    return make


def by_hand(probs, query):
    """Uncertainty written out: the entropy of each row, or minus the gap between its two largest values."""
    if query == "entropy":
        return -(probs * np.log(np.clip(probs, 1e-300, None))).sum(1)
    top = np.sort(probs, 1)
    return top[:, -2] - top[:, -1]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("query", ["entropy", "margin"])
def test_uncertainty_sampling_labels_the_least_sure_pool_examples(framework, query, digits_small):
    made = []
    result = ftkit.active_learning(models_made(framework, made), digits_small, AL_CONFIG, query=query,
                                   initial=10, per_round=10, rounds=3)
    assert result.labels == [10, 20, 30] and len(made) == 3      # a fresh model each round
    assert len(set(result.labelled.tolist())) == 30              # never labelled twice
    assert set(digits_small.train.y[result.labelled[:10]].tolist()) == set(range(10))   # spread over classes
    assert result.history[-1]["chosen"] == []
    for r, record in enumerate(result.history[:-1]):
        before = result.labelled[:record["labels"]]
        assert not set(record["chosen"]) & set(before.tolist())
        assert np.array_equal(result.labelled[record["labels"]:record["labels"] + 10], record["chosen"])
        pool = np.setdiff1d(np.arange(80), before)
        u = by_hand(made[r].predict(digits_small.train.x[pool], batch_size=16), query)
        chosen = np.isin(pool, record["chosen"])
        assert chosen.sum() == 10 and u[chosen].min() >= u[~chosen].max()   # the 10 least sure, exactly
    for r, record in enumerate(result.history):   # each round records its model's test metrics
        assert record["accuracy"] == ftkit.evaluate(made[r], digits_small, config=AL_CONFIG)["accuracy"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_random_queries_follow_the_seed_and_the_loop_stops_when_the_pool_is_empty(framework, digits):
    data = digits.subset(3)     # a pool of 30
    runs = [ftkit.active_learning(lambda: mlp(framework), data, AL_CONFIG, query="random", initial=10, per_round=15,
                                  rounds=rounds, seed=seed) for seed, rounds in ((1, None), (1, 2), (2, 2))]
    a, again, other = runs
    assert a.labels == [10, 25, 30]                               # the last round takes what is left
    assert sorted(a.labelled.tolist()) == list(range(30))         # everything labelled, once
    assert again.labels == [10, 25]
    assert np.array_equal(a.labelled[:25], again.labelled) and not np.array_equal(again.labelled, other.labelled)
    assert len(a.history[1]["chosen"]) == 5 and a.history[2]["chosen"] == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_model_put_back_each_round_is_a_fresh_model(framework, digits_small):
    """Giving the model itself (put back as it was at the start each round) does what a new model per
    round does: the same queries and the same accuracies."""
    made = []
    by_factory = ftkit.active_learning(models_made(framework, made), digits_small, AL_CONFIG, initial=10,
                                       per_round=10, rounds=3)
    model = mlp(framework)
    by_model = ftkit.active_learning(model, digits_small, AL_CONFIG, initial=10, per_round=10, rounds=3)
    assert np.array_equal(by_model.labelled, by_factory.labelled)
    assert by_model.accuracy == by_factory.accuracy
    assert [r["loss"] for r in by_model.history] == pytest.approx([r["loss"] for r in by_factory.history], rel=1e-6)


def test_active_learning_refuses_bad_settings(digits_small):
    make = lambda: mlp("torch")   # noqa: E731
    for kw, words in [(dict(query="confidence"), "query='confidence' is not valid"),
                      (dict(initial=0), "initial=0 must be a whole number >= 1"),
                      (dict(initial=81), "initial=81 is more than the 80 training examples"),
                      (dict(rounds=0), "rounds=0 must be a whole number >= 1, or None")]:
        with pytest.raises(ConfigError, match=words):
            ftkit.active_learning(make, digits_small, AL_CONFIG, **kw)
    with pytest.raises(ConfigError, match="make_model\\(\\) returned str"):
        ftkit.active_learning(lambda: "mobilenet", digits_small, AL_CONFIG)
    with pytest.raises(ConfigError, match="model is a str; give an ftkit model"):
        ftkit.active_learning("mobilenet", digits_small, AL_CONFIG)
    with pytest.raises(ConfigError, match="peft='lora' adds adapters that stay in the model"):
        ftkit.active_learning(mlp("torch"), digits_small, AL_CONFIG.replace(peft="lora"))
