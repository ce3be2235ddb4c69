"""Every FineTuneConfig field does what it says, in both frameworks.

``EFFECTS`` has one entry per field: a base config, a change, and a check that shows the change's
effect on the run (updates, masks, losses, recorded metadata) or the documented absence of one.
``test_every_field_is_walked`` fails when a field is added without an entry here.
"""
import dataclasses

import numpy as np
import pytest

import ftkit
from _helpers import scale_head
from ftkit import ConfigError, FineTuneConfig

BASE = dict(epochs=2, batch_size=16, lr=1e-2, progress=False)


class Blowup(ftkit.Callback):
    """Multiplies the head's weights by ``factor`` after optimizer step ``step`` (a blow-up on demand)."""

    def __init__(self, step, factor):
        self.step, self.factor = step, factor

    def on_step_end(self, run, record):
        if record["step"] == self.step:
            scale_head(run.model, self.factor)


# -- checks: each gets the base run and the changed run ----------------------------------------------------

def losses(run):
    return [s["loss"] for s in run.history["steps"]]


def lrs(run):
    return [s["lrs"] for s in run.history["steps"]]


def masks(run):
    return [e["trainable_mask"] for e in run.history["epochs"]]


def losses_differ(a, b):
    assert losses(a) != losses(b)


def later_losses_differ(a, b):
    """The first step is the same (the change acts through the updates), a later one is not."""
    assert losses(a)[0] == losses(b)[0] and losses(a) != losses(b)


def lrs_differ(a, b):
    assert len(lrs(a)) == len(lrs(b)) and lrs(a) != lrs(b)


def masks_differ(a, b):
    assert masks(a) != masks(b)


def step_count_differs(a, b):
    assert len(a.history["steps"]) != len(b.history["steps"])


def epoch_count_differs(a, b):
    assert len(a.history["epochs"]) == 1 and len(b.history["epochs"]) == 2


def no_effect(a, b):
    assert losses(a) == losses(b) and masks(a) == masks(b)


def dropout_set(a, b):
    assert a.dropout == pytest.approx(0.2) and b.dropout == pytest.approx(0.6) and b.model.dropout == pytest.approx(0.6)
    assert losses(a) != losses(b)


def early_stopped(a, b):
    assert a.status == "finished" and len(a.history["epochs"]) == 4
    assert b.status == "early_stopped" and len(b.history["epochs"]) == 3 and b.kept == "best (epoch 2)"


def monitor_picks_best(a, b):
    # identical training (monitor only judges it); each run's best epoch follows its own monitor
    assert losses(a) == losses(b)
    by_loss = min(a.history["epochs"], key=lambda e: e["val_loss"])["epoch"]
    by_acc = max(b.history["epochs"], key=lambda e: e["val_accuracy"])["epoch"]
    assert a.best_epoch["epoch"] == by_loss and b.best_epoch["epoch"] == by_acc
    assert by_loss != by_acc, "this history should separate the two monitors"


def precision_falls_back(a, b):
    assert a.precision == b.precision == "fp32" and not a.notes
    assert any("precision='bf16' needs a GPU" in n for n in b.notes)
    no_effect(a, b)


def device_recorded(a, b):
    assert a.device == b.device == "cpu"
    no_effect(a, b)


def channels_last_layout(a, b):
    if a.framework == "tf":   # documented: Keras is always channels-last, the field does nothing there
        return no_effect(a, b)
    assert a.layout == "channels_last" and b.layout == "contiguous"   # base: on (auto for image models)


def spike_stops(a, b):
    assert a.status == "finished" and b.status == "diverged" and "loss_spike" in b.message


def progress_shows_a_bar(a, b):
    no_effect(a, b)
    assert not a.captured and "epoch 1/2" in b.captured


def resampled(a, b):
    """sampler='balanced' draws each epoch with replacement: as many steps, other batches."""
    assert len(losses(a)) == len(losses(b)) and losses(a) != losses(b)


def curriculum_paced(a, b):
    """curriculum_start acts only with sampler='curriculum' (with the base's 'shuffle': no effect, as
    documented); with difficulty scores, the first epoch draws from the easiest 30% or 60%."""
    no_effect(a, b)
    trainer = b.model.backend.train.Trainer(b.model, FineTuneConfig(progress=False))
    start = trainer.get_weights()
    data = ftkit.load_dataset("digits", verbose=False).subset(8)
    scored = data.with_difficulty(data.train.y)   # digit 0 easiest, 9 hardest
    runs = []
    for run in (a, b):   # curriculum_start 0.3, then 0.6, from the same weights
        trainer.set_weights(start)
        runs.append(ftkit.finetune(b.model, scored, run.config.replace(sampler="curriculum")))
    assert len(losses(runs[0])) == len(losses(runs[1])) and losses(runs[0])[0] != losses(runs[1])[0]


