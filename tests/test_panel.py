"""The FineTunePanel as a learner meets it: one run record behind every figure, a default strategy that fits the
data size, errors next to their control, the LR finder and Evaluate buttons, a tooltip on every control."""
import re

import ipywidgets as W
import numpy as np
import pytest

import ftkit
from ftkit_widgets import FineTunePanel

TINY = ftkit.FineTuneConfig(strategy="head_only", epochs=2, batch_size=16, max_steps_per_epoch=2)


def make_panel(config=TINY, **kw):
    kw = {"model": "mobilenet_v2", "dataset": "digits", "subset": 5, "image_size": 32, "live_interval": 0.0, **kw}
    return FineTunePanel(config, **kw)


def walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from walk(c)


def attrs(html_text):
    return dict(re.findall(r"data-([a-z-]+)='([^']*)'", html_text))


def test_every_figure_comes_from_the_run_record():
    class StopInEpoch2(ftkit.Callback):
        def on_step_end(self, run, record):
            if record["step"] == 7:   # the first step of epoch 2 (7 steps an epoch)
                run.request_stop()

    p = make_panel(TINY.replace(epochs=4, max_steps_per_epoch=None, batch_size=8))
    p.callbacks.append(StopInEpoch2())
    run = p.train(wait=True)
    assert run.status == "stopped" and len(run.history["epochs"]) == 2 and run.steps_done == 8
    best = run.best_epoch
    status = attrs(p.status.value)
    assert status == {"kind": "ok", "epochs": "2", "steps": "8", "best-accuracy": f"{best['val_accuracy']:.3f}"}
    text = re.sub("<[^>]+>", "", p.status.value)
    assert f"8 of {run.total_steps} steps" in text and "kept the last weights" in text.lower()
    assert f"Best epoch {best['epoch'] + 1} (by val_loss): val accuracy {best['val_accuracy']:.3f}" in text
    assert "after 1 of 7 steps" in text   # the stopped epoch says how far it got
    stats = attrs(p.live.stats.value)
    assert {k: stats[k] for k in ("epochs", "steps", "best-accuracy")} == \
        {k: status[k] for k in ("epochs", "steps", "best-accuracy")}
    row = next(r for r in p.runboard.rows() if r["run"] == run.name)
    assert row["epochs"] == 2 and row["steps"] == 8 and row["best_val_accuracy"] == best["val_accuracy"]


@pytest.mark.parametrize("subset, augment, expected", [(5, False, "feature_extraction"), (5, True, "head_only"),
                                                        (50, False, "partial"), (300, False, "full")])
def test_default_strategy_follows_the_data_size(subset, augment, expected):
    assert ftkit.suggest_strategy(subset, augment) == expected
    p = FineTunePanel(model="mobilenet_v2", dataset="digits", subset=subset, image_size=32, load=False)
    p.augment.value = augment
    assert p.config.strategy == expected
    assert "suggested for" in p.strategy_help.value and "fewer than 25" in p.strategy_help.value


def test_chosen_strategy_is_kept_when_the_data_size_changes():
    p = FineTunePanel(model="mobilenet_v2", dataset="digits", subset=5, image_size=32, load=False)
    p.subset.value = 100
    assert p.config.strategy == "partial"   # still automatic
    p.strategy.value = "full"
    p.subset.value = 5
    assert p.config.strategy == "full" and "the rule suggests <b>feature_extraction</b>" in p.strategy_help.value
    given = FineTunePanel(TINY, model="mobilenet_v2", dataset="digits", subset=300, image_size=32, load=False)
    assert given.config.strategy == "head_only"   # a given config is never overridden


