"""Core correctness in both frameworks: dropout from the config, which weights a run keeps, run folders,
lr_find leaving no trace, seeds, and TensorFlow reusing its traced steps."""
import json
import logging
import os
import random

import numpy as np
import pytest

import ftkit
from _helpers import scale_head
from ftkit import ConfigError, RunFolderError

FRAMEWORKS = ["torch", "tf"]


def mobilenet(framework, **kw):
    return ftkit.load_model("mobilenet_v2", framework=framework, num_classes=10, image_size=32, verbose=False, **kw)


def weights(model):
    """Every weight and buffer (BatchNorm statistics included) as NumPy arrays, keyed by name."""
    if model.framework == "torch":
        return {k: v.detach().cpu().numpy().copy() for k, v in model.native.state_dict().items()}
    from ftkit.backends.tf.io import named_weights
    return {k: v.numpy().copy() for k, v in named_weights(model.native).items()}


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def losses(run):
    return [s["loss"] for s in run.history["steps"]]


# -- 1. dropout comes from the config ---------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_config_dropout_sets_the_head_and_changes_the_run(framework, digits_small, tmp_path):
    runs = {}
    for rate in (0.0, 0.9):
        model = mobilenet(framework)   # load_model's default head dropout is 0.2
        run = ftkit.finetune(model, digits_small, strategy="head_only", dropout=rate, epochs=1, batch_size=16,
                             progress=False)
        assert model.dropout == pytest.approx(rate) and run.dropout == pytest.approx(rate)
        runs[rate] = run
    assert losses(runs[0.0]) != losses(runs[0.9])   # the same seed: only the dropout rate differs
    path = runs[0.9].save(str(tmp_path / "run"))
    assert json.load(open(os.path.join(path, "run.json")))["head_dropout"] == pytest.approx(0.9)
    assert ftkit.load_run(path).model.dropout == pytest.approx(0.9)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dropout_none_keeps_the_models_rate(framework, digits_small):
    model = mobilenet(framework, dropout=0.35)
    run = ftkit.finetune(model, digits_small, epochs=1, max_steps_per_epoch=1, progress=False)
    assert run.config.dropout is None and model.dropout == pytest.approx(0.35) == run.dropout


def test_dropout_on_a_head_without_dropout_is_refused(digits_small):
    from torch import nn
    body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(4, 10)
    model = ftkit.wrap_model(nn.Sequential(body, head), [("body", [body]), ("head", [head])], num_classes=10)
    with pytest.raises(ConfigError, match="no dropout layer in its head"):
        ftkit.finetune(model, digits_small, dropout=0.5, progress=False)


# -- 2, 3. a diverged run keeps its best weights ----------------------------------------------------------

class _Events(ftkit.Callback):
    """Snapshots the weights after each epoch; at the start of the epochs in ``blowups`` multiplies the head."""

    def __init__(self, blowups):
        self.blowups, self.snaps = blowups, []

    def on_epoch_begin(self, run, epoch, mask):
        if epoch in self.blowups:
            scale_head(run.model, self.blowups[epoch])

    def on_epoch_end(self, run, record):
        self.snaps.append(weights(run.model))