def trains(run):
    """The parameters that trained in the run's first epoch."""
    return run.history["epochs"][0]["trainable_params"]


def bitfit_trains_biases(a, b):
    # tiny: convs 8x1x3x3 + 8 and 16x8x3x3 + 16, BatchNorms 2x8 and 2x16, head 16x10 + 10
    assert trains(a) == 80 + 16 + 1168 + 32 + 170
    assert trains(b) == 8 + 8 + 16 + 16 + 170          # the conv and BatchNorm biases, the whole head
    later_losses_differ(a, b)


def lora_size_differs(a, b):
    """A rank-r adapter on a kh x kw conv from c_in to c_out has r * (c_in * kh * kw + c_out) weights."""
    size = {"stem": 1 * 9 + 8, "block": 8 * 9 + 16}
    for run in (a, b):
        c = run.config
        assert trains(run) == c.lora_rank * sum(size[t] for t in c.lora_targets) + 170   # + the head
    assert trains(a) != trains(b)


def same_training_recomputed(a, b):
    """grad_checkpointing recomputes the trained groups' activations in the backward pass instead of
    keeping them: the same gradients, so the same losses; what changes is memory (and time). The
    validation losses (BatchNorm in inference mode) show the running statistics were updated once a step.
    tests/test_checkpointing.py shows the recomputation itself and one step's equal weights."""
    assert masks(a) == masks(b) and len(losses(a)) == len(losses(b))
    np.testing.assert_allclose(losses(b), losses(a), rtol=1e-5)
    val_loss = [[e["val_loss"] for e in run.history["epochs"]] for run in (a, b)]
    np.testing.assert_allclose(val_loss[1], val_loss[0], rtol=1e-5)


# field -> (base changes, the change, check[, callbacks factory])
EFFECTS = {
    "strategy": ({}, dict(strategy="head_only"), masks_differ),
    "trainable_groups": (dict(strategy="partial", trainable_groups=1), dict(trainable_groups=2), masks_differ),
    "unfreeze_every": (dict(strategy="progressive", unfreeze_every=1), dict(unfreeze_every=2), masks_differ),
    "probe_epochs": (dict(strategy="lp_ft", epochs=3, probe_epochs=1), dict(probe_epochs=2), masks_differ),
    "plan": (dict(strategy="plan", plan=[1, 3]), dict(plan=[[True, False, True], 3]), masks_differ),
    "peft": ({}, dict(peft="bitfit"), bitfit_trains_biases),
    "lora_rank": (dict(peft="lora", lora_targets=["stem", "block"]), dict(lora_rank=4), lora_size_differs),
    "lora_alpha": (dict(peft="lora", lora_targets=["stem", "block"]), dict(lora_alpha=64.0), later_losses_differ),
    "lora_targets": (dict(peft="lora", lora_targets=["block"]), dict(lora_targets=["stem", "block"]),
                     lora_size_differs),
    "epochs": (dict(epochs=1), dict(epochs=2), epoch_count_differs),
    "batch_size": ({}, dict(batch_size=8), step_count_differs),
    "optimizer": ({}, dict(optimizer="sgd"), losses_differ),
    "lr": ({}, dict(lr=1e-3), later_losses_differ),
    "group_lrs": ({}, dict(group_lrs=[1e-4, 1e-3, 1e-2]), lrs_differ),
    "lr_ratio": ({}, dict(lr_ratio=10.0), lrs_differ),
    "momentum": (dict(optimizer="sgd"), dict(momentum=0.0), later_losses_differ),
    "schedule": ({}, dict(schedule="cosine"), lrs_differ),
    "warmup_steps": ({}, dict(warmup_steps=3), lrs_differ),
    "step_size": (dict(schedule="step", step_size=2), dict(step_size=3), lrs_differ),
    "gamma": (dict(schedule="step", step_size=2), dict(gamma=0.5), lrs_differ),
    "min_lr_factor": (dict(schedule="cosine"), dict(min_lr_factor=0.5), lrs_differ),
    "cycle_steps": (dict(schedule="cyclic", cycle_steps=2), dict(cycle_steps=3), lrs_differ),
    "div_factor": (dict(schedule="onecycle"), dict(div_factor=5.0), lrs_differ),
    "final_div_factor": (dict(schedule="onecycle"), dict(final_div_factor=10.0), lrs_differ),
    "pct_start": (dict(schedule="onecycle"), dict(pct_start=0.6), lrs_differ),
    "weight_decay": (dict(weight_decay=0.0), dict(weight_decay=0.5), later_losses_differ),
    "dropout": ({}, dict(dropout=0.6), dropout_set),
    "l2sp": ({}, dict(l2sp=100.0), later_losses_differ),
    "label_smoothing": ({}, dict(label_smoothing=0.3), losses_differ),
    "early_stopping": (dict(epochs=4), dict(early_stopping=1), early_stopped,
                       lambda: [Blowup(step=14, factor=50.0)]),
    # the head scaled by 50 at the end of epoch 2: its predictions (accuracy) stay, its val loss soars
    "monitor": (dict(epochs=3, lr=3e-2), dict(monitor="val_accuracy"), monitor_picks_best,
                lambda: [Blowup(step=9, factor=50.0)]),
    "augment": ({}, dict(augment=True), losses_differ),
    "class_weights": ({}, dict(class_weights=[1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0]), losses_differ),
    "sampler": ({}, dict(sampler="balanced"), resampled),
    "curriculum_start": ({}, dict(curriculum_start=0.6), curriculum_paced),
    "grad_accum": ({}, dict(grad_accum=2), step_count_differs),
    "grad_checkpointing": ({}, dict(grad_checkpointing=True), same_training_recomputed),
    "clip_norm": ({}, dict(clip_norm=1e-3), later_losses_differ),
    "precision": ({}, dict(precision="bf16"), precision_falls_back),
    "device": ({}, dict(device="cpu"), device_recorded),
    "channels_last": ({}, dict(channels_last=False), channels_last_layout),
    "seed": ({}, dict(seed=1), losses_differ),
    "max_steps_per_epoch": ({}, dict(max_steps_per_epoch=2), step_count_differs),
    "loss_spike": (dict(epochs=3), dict(loss_spike=5.0), spike_stops, lambda: [Blowup(step=11, factor=1e3)]),
    "progress": ({}, dict(progress=True), progress_shows_a_bar),
}


