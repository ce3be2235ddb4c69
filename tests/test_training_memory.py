"""What a run holds while it trains: weight snapshots share the weights that did not change, TensorFlow makes
gradient accumulators only for the steps that need them, and the previous model's TensorFlow training state
is freed as soon as another model starts training (without waiting for Python's cyclic garbage collector)."""
import gc
import weakref

import numpy as np
import pytest

import ftkit
from test_session_runs import tabular_digits, tiny_model

FRAMEWORKS = ["torch", "tf"]


def _needs(framework):
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")


def _np(value):
    """A numpy copy of a torch tensor or a numpy array."""
    return np.array(value.numpy() if hasattr(value, "numpy") else value, copy=True)


def _values(snapshot):
    return {k: _np(v) for k, v in snapshot.items()}


def _head_keys(model):
    """The snapshot keys of the head's weights (Keras names layers by creation order, so not by name)."""
    head = model.groups[-1].members
    if model.framework == "torch":
        ids = {id(p) for m in head for p in m.parameters()}
        return [k for k, v in model.native.state_dict(keep_vars=True).items() if id(v) in ids]
    from ftkit.backends.tf.io import named_weights
    ids = {id(v) for m in head for v in m.weights}
    return [k for k, v in named_weights(model.native).items() if id(v) in ids]


def _sgd_trainer(framework, digits, mask):
    """A tiny model's trainer (SGD, lr 0.5) with ``mask``'s groups trainable, and the digits it trains on."""
    _needs(framework)
    model = tiny_model(framework)
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(optimizer="sgd", lr=0.5, batch_size=32,
                                                                 progress=False))
    tr.set_trainable(mask)
    tr.set_lrs([0.5, 0.5])
    return model, tr, tabular_digits(digits)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_snapshot_shares_unchanged_weights_and_copies_changed_ones(framework, digits):
    """head_only trains the head: the new snapshot is the old one's object for every body weight, a fresh
    copy for the head's, and its values are the model's (not the old snapshot's)."""
    model, tr, data = _sgd_trainer(framework, digits, [False, True])
    first = tr.get_weights()
    for batch in tr.batches(data.train, shuffle=True, seed=0):
        tr.train_step(batch)
    second = tr.get_weights(previous=first)
    now = _values(tr.get_weights())
    head = _head_keys(model)
    assert head and len(head) < len(second)
    for k in second:
        if k in head:
            assert second[k] is not first[k] and not np.array_equal(_np(second[k]), _np(first[k])), k
        else:
            assert second[k] is first[k], f"{k} did not change but was copied"
        np.testing.assert_array_equal(_np(second[k]), now[k])
    # the shared arrays are copies the model does not write into: more training leaves both snapshots as they were
    frozen = _values(second)
    tr.set_trainable([True, True])
    for batch in tr.batches(data.train, shuffle=True, seed=1):
        tr.train_step(batch)
    assert all(np.array_equal(_np(second[k]), frozen[k]) for k in second)
    tr.set_weights(second)
    assert all(np.array_equal(v, frozen[k]) for k, v in _values(tr.get_weights()).items())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_new_best_snapshot_overwrites_the_one_held(framework, digits):
    """The training loop holds one snapshot: a new best epoch's weights are copied into the arrays of the one
    it held (no second copy of a 49-million-weight model at an epoch's end)."""
    _, tr, data = _sgd_trainer(framework, digits, [True, True])
    first = tr.get_weights()
    held, initial = dict(first), _values(first)
    for batch in tr.batches(data.train, shuffle=True, seed=0):
        tr.train_step(batch)
    second = tr.get_weights(previous=first, reuse=True)
    now = _values(tr.get_weights())
    assert set(second) == set(held) and any(not np.array_equal(now[k], initial[k]) for k in now)
    assert all(second[k] is held[k] for k in held), "a new array was made instead of reusing the held one"
    for k in second:
        np.testing.assert_array_equal(_np(second[k]), now[k])
    assert tr.weights_finite()


def test_in_a_file_keeps_the_arrays_out_of_the_process_memory():
    """save_memory's snapshots: the copies live in a file's pages (the system writes them out near a limit),
    not in the process's own memory, which a copy in memory grows by its size."""
    from ftkit.machine import in_a_file, memory_used
    arrays = {"w": np.random.default_rng(0).random((4000, 4000), dtype=np.float32),   # 64 MB
              "steps": np.array(7), "empty": np.zeros((0, 3), np.float16)}
    before = memory_used()
    copies = {k: v.copy() for k, v in arrays.items()}
    in_memory = memory_used() - before
    del copies
    before = memory_used()
    filed = in_a_file(arrays)
    assert in_memory > 50e6 and memory_used() - before < 8e6, (in_memory, memory_used() - before)
    for k, a in arrays.items():
        assert filed[k].dtype == a.dtype and filed[k].shape == a.shape and np.array_equal(filed[k], a), k


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_snapshot_in_a_file_is_overwritten_in_place_and_restores_the_weights(framework, digits):
    """The training loop's snapshot after save_memory: the trainer's in_a_file copy holds the same values, a new
    best is written into its (file) arrays, and set_weights restores it exactly."""
    _, tr, data = _sgd_trainer(framework, digits, [True, True])
    filed = tr.in_a_file(tr.get_weights())
    held, initial = dict(filed), _values(filed)
    assert initial.keys() == _values(tr.get_weights()).keys()
    assert all(np.array_equal(v, initial[k]) for k, v in _values(tr.get_weights()).items())
    for batch in tr.batches(data.train, shuffle=True, seed=0):
        tr.train_step(batch)
    best = tr.get_weights(previous=filed, reuse=True)
    trained = _values(tr.get_weights())
    assert all(best[k] is held[k] for k in held) and any(not np.array_equal(trained[k], initial[k]) for k in held)
    for batch in tr.batches(data.train, shuffle=True, seed=1):
        tr.train_step(batch)
    tr.set_weights(best)
    assert all(np.array_equal(v, trained[k]) for k, v in _values(tr.get_weights()).items())