def test_an_error_shows_next_to_its_control_and_in_its_tab():
    p = make_panel()
    p.lr.value = 0.0
    assert p.train() is None
    assert "lr=0.0" in p.field_errors["lr"].value and p.field_errors["lr"].layout.display is None
    assert "lr=0.0" in p.error
    p.lr.value = 1e-3   # the next change clears it
    assert p.field_errors["lr"].layout.display == "none"
    p.set_config(TINY.replace(strategy="partial", trainable_groups=2))
    p.warmup_steps.value = 0
    p._show_error(ftkit.ConfigError("weight_decay=-1 must be a number >= 0"))
    assert p.field_errors["weight_decay"].layout.display is None
    assert p.tabs.titles[p.tabs.selected_index] == "Regularization"


def test_switching_framework_before_loading_shows_no_error():
    p = make_panel(TINY.replace(strategy="partial", trainable_groups=3))
    p.framework.value = "tf"   # the TF model is not loaded yet: its group count is unknown
    assert p.preview_message == "" and p.error is None
    assert "not loaded" in p.layermap.caption


def test_lr_finder_button_offers_a_suggestion_and_leaves_the_model(digits_small):
    p = make_panel()
    before = {k: v.clone() for k, v in p.model.native.state_dict().items()}
    p.find_lr(wait=True)
    assert p.lr_result.suggestion > 0 and p.lr_use_button.layout.display is None
    assert all(np.array_equal(before[k].numpy(), v.numpy()) for k, v in p.model.native.state_dict().items())
    p.lr_use_button.click()
    assert p.config.lr == pytest.approx(float(f"{p.lr_result.suggestion:.2g}"))


def test_evaluate_button_shows_test_metrics_and_confusion_matrix():
    p = make_panel()
    assert p.eval_button.disabled   # nothing trained yet
    run = p.train(wait=True)
    assert not p.eval_button.disabled
    p.evaluate(wait=True)
    expected = ftkit.evaluate(p.model, p.data, "test")
    assert p.test_metrics["accuracy"] == expected["accuracy"] == run.test_metrics["accuracy"]
    assert p.eval_view.layout.display is None
    assert f"accuracy {expected['accuracy']:.3f}" in p.status.value
    pictures = [w for w in walk(p.eval_view) if isinstance(w, W.Image)]
    assert pictures and len(pictures[0].value) > 5000


def test_device_line_and_every_control_has_a_tooltip():
    p = make_panel()
    info = ftkit.device_info("torch")
    assert info["name"] in p.device_line.value and info["precision"] in p.device_line.value
    controls = [w for w in walk(p) if isinstance(w, (W.ValueWidget, W.Button))
                and not isinstance(w, (W.HTML, W.Image, W.Label))]
    missing = [f"{type(w).__name__} {getattr(w, 'description', '')!r}" for w in controls
               if not (getattr(w, "tooltip", None) or "").strip()]
    assert len(controls) > 25 and not missing, missing


@pytest.mark.parametrize("dataset, task, figure_text", [("fashion_scenes", "detection", "mAP@0.5"),
                                                        ("plot_cast_qa", "qa", "exact match")])
def test_the_panel_loads_the_head_a_task_needs_and_evaluates_it(dataset, task, figure_text):
    model = "minilm" if task == "qa" else "mobilenet_v2"
    p = make_panel(TINY.replace(strategy="full", epochs=1, batch_size=8, max_steps_per_epoch=1), model=model,
                   dataset=dataset, subset=8)
    run = p.train(wait=True)
    assert run.status == "finished", (run.status, run.message, p.error)
    assert p.model.task == task and (task != "detection" or p.model.input_spec["image_size"] == 128)
    assert f"task={task!r}" in p.code() and (task != "qa" or "num_classes" not in p.code())
    p.evaluate(wait=True)
    assert p.eval_view.layout.display is None and p.test_metrics == pytest.approx(ftkit.evaluate(p.model, p.data))
    assert figure_text in p.status.value.replace("map50", "mAP@0.5").replace("exact_match", "exact match")
    pictures = [w for w in walk(p.eval_view) if isinstance(w, W.Image)]
    assert pictures and len(pictures[0].value) > 5000