@pytest.mark.parametrize("in_a_file", [False, True], ids=["snapshot in memory", "snapshot in a file"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_divergence_after_a_good_epoch_keeps_the_best_weights(framework, in_a_file, digits_small, monkeypatch):
    # epoch 2 is made terrible but finite (val loss explodes), epoch 3 non-finite: the run diverges in epoch 3.
    # It must end with epoch 1's weights (the best val loss), not epoch 2's "last finite" ones; also when
    # save_memory keeps the snapshot in a file.
    monkeypatch.setattr(ftkit.machine, "SNAPSHOTS_IN_A_FILE", in_a_file)
    model = mobilenet(framework)
    events = _Events({1: 1e3, 2: 1e38})
    run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=3, early_stopping=5, lr=1e-3,
                         batch_size=16, progress=False, callbacks=[events])
    assert run.status == "diverged" and run.kept == "best (epoch 1)" and "kept the best (epoch 1)" in run.message
    e1, e2 = run.history["epochs"]
    assert e2["val_loss"] > 10 * e1["val_loss"]
    assert same(weights(model), events.snaps[0])
    assert ftkit.evaluate(model, digits_small, "val")["loss"] == pytest.approx(e1["val_loss"], rel=1e-4)


@pytest.mark.parametrize("in_a_file", [False, True], ids=["snapshot in memory", "snapshot in a file"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_divergence_in_the_first_epoch_keeps_the_initial_weights(framework, in_a_file, digits_small, monkeypatch):
    monkeypatch.setattr(ftkit.machine, "SNAPSHOTS_IN_A_FILE", in_a_file)
    model = mobilenet(framework)
    ftkit.finetune(model, digits_small, strategy="head_only", epochs=1, max_steps_per_epoch=1, progress=False)
    before = weights(model)
    run = ftkit.finetune(model, digits_small, optimizer="sgd", lr=1e8, epochs=3, progress=False)
    assert run.status == "diverged" and run.kept == "initial" and not run.history["epochs"]
    assert same(weights(model), before)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_loss_spike_guard_stops_before_the_weights_explode(framework, digits_small):
    class Spike(ftkit.Callback):
        def on_step_end(self, run, record):
            if record["step"] == 12:
                scale_head(run.model, 1e3)

    model = mobilenet(framework)
    run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=4, batch_size=8, loss_spike=20.0,
                         progress=False, callbacks=[Spike()])
    assert run.status == "diverged" and "loss_spike=20.0" in run.message
    assert run.kept.startswith("best (epoch") and len(run.history["steps"]) == 13
    # without the guard the same run goes on
    model = mobilenet(framework)
    run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=4, batch_size=8, progress=False,
                         callbacks=[Spike()])
    assert len(run.history["steps"]) > 13


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_early_stopping_and_stop_record_which_weights_they_kept(framework, digits_small):
    class StopAt(ftkit.Callback):
        def on_step_end(self, run, record):
            if record["step"] == 6:
                run.request_stop()

    model = mobilenet(framework)
    run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=3, batch_size=16, progress=False,
                         callbacks=[StopAt()])
    assert run.status == "stopped" and run.kept == "last"
    assert run.history["epochs"][-1]["steps"] == 2 and "after 2 of 5 steps" in run.message
    run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=2, progress=False)
    assert run.status == "finished" and run.kept == "last"


# -- 5. run folders ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory, digits_small):
    out = {}
    for fw in FRAMEWORKS:
        model = mobilenet(fw)
        run = ftkit.finetune(model, digits_small, strategy="head_only", epochs=1, progress=False)
        out[fw] = run.save(str(tmp_path_factory.mktemp(fw) / "run"))
    return out


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("file, content, words", [
    ("config.json", b"\x89PNG\r\n\x1a\n\xff\xfe binary", ["config.json", "not a text file"]),
    ("config.json", b"{\"lr\": 1e-3,", ["config.json", "not valid JSON"]),
    ("config.json", b"[1, 2]", ["config.json", "expected a JSON object"]),
    ("config.json", b"{\"learning_rate\": 0.1}", ["config.json", "unknown config field"]),
    ("config.json", b"{\"lr\": -1}", ["config.json", "lr=-1"]),
    ("run.json", b"\x00\x01\x02", ["run.json", "not valid JSON"]),
    ("weights.safetensors", b"\xff" * 64, ["weights.safetensors", "not a readable safetensors file"]),
    ("weights.safetensors", b"", ["weights.safetensors", "not a readable safetensors file"]),
])
def test_corrupt_run_files_are_named(saved_runs, tmp_path, framework, file, content, words):
    path = _copy(saved_runs[framework], str(tmp_path / "run"))
    with open(os.path.join(path, file), "wb") as f:
        f.write(content)
    with pytest.raises(RunFolderError) as e:
        ftkit.load_run(path)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_run_format_versions_and_foreign_weights(saved_runs, tmp_path, framework):
    path = _copy(saved_runs[framework], str(tmp_path / "run"))
    meta_file = os.path.join(path, "run.json")
    meta = json.load(open(meta_file))
    assert meta["format_version"] == 1
    for version, words in ((99, "newer ftkit"), (None, "older ftkit"), (0, "older than")):
        json.dump({**meta, "format_version": version}, open(meta_file, "w"))
        with pytest.raises(RunFolderError, match=words):
            ftkit.load_run(path)
    json.dump(meta, open(meta_file, "w"))
    # weights of the other framework's model: readable safetensors, wrong keys
    other = saved_runs["tf" if framework == "torch" else "torch"]
    import shutil
    shutil.copy(os.path.join(other, "weights.safetensors"), os.path.join(path, "weights.safetensors"))
    with pytest.raises(RunFolderError, match="weights.safetensors: does not match model"):
        ftkit.load_run(path)


# -- 6. lr_find leaves no trace ----------------------------------------------------------------------------

