"""The session's run list (ftkit.session_runs, the RunBoard's rows) must not keep every trained model alive:
a notebook that trains one fresh model after another would hold all of them until the kernel stops."""
import gc
import weakref

import numpy as np
import pytest

import ftkit


def tiny_model(framework):
    if framework == "torch":
        from torch import nn
        body, head = nn.Linear(64, 32), nn.Linear(32, 10)
        net = nn.Sequential(body, nn.ReLU(), head)
    else:
        from ftkit import _frameworks
        _frameworks.tensorflow()
        import keras
        body, head = keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)
        inp = keras.Input((64,))
        net = keras.Model(inp, head(body(inp)))
    return ftkit.wrap_model(net, [("body", [body]), ("head", [head])], num_classes=10,
                            input_spec={"modality": "tabular"})


def tabular_digits(digits):
    x, y = digits.train.x.reshape(len(digits.train.x), -1) / 255.0, digits.train.y
    return ftkit.Dataset.from_arrays("digits-flat", (x[:200], y[:200]), (x[200:260], y[200:260]))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_a_run_nobody_holds_frees_its_model_and_stays_on_the_board(framework, digits):
    pytest.importorskip("torch" if framework == "torch" else "tensorflow")
    data = tabular_digits(digits)
    model = tiny_model(framework)
    model_ref = weakref.ref(model)
    run = ftkit.finetune(model, data, epochs=2, batch_size=32, progress=False, name="dropped")
    history = [e["val_loss"] for e in run.history["epochs"]]
    kept = ftkit.finetune(tiny_model(framework), data, epochs=1, batch_size=32, progress=False, name="kept")
    del model, run
    gc.collect()
    assert model_ref() is None, "the session's run list kept a model that nothing else refers to"
    rows = {r.name: r for r in ftkit.session_runs()}
    assert rows["dropped"].model is None and rows["kept"].model is kept.model   # a held run keeps its model
    assert [e["val_loss"] for e in rows["dropped"].history["epochs"]] == history
    assert rows["dropped"].status == "finished" and rows["dropped"].task == "classification"
    assert rows["dropped"].summary()["epochs"] == 2
    names = [r.name for r in ftkit.session_runs()]
    assert names.index("dropped") < names.index("kept")   # still oldest first
    assert np.isfinite(kept.history["epochs"][0]["val_loss"])


TF_MEMORY = """
import ctypes, gc
import numpy as np
import ftkit
from ftkit import _frameworks
_frameworks.tensorflow()
import keras

def resident_mb():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)   # hand freed heap back, so that what stays is what is held
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

rng = np.random.default_rng(0)
x, y = rng.random((64, 2048), dtype=np.float32), rng.integers(0, 10, 64)
data = ftkit.Dataset.from_arrays("random", (x, y), (x[:16], y[:16]))
after = []
for i in range(4):   # 8.4M weights: with AdamW's two slots, about 100 MB per model
    inp = keras.Input((2048,))
    body, head = keras.layers.Dense(4096, activation="relu"), keras.layers.Dense(10)
    model = ftkit.wrap_model(keras.Model(inp, head(body(inp))), [("body", [body]), ("head", [head])],
                             num_classes=10, input_spec={"modality": "tabular"})
    ftkit.finetune(model, data, epochs=1, batch_size=32, progress=False)
    del model, body, head, inp
    after.append(resident_mb())
print("MB", *[round(a) for a in after])
"""


def test_tf_frees_each_fine_tuned_model(tmp_path):
    """A TensorFlow process that fine-tunes one fresh model after another stays the same size: Keras' gradient
    all-reduce inside a traced step used to keep every model's and optimizer's variables alive (about 100 MB
    per model here; 0.35 GB per MiniLM)."""
    pytest.importorskip("tensorflow")
    from conftest import run_python
    r = run_python(TF_MEMORY, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    mb = [float(v) for v in r.stdout.split("MB")[-1].split()]
    assert mb[-1] - mb[1] < 40, f"resident memory after each model: {mb} MB (grows by about 100 MB a model)"


def test_tf_models_kept_by_the_notebook_hold_only_their_weights():
    """A notebook keeps the models it compares: each costs its weights, not its training state too (optimizer
    slots, accumulators, traced steps), which is freed when the next model starts training. Kept models
    still predict as they did and train again."""
    pytest.importorskip("tensorflow")
    from conftest import run_python
    code = TF_MEMORY.replace("    del model, body, head, inp\n", "    kept.append(model)\n").replace(
        "after = []", "after, kept = [], []") + """
before = kept[0].predict(x[:8])
assert np.array_equal(before, kept[0].predict(x[:8]))
run = ftkit.finetune(kept[0], data, epochs=1, batch_size=32, progress=False)   # trains again after its release
assert run.status == "finished" and not np.array_equal(before, kept[0].predict(x[:8]))
print("OK")
"""
    r = run_python(code, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-1] == "OK"
    mb = [float(v) for v in r.stdout.split("MB")[-1].split()[:4]]
    # 8.4M float32 weights are 34 MB; with the training state kept, each model added about 140 MB
    assert (mb[-1] - mb[1]) / 2 < 60, f"resident memory after each kept model: {mb} MB"
