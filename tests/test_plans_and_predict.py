"""Strategy plans (lp_ft, plan), predictions on raw inputs, the original ImageNet head and the scratch
baseline, in both frameworks."""
import numpy as np
import pytest
import skimage.data

import ftkit
from ftkit import ConfigError

FRAMEWORKS = ["torch", pytest.param("tf", marks=pytest.mark.slow)]


def group_weights(model, name):
    """Copies of every weight of group ``name`` (BatchNorm statistics included)."""
    g = next(g for g in model.groups if g.name == name)
    if model.framework == "torch":
        return [t.detach().clone().numpy() for m in g.members for t in (*m.parameters(), *m.buffers())]
    return [np.array(w.numpy(), copy=True) for m in g.members for w in m.weights]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


class AfterEpoch(ftkit.Callback):
    """Copies the weights of ``groups`` at the end of every epoch."""

    def __init__(self, groups):
        self.groups, self.seen = groups, []

    def on_epoch_end(self, run, record):
        self.seen.append({g: group_weights(run.model, g) for g in self.groups})


def small_model(framework, image_size=32):
    return ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=image_size,
                            verbose=False)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lp_ft_trains_the_head_alone_then_every_group(framework, digits_small):
    model = small_model(framework)
    start = {g: group_weights(model, g) for g in ("stem", "head")}
    seen = AfterEpoch(["stem", "head"])
    run = ftkit.finetune(model, digits_small, strategy="lp_ft", epochs=2, probe_epochs=1, batch_size=16, lr=1e-2,
                         progress=False, callbacks=[seen])
    masks = [e["trainable_mask"] for e in run.history["epochs"]]
    assert masks == [[False] * 4 + [True], [True] * 5]
    assert run.history["epochs"][0]["trainable_params"] < run.history["epochs"][1]["trainable_params"]
    # the probe epoch leaves the body exactly as pre-trained and trains the head; then the body moves
    assert same(seen.seen[0]["stem"], start["stem"]) and not same(seen.seen[0]["head"], start["head"])
    assert not same(seen.seen[1]["stem"], start["stem"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_plan_trains_exactly_the_groups_it_names(framework, digits_small):
    model = small_model(framework)
    start = {g: group_weights(model, g) for g in model.group_names}
    mask = [True, False, False, True, True]   # stem and the top: not contiguous, which no preset does
    run = ftkit.finetune(model, digits_small, strategy="plan", plan=[mask], epochs=1, batch_size=16, lr=1e-2,
                         progress=False)
    assert run.history["epochs"][0]["trainable_mask"] == mask
    for name, trains in zip(model.group_names, mask):
        assert same(group_weights(model, name), start[name]) != trains, name


@pytest.mark.parametrize("bad, words", [
    (dict(strategy="plan", epochs=2), "needs plan="),
    (dict(strategy="plan", epochs=2, plan=[1]), "one entry per epoch"),
    (dict(strategy="plan", epochs=1, plan=[6]), "1..5"),
    (dict(strategy="plan", epochs=1, plan=[[True, False]]), "5 groups"),
    (dict(strategy="plan", epochs=1, plan=[[False] * 5]), "at least one True"),
    (dict(strategy="full", plan=[1, 2, 3]), "only with strategy='plan'"),
    (dict(strategy="lp_ft", epochs=2, probe_epochs=2), "probe_epochs < epochs"),
])
def test_bad_plans_are_refused_before_training(bad, words, digits_small):
    model = small_model("torch")
    runs = len(ftkit.session_runs())
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
        ftkit.finetune(model, digits_small, ftkit.FineTuneConfig(**bad, progress=False))
    assert len(ftkit.session_runs()) == runs   # refused before a run was made


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_predict_on_raw_images_matches_the_dataset_path(framework, digits_small):
    model = small_model(framework)
    ftkit.finetune(model, digits_small, epochs=1, batch_size=16, progress=False)
    from_data = ftkit.predict(model, digits_small)
    x = digits_small.test.x
    raw = model.predict(x)
    assert raw.shape == (len(x), 10) and np.allclose(raw.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(raw, from_data, atol=1e-5)
    np.testing.assert_allclose(model.predict(x.astype(np.float32) / 255), raw, atol=1e-4)   # 0..1 floats
    np.testing.assert_allclose(model.predict(x[0]), raw[:1], atol=1e-5)                     # one image
    photos = model.predict([x[0], np.zeros((40, 30, 3), np.uint8)])                        # any sizes
    assert photos.shape == (2, 10)
    np.testing.assert_allclose(photos[0], raw[0], atol=1e-5)
    # labels come from the dataset the model was fine-tuned on; rows are sorted, most likely first
    assert model.class_names == digits_small.class_names
    top = model.top_k(x[:3], k=4)
    assert len(top) == 3 and all(len(r) == 4 for r in top)
    for row, p in zip(top, raw[:3]):
        assert row[0] == (digits_small.class_names[int(p.argmax())], pytest.approx(float(p.max()), abs=1e-5))
        assert [q for _, q in row] == sorted((q for _, q in row), reverse=True)


def test_predict_refuses_bad_inputs_with_the_field_named():
    model = small_model("torch")
    with pytest.raises(ftkit.DataError, match="inputs"):
        model.predict(np.full((2, 16, 16), np.nan, np.float32))
    with pytest.raises(ConfigError, match="head="):
        model.predict(np.zeros((1, 16, 16), np.uint8), head="imagenet")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_original_imagenet_head_is_kept_untrained_beside_the_new_one(framework, digits_small):
    model = small_model(framework, image_size=128)
    assert model.has_original_head
    coffee = skimage.data.coffee()
    before = model.top_k(coffee, k=5, head="original")[0]
    assert before[0][0] == "espresso" and before[0][1] > 0.9
    head_before = [w.copy() for w in _original_head_weights(model)]
    ftkit.finetune(model, digits_small.subset(3), epochs=1, batch_size=8, lr=1e-2, progress=False)
    assert same(_original_head_weights(model), head_before)          # the ImageNet classifier never trains
    after = model.predict(coffee, head="original")[0]
    assert after.shape == (1000,) and not np.allclose(after[967], before[0][1], atol=1e-3)  # the body moved
    # without a new head there is no second one to keep
    imagenet = ftkit.load_model("mobilenet_v2", framework=framework, image_size=128, verbose=False)
    assert not imagenet.has_original_head and imagenet.top_k(coffee, 1)[0][0][0] == "espresso"
    with pytest.raises(ConfigError, match="no original head"):
        imagenet.predict(coffee, head="original")


def _original_head_weights(model):
    if model.framework == "torch":
        return [p.detach().clone().numpy() for p in model.original_head.parameters()]
    return [np.array(w.numpy(), copy=True) for w in model.original_head.weights]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_scratch_is_the_same_architecture_with_random_weights(framework):
    pre = small_model(framework)
    scratch = ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32,
                               pretrained=False, verbose=False)
    assert scratch.group_names == pre.group_names and scratch.param_counts() == pre.param_counts()
    assert "random" in scratch.source and not scratch.has_original_head
    for name in pre.group_names[:-1]:
        a, b = group_weights(pre, name), group_weights(scratch, name)
        assert [x.shape for x in a] == [x.shape for x in b]
        assert not same(a, b), name


def test_predict_on_raw_texts():
    model = ftkit.load_model("minilm", framework="torch", num_classes=2, max_length=16, verbose=False)
    out = model.predict(["a warm, funny film", "dull and far too long", "fine"])
    assert out.shape == (3, 2) and np.allclose(out.sum(1), 1, atol=1e-5)
    assert model.top_k(["fine"], k=2)[0][0][0] in ("class 0", "class 1")   # no names before a run