def test_every_field_is_walked():
    assert set(EFFECTS) == {f.name for f in dataclasses.fields(FineTuneConfig)}


def tiny(framework):
    """A small convnet of three groups (stem, block, head with dropout) on 8x8 grey images."""
    if framework == "torch":
        import torch
        from torch import nn
        torch.manual_seed(0)
        body = nn.Sequential(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                             nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        head = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, 10))
        native = nn.Sequential(body, head)
        groups = [("stem", [body[0]]), ("block", [body[1]]), ("head", [head])]
    else:
        import keras
        keras.utils.set_random_seed(0)
        inp = keras.Input((8, 8, 1))
        stem = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
                                 keras.layers.ReLU()], name="stem")
        block = keras.Sequential([keras.layers.Conv2D(16, 3, padding="same"), keras.layers.BatchNormalization(),
                                  keras.layers.ReLU()], name="block")
        body = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(block(stem(inp))))
        head = keras.Sequential([keras.layers.Dropout(0.2), keras.layers.Dense(10)], name="head")
        head.build((None, 16))
        native = keras.Model(inp, head(body(inp)))
        groups = [("stem", [stem]), ("block", [block]), ("head", [head])]
    return ftkit.wrap_model(native, groups, body=body, head=head, num_classes=10, name="tiny")


@pytest.fixture(scope="module")
def models():
    return {}


def run_with(framework, models, data, changes, callbacks, capsys):
    """A run of the shared tiny model from its initial state (weights, freeze state, dropout)."""
    if framework not in models:
        model = tiny(framework)
        trainer = model.backend.train.Trainer(model, FineTuneConfig(progress=False))
        models[framework] = (model, trainer.get_weights())
    model, initial = models[framework]
    model.backend.train.Trainer(model, FineTuneConfig(progress=False)).set_weights(initial)
    model.unfreeze()
    model.set_dropout(0.2)
    if changes.get("peft") == "lora":   # LoRA adapters stay in a model: each LoRA run gets a fresh tiny model
        model = tiny(framework)
    capsys.readouterr()
    run = ftkit.finetune(model, data, FineTuneConfig(**{**BASE, **changes}), callbacks=callbacks)
    run.captured = capsys.readouterr().err
    if framework == "torch":   # the memory layout of the block's convolution at the end of this run
        import torch
        conv = model.native[0][1][0].weight
        run.layout = "channels_last" if conv.is_contiguous(memory_format=torch.channels_last) else \
            "contiguous" if conv.is_contiguous() else "other"
    return run


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("field", sorted(EFFECTS))
def test_field_takes_effect(framework, field, models, digits_small, capsys):
    base, change, check, *cbs = EFFECTS[field]
    make_callbacks = cbs[0] if cbs else list
    a = run_with(framework, models, digits_small, base, make_callbacks(), capsys)
    b = run_with(framework, models, digits_small, {**base, **change}, make_callbacks(), capsys)
    assert getattr(a.config, field) != getattr(b.config, field)
    check(a, b)


def test_cuda_device_is_refused_without_a_gpu(digits_small):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        ftkit.finetune(tiny("torch"), digits_small, device="cuda", progress=False)