@pytest.mark.parametrize("in_a_file", [False, True])
def test_the_training_loop_keeps_its_snapshot_in_a_file_only_after_save_memory(in_a_file, digits, monkeypatch):
    _needs("torch")
    model = tiny_model("torch")
    calls = []
    original = model.backend.train.Trainer.in_a_file
    monkeypatch.setattr(model.backend.train.Trainer, "in_a_file", lambda tr, s: calls.append(1) or original(tr, s))
    monkeypatch.setattr(ftkit.machine, "SNAPSHOTS_IN_A_FILE", in_a_file)
    ftkit.finetune(model, tabular_digits(digits), ftkit.FineTuneConfig(epochs=1, progress=False))
    assert len(calls) == (1 if in_a_file else 0)


def test_the_torch_optimizer_is_fused_on_a_cpu_too(digits):
    """One kernel for the whole AdamW update, without temporary copies of the weights (foreach makes them)."""
    _needs("torch")
    model = tiny_model("torch")
    tr = model.backend.train.Trainer(model, ftkit.FineTuneConfig(progress=False, device="cpu"))
    assert tr.optimizer.defaults.get("fused") is True and not tr.optimizer.defaults.get("foreach")


def _tf_runtime(model):
    (rt,) = model.runtime.values()
    return rt


def test_tf_plain_runs_make_no_gradient_accumulators(digits):
    """A plain TF step hands its gradients to the optimizer: no float32 copy of the weights is made. Gradient
    accumulation makes one, and train_step(update=False) on a plain run makes one when it is first needed."""
    pytest.importorskip("tensorflow")
    data = tabular_digits(digits)
    model = tiny_model("tf")
    run = ftkit.finetune(model, data, epochs=1, batch_size=32, progress=False)
    assert run.status == "finished" and _tf_runtime(model).accum is None

    model = tiny_model("tf")
    run = ftkit.finetune(model, data, epochs=1, batch_size=16, grad_accum=2, progress=False)
    rt = _tf_runtime(model)
    assert run.status == "finished" and rt.accum is not None
    assert [[tuple(a.shape) for a in accs] for accs in rt.accum] == [[tuple(v.shape) for v in vs] for vs in rt.vars]

    model = tiny_model("tf")
    cfg = ftkit.FineTuneConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, batch_size=32, progress=False)
    tr = model.backend.train.Trainer(model, cfg)
    tr.set_trainable([True, True])
    tr.set_lrs([0.1, 0.1])
    batch = next(tr.batches(data.train, shuffle=True, seed=0))
    tr.train_step(batch)
    assert _tf_runtime(model).accum is None
    before = [v.numpy().copy() for vs in tr._vars for v in vs]
    tr.train_step(batch, update=False)
    assert _tf_runtime(model).accum is not None
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, [v for vs in tr._vars for v in vs]))
    tr.train_step(batch)   # the accumulated gradient and this one: a real update
    assert not all(np.array_equal(b, v.numpy()) for b, v in zip(before, [v for vs in tr._vars for v in vs]))


def test_tf_previous_training_state_is_freed_when_another_model_trains(digits):
    """The optimizer of a model the notebook still holds is released, and gone, once another model trains,
    without the notebook calling the garbage collector."""
    pytest.importorskip("tensorflow")
    data = tabular_digits(digits)
    first = tiny_model("tf")
    ftkit.finetune(first, data, epochs=1, batch_size=32, progress=False)
    (opts,) = _tf_runtime(first).optimizers.values()
    slot = weakref.ref(opts[0].variables[-1])
    del opts
    gc.disable()   # only what the kit itself collects
    try:
        ftkit.finetune(tiny_model("tf"), data, epochs=1, batch_size=32, progress=False)
        assert slot() is None, "the first model's optimizer state outlived the start of the next model's run"
    finally:
        gc.enable()
    assert first.predict(data.val.x[:4]).shape == (4, 10)


GROUP_FEATURES = """
import numpy as np
import ftkit

def anon_gb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) / 1e6

model = ftkit.load_model("mobilenet_v2", framework="tf", num_classes=10, image_size=128, verbose=False)
images = np.random.default_rng(0).integers(0, 256, (128, 28, 28), dtype=np.uint8)
before = anon_gb()
features = ftkit.analysis.group_features(model, images, batch_size=64)
print("GB", round(anon_gb() - before, 3), features["stem"].shape)
"""


def test_tf_group_features_of_large_batches_stay_small():
    """Notebook 03 reads each group's output for 200 images at 128 px: run eagerly, a batch of 64 left the
    TensorFlow process 2.1 GB larger and a 2 GB machine killed it; traced, it grows by about 0.35 GB."""
    pytest.importorskip("tensorflow")
    from conftest import run_python
    r = run_python(GROUP_FEATURES, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    grown = float(r.stdout.split("GB")[-1].split()[0])
    assert grown < 0.8, f"group_features left the process {grown} GB larger"