def _global_random_state(framework):
    import torch
    state = {"python": random.getstate(), "numpy": np.random.get_state()[1].copy(), "torch": torch.get_rng_state()}
    if framework == "tf":
        import tensorflow as tf
        state["tf"] = tf.random.get_global_generator().state.numpy().copy()
    return state


def _same_random_state(a, b):
    import torch
    return (a["python"] == b["python"] and np.array_equal(a["numpy"], b["numpy"])
            and torch.equal(a["torch"], b["torch"]) and np.array_equal(a.get("tf", 0), b.get("tf", 0)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_lr_find_leaves_no_trace(framework, digits_small):
    model = mobilenet(framework)
    model.freeze()
    mask, before, rng = model.trainable_mask(), weights(model), _global_random_state(framework)
    result = ftkit.lr_find(model, digits_small, num_steps=8)
    assert len(result.lrs) == 8
    assert model.trainable_mask() == mask == [False] * 4 + [True]
    assert same(weights(model), before)   # BatchNorm statistics included
    assert _same_random_state(rng, _global_random_state(framework))
    # and the run that follows is exactly the run without lr_find (optimizer, seeds, head all untouched)
    after = ftkit.finetune(model, digits_small, strategy="partial", epochs=1, batch_size=16, progress=False)
    fresh = mobilenet(framework)
    fresh.freeze()
    plain = ftkit.finetune(fresh, digits_small, strategy="partial", epochs=1, batch_size=16, progress=False)
    assert losses(after) == losses(plain)


# -- 7. TensorFlow feature extraction warns nothing --------------------------------------------------------

def test_tf_feature_extraction_logs_no_warning(digits_small):
    import tensorflow as tf
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf.get_logger().addHandler(handler)
    try:
        run = ftkit.finetune(mobilenet("tf"), digits_small, strategy="feature_extraction", epochs=1, progress=False)
    finally:
        tf.get_logger().removeHandler(handler)
    assert run.status == "finished"
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


# -- 8. the same seed gives the same run -------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_seed_same_run_bitwise(framework, digits_small):
    """New head, dropout, shuffling and augmentation all draw from the run's seed; the global state is kept."""
    def one(seed):
        model = mobilenet(framework, dropout=0.5)
        rng = _global_random_state(framework)
        run = ftkit.finetune(model, digits_small, strategy="partial", augment=True, epochs=2, batch_size=16,
                             seed=seed, progress=False)
        assert _same_random_state(rng, _global_random_state(framework))
        return losses(run), weights(model)

    (a, wa), (b, wb), (c, _) = one(0), one(0), one(1)
    assert a == b and same(wa, wb)
    assert a != c


# -- 9. TensorFlow traces a step once per structure --------------------------------------------------------

def test_tf_repeated_finetune_does_not_trace_again(digits_small):
    from ftkit.backends.tf.train import trace_count
    model = mobilenet("tf")
    first = ftkit.finetune(model, digits_small, epochs=1, progress=False)
    traced = trace_count(model)
    assert traced >= 1 and any("tracing" in n for n in first.notes)
    second = ftkit.finetune(model, digits_small, epochs=2, lr=3e-4, schedule="cosine", progress=False)
    ftkit.evaluate(model, digits_small)
    assert trace_count(model) == traced and not second.notes
    # a progressive run traces one step per new set of trainable groups, then never again
    ftkit.finetune(model, digits_small, strategy="progressive", epochs=3, progress=False)
    progressive = trace_count(model)
    assert progressive == traced + 3
    again = ftkit.finetune(model, digits_small, strategy="progressive", epochs=3, progress=False)
    assert trace_count(model) == progressive and not again.notes
    # what the trace bakes in (here label smoothing) traces anew
    ftkit.finetune(model, digits_small, epochs=1, label_smoothing=0.1, progress=False)
    assert trace_count(model) > progressive


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_full_run_after_a_partial_run_trains_the_groups_that_were_frozen(framework, digits_small):
    """TF once collected each group's variables when its trainer was built, so groups frozen then never trained."""
    model = mobilenet(framework)
    ftkit.finetune(model, digits_small, strategy="partial", trainable_groups=1, epochs=1, progress=False)
    stem = weights(model)
    ftkit.finetune(model, digits_small, strategy="full", epochs=1, progress=False)
    after = weights(model)
    stem_keys = [k for k in stem if k.startswith(("Conv1", "body.0.0."))]   # the stem: Keras and torch names
    assert stem_keys and any(not np.array_equal(stem[k], after[k]) for k in stem_keys)
