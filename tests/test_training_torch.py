"""What fine-tuning does to the weights, read from the weights themselves (PyTorch backend)."""
import numpy as np
import pytest
import torch
from torch import nn

import ftkit
from ftkit.backends.torch.train import Trainer

STRATEGY_CASES = {
    "full": dict(strategy="full", epochs=1),
    "partial": dict(strategy="partial", trainable_groups=2, epochs=1),
    "feature_extraction": dict(strategy="feature_extraction", epochs=2),
    "head_only": dict(strategy="head_only", epochs=1, augment=True),
    "progressive": dict(strategy="progressive", epochs=2, unfreeze_every=1),
}


def mobilenet(num_classes=10, **kw):
    return ftkit.load_model("mobilenet_v2", framework="torch", num_classes=num_classes, image_size=32,
                            verbose=False, **kw)


def group_state(model, gi):
    """Every weight and buffer (BatchNorm running statistics included) of one group."""
    out = {}
    for mi, m in enumerate(model.groups[gi].members):
        for k, v in m.state_dict().items():
            out[f"{mi}.{k}"] = v.detach().clone()
    return out


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(STRATEGY_CASES))
def test_frozen_groups_bitwise_unchanged_and_bn_stats_fixed(name, digits_small):
    model = mobilenet()
    cfg = ftkit.FineTuneConfig(progress=False, lr=1e-2, **STRATEGY_CASES[name])
    masks = ftkit.strategies.plan(cfg, len(model.groups))
    ever_trained = [any(m[i] for m in masks) for i in range(len(model.groups))]
    before = [group_state(model, i) for i in range(len(model.groups))]
    run = ftkit.finetune(model, digits_small, cfg)
    assert run.status == "finished"
    for i, trained in enumerate(ever_trained):
        after = group_state(model, i)
        if trained:
            assert not same(before[i], after), f"group {model.group_names[i]} should have trained"
        else:
            assert same(before[i], after), f"frozen group {model.group_names[i]} changed under {name}"
            bn = [k for k in after if "running_mean" in k]
            assert not bn or all(torch.equal(before[i][k], after[k]) for k in bn)
    assert sum(ever_trained) < len(ever_trained) or name == "full"


def test_each_group_steps_with_its_own_lr(digits_small):
    """Plain SGD: the update of every weight is exactly -lr_of_its_group * grad."""
    model = mobilenet(dropout=0.0)
    cfg = ftkit.FineTuneConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0, progress=False)
    trainer = Trainer(model, cfg)
    trainer.set_trainable([True] * 5)
    lrs = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    trainer.set_lrs(lrs)
    grads = {}
    params = [(gi, p) for gi, g in enumerate(model.groups) for m in g.members for p in m.parameters()]
    for gi, p in params:
        p.register_post_accumulate_grad_hook(lambda t, key=id(p): grads.__setitem__(key, t.grad.clone()))
    before = {id(p): p.detach().clone() for _, p in params}
    trainer.train_step(next(trainer.batches(digits_small.train)), update=True)
    for gi, p in params:
        g = grads[id(p)]
        if g.abs().max() == 0:
            continue
        expected = before[id(p)] - lrs[gi] * g
        assert torch.allclose(p.detach(), expected, rtol=1e-5, atol=1e-8), model.group_names[gi]


def test_history_records_each_groups_scheduled_lr(digits_small):
    model = mobilenet()
    cfg = ftkit.FineTuneConfig(strategy="progressive", epochs=2, lr=1e-3, lr_ratio=10.0, schedule="cosine",
                               warmup_steps=2, batch_size=16, progress=False)
    run = ftkit.finetune(model, digits_small, cfg)
    steps = run.history["steps"]
    assert len(steps) == run.total_steps == 2 * 5
    base = ftkit.group_lrs(cfg, 5)
    curve = ftkit.lr_curve(cfg, run.total_steps)
    for rec in steps:
        mask = run.history["epochs"][rec["epoch"]]["trainable_mask"]
        want = [b * curve[rec["step"]] if m else 0.0 for b, m in zip(base, mask)]
        assert rec["lrs"] == pytest.approx(want)
    e0, e1 = run.history["epochs"]
    assert e0["trainable_mask"] == [False, False, False, False, True]
    assert e1["trainable_mask"] == [False, False, False, True, True]
    assert e1["trainable_params"] > e0["trainable_params"] and e0["samples_per_sec"] > 0


def test_divergence_stops_and_keeps_finite_weights(digits_small):
    model = mobilenet()
    run = ftkit.finetune(model, digits_small, optimizer="sgd", lr=1e8, epochs=3, progress=False)
    assert run.status == "diverged" and "lower learning rate" in run.message
    assert all(torch.isfinite(v.float()).all() for v in model.native.state_dict().values())


def test_stop_request_ends_early_and_keeps_history(digits_small):
    class StopAt2(ftkit.Callback):
        def on_step_end(self, run, record):
            if record["step"] == 1:
                run.request_stop()

    model = mobilenet()
    run = ftkit.finetune(model, digits_small, epochs=5, batch_size=8, progress=False, callbacks=[StopAt2()])
    assert run.status == "stopped"
    assert len(run.history["steps"]) == 2 and len(run.history["epochs"]) == 1


def test_early_stopping_restores_best_weights(digits_small):
    snaps = []

    class Snap(ftkit.Callback):
        def on_epoch_end(self, run, record):
            snaps.append((record["val_loss"], {k: v.clone() for k, v in run.model.native.state_dict().items()}))

    model = mobilenet()
    run = ftkit.finetune(model, digits_small, epochs=8, lr=0.05, optimizer="sgd", early_stopping=1,
                         progress=False, callbacks=[Snap()])
    best = min(snaps, key=lambda s: s[0])[1]
    assert all(torch.equal(best[k], v) for k, v in model.native.state_dict().items())
    if run.status == "early_stopped":
        assert len(run.history["epochs"]) < 8


def test_feature_extraction_head_matches_full_forward(digits_small):
    model = mobilenet()
    run = ftkit.finetune(model, digits_small, strategy="feature_extraction", epochs=3, lr=1e-2, progress=False)
    val = ftkit.evaluate(model, digits_small, "val")
    assert val["accuracy"] == pytest.approx(run.history["epochs"][-1]["val_accuracy"], abs=1e-9)
    assert val["loss"] == pytest.approx(run.history["epochs"][-1]["val_loss"], rel=1e-4)


def test_save_and_load_run_round_trip(tmp_path, digits_small):
    model = mobilenet()
    run = ftkit.finetune(model, digits_small, epochs=1, progress=False)
    run.save(tmp_path / "r")
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in (tmp_path / "r").iterdir())
    saved = ftkit.load_run(tmp_path / "r")
    assert saved.history == run.history and saved.config == run.config
    a = ftkit.evaluate(model, digits_small, "test")
    b = ftkit.evaluate(saved.model, digits_small, "test")
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["accuracy"] == b["accuracy"]


def tiny_mlp():
    """A user's own small classifier of 8x8 images, wrapped with two groups."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return ftkit.wrap_model(net, [("hidden", [net[1]]), ("head", [net[3]])], num_classes=10)


def test_gradient_accumulation_equals_a_larger_batch(digits_small):
    weights = []
    for bs, accum in ((16, 1), (8, 2), (4, 4)):
        torch.manual_seed(0)
        model = tiny_mlp()
        ftkit.finetune(model, digits_small, batch_size=bs, grad_accum=accum, epochs=1, max_steps_per_epoch=1,
                       optimizer="sgd", momentum=0.0, lr=0.5, progress=False, seed=0)
        weights.append(torch.cat([p.detach().flatten() for p in model.native.parameters()]))
    # same 16 examples (the shuffle depends on the seed, not on the batch size), same single step
    assert torch.allclose(weights[0], weights[1], atol=1e-6) and torch.allclose(weights[0], weights[2], atol=1e-6)


def test_class_weights_weight_the_loss(digits_small):
    model = tiny_mlp()
    w = np.linspace(0.5, 2.0, 10).astype(np.float32)
    trainer = Trainer(model, ftkit.FineTuneConfig(class_weights=list(map(float, w)), progress=False), w)
    x, y = next(trainer.batches(digits_small.train))
    with torch.no_grad():
        per = nn.functional.cross_entropy(model.native(x.float() / 255), y, reduction="none")
        expected = float((per * torch.from_numpy(w)[y]).sum() / torch.from_numpy(w)[y].sum())
    model.native.eval()  # no dropout in the MLP: train/eval give the same loss
    got = trainer.train_step((x, y), update=False)
    assert got == pytest.approx(expected, rel=1e-5)


def test_l2sp_pulls_toward_the_pretrained_weights(digits_small):
    dist = {}
    for l2sp in (0.0, 50.0):
        model = mobilenet()
        start = [p.detach().clone() for p in model.groups[3].members[0].parameters()]
        ftkit.finetune(model, digits_small, l2sp=l2sp, lr=3e-3, weight_decay=0.0, epochs=2, progress=False)
        dist[l2sp] = sum(float((p.detach() - s).pow(2).sum()) for p, s in zip(model.groups[3].members[0].parameters(), start))
    assert dist[50.0] < 0.8 * dist[0.0]


def test_classification_metrics_are_sklearns(digits_small):
    model = mobilenet()
    ftkit.finetune(model, digits_small, strategy="head_only", epochs=2, lr=1e-2, progress=False)
    m = ftkit.evaluate(model, digits_small, "test")
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == len(digits_small.test)
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert 0 <= m["f1_macro"] <= 1 and 0.5 <= m["auc_roc"] <= 1
