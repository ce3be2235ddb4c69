"""Python-side tests of ftkit_widgets: drive the controls, click the buttons, run tiny real trainings on CPU.

Each run is MobileNetV2 at 32 px on 5 digits per class with at most 2 steps per epoch:
a few seconds. The browser end-to-end test is tests/test_widgets_browser.py.
"""
import csv
import time

import pytest

import ftkit

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from ftkit_widgets import FineTunePanel, LayerMap, LiveView, RunBoard  # noqa: E402

TINY = ftkit.FineTuneConfig(strategy="head_only", epochs=2, batch_size=16, max_steps_per_epoch=2)


def make_panel(config=TINY, **kw):
    kw = {"model": "mobilenet_v2", "dataset": "digits", "subset": 5, "image_size": 32, "live_interval": 0.0, **kw}
    return FineTunePanel.from_config(config, **kw)


@pytest.fixture(scope="module")
def panel():
    return make_panel()


def wait_for(predicate, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- config <-> controls --------------------------------------------------------------------------------------
def test_controls_start_at_the_config_and_keep_other_fields():
    cfg = ftkit.FineTuneConfig(strategy="partial", trainable_groups=3, epochs=4, batch_size=8, lr=3e-4,
                               lr_ratio=20.0, schedule="cosine", warmup_steps=5, weight_decay=0.05, dropout=0.3,
                               augment=True, precision="fp32", optimizer="sgd", seed=7, label_smoothing=0.1)
    p = FineTunePanel.from_config(cfg, load=False)
    assert p.config == cfg
    assert p.strategy.value == "partial" and p.trainable_groups.value == 3 and p.differential.value
    assert p.trainable_groups.layout.display is None and p.unfreeze_every.layout.display == "none"
    assert "medium-sized data" in p.strategy_help.value  # the strategy's "when to use" line
    with pytest.raises(ftkit.ConfigError):
        FineTunePanel.from_config({"lr": 1e-3}, load=False)


def test_lp_ft_and_plan_strategies_in_the_panel():
    p = FineTunePanel.from_config(ftkit.FineTuneConfig(strategy="lp_ft", epochs=4, probe_epochs=2), load=False)
    assert p.probe_epochs.value == 2 and p.probe_epochs.layout.display is None
    assert p.trainable_groups.layout.display == "none" and p.config.probe_epochs == 2
    p.probe_epochs.value = 3
    assert p.config.probe_epochs == 3
    p.strategy.value = "full"
    assert p.probe_epochs.layout.display == "none"
    # a plan comes from code; it survives the round trip, and leaving strategy "plan" drops it
    planned = ftkit.FineTuneConfig(strategy="plan", epochs=3, plan=[1, 1, 5])
    p.set_config(planned)
    assert p.config.plan == [1, 1, 5] and p.config.strategy == "plan"
    p.strategy.value = "partial"
    assert p.config.plan is None
    p.config.validate(n_groups=5)


def test_setting_controls_changes_the_config(panel):
    before = panel.preview.value
    panel.strategy.value = "progressive"
    panel.unfreeze_every.value = 2
    panel.lr.value = 0.01
    panel.differential.value = True
    panel.lr_ratio.value = 100.0
    panel.schedule.value = "onecycle"
    panel.warmup_steps.value = 1
    panel.epochs.value = 3
    panel.batch_size.value = 32
    panel.augment.value = True
    c = panel.config
    assert (c.strategy, c.unfreeze_every, c.lr, c.lr_ratio, c.schedule, c.warmup_steps, c.epochs, c.batch_size,
            c.augment) == ("progressive", 2, 0.01, 100.0, "onecycle", 1, 3, 32, True)
    assert c.max_steps_per_epoch == 2  # a field without a control is kept from the starting config
    assert panel.preview.value != before  # the LR preview follows the settings
    assert panel.unfreeze_every.layout.display is None
    assert abs(panel.lr_slider.value - 0.01) < 1e-9  # the slider follows the text box ...
    panel.lr_slider.value = 0.001
    assert panel.config.lr == 0.001  # ... and the other way round
    # the layer map shows each group's LR multiplier (1/100 at the stem, 1 at the head) and the plan
    mults = [g["lr_mult"] for g in panel.layermap.groups]
    assert mults[0] == pytest.approx(0.01) and mults[-1] == pytest.approx(1.0)
    assert panel.layermap.mask == [False, False, False, False, True]
    assert "unfreezes in epoch 3" in panel.layermap.groups[-2]["note"]
    panel.set_config(TINY)
    assert panel.config == TINY


def test_code_reproduces_the_settings(monkeypatch, panel):
    panel.set_config(TINY.replace(strategy="partial", trainable_groups=3, lr=2e-3, schedule="cosine",
                                  dropout=0.3))
    code = panel.code()
    assert "ftkit.finetune(model, data, config)" in code and "panel" not in code
    calls = {}
    monkeypatch.setattr(ftkit, "load_dataset", lambda name, **kw: calls.setdefault("data", _FakeData(name)))
    monkeypatch.setattr(ftkit, "load_model", lambda *a, **kw: calls.setdefault("model", (a, kw)))
    monkeypatch.setattr(ftkit, "finetune", lambda m, d, c: calls.setdefault("config", c))
    exec(compile(code, "<panel.code()>", "exec"), {})
    assert calls["config"] == panel.config.replace(progress=True)
    assert calls["data"].n == 5
    assert calls["model"] == (("mobilenet_v2",), {"framework": "torch", "num_classes": 10, "image_size": 32})
    assert "dropout=0.3" in code   # the run's config sets the head's dropout
    panel.code_button.value = True  # "Show code" shows the same text in the panel
    assert "FineTuneConfig(" in panel.code_view.value and panel.code_view.layout.display is None
    panel.code_button.value = False
    panel.set_config(TINY)


class _FakeData:
    num_classes = 10

    def __init__(self, name):
        self.name = name

    def subset(self, n):
        self.n = n
        return self


# --- LayerMap ---------------------------------------------------------------------------------------------------
def test_layermap_clicks_edit_the_config_and_the_model(panel):
    panel.set_config(TINY)  # head_only: only the head trains
    assert panel.layermap.mask == [False, False, False, False, True]
    panel.layermap.click(2)  # unfreeze blocks_7_13: it and everything after it train
    assert (panel.config.strategy, panel.config.trainable_groups) == ("partial", 3)
    assert panel.model.trainable_mask() == [False, False, True, True, True]
    assert panel.layermap.mask == [False, False, True, True, True]
    # a click in the browser arrives as an ipywidgets "custom" comm message:
    panel.layermap._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "click", "index": 0}}},
                                "buffers": []})
    assert panel.config.strategy == "full" and panel.model.trainable_mask() == [True] * 5
    panel.layermap.click(3)  # freeze blocks_14_18 and everything before it
    assert panel.config.strategy == "head_only" and panel.model.trainable_mask() == [False] * 4 + [True]
    panel.layermap.click(4)  # the new head cannot be frozen
    assert panel.config.strategy == "head_only" and "always trains" in panel.status.value
    panel.set_config(TINY)


def test_layermap_alone_toggles_a_model():
    model = ftkit.load_model("mobilenet_v2", num_classes=10, image_size=32, verbose=False)
    lm = LayerMap(model)
    assert lm.mask == [True] * 5 and lm.groups[-1]["params"] == 1280 * 10 + 10
    lm.click(1)
    assert model.trainable_mask() == [True, False, True, True, True] == lm.mask
    lm.disabled = True
    lm.click(1)  # disabled: nothing changes
    assert model.trainable_mask()[1] is False


# --- real runs ----------------------------------------------------------------------------------------------------
def test_train_runs_a_real_tiny_run(panel):
    panel.set_config(TINY)
    n_before = len(ftkit.session_runs())
    t0 = time.perf_counter()
    run = panel.train(wait=True)
    took = time.perf_counter() - t0
    assert run is panel.run and run.status == "finished", panel.status.value
    assert len(run.history["epochs"]) == 2 and len(run.history["steps"]) == 4
    assert len(ftkit.session_runs()) == n_before + 1
    assert panel.error is None and "finished" in panel.status.value
    assert panel.live.redraws >= 3 and bytes(panel.live.plot.value).startswith(b"\x89PNG")
    assert "data-status='finished'" in panel.live.title.value and "samples/s" in panel.live.stats.value
    assert f"data-run='{run.name}'" in panel.runboard.table.value
    assert not panel.train_button.disabled and panel.stop_button.disabled and not panel.lr.disabled
    print(f"tiny panel run: {took:.1f} s")


def test_controls_disabled_while_running_and_double_click_starts_one_run(panel):
    panel.set_config(TINY.replace(epochs=3))
    n_before = len(ftkit.session_runs())
    panel.train_button.click()
    panel.train_button.click()  # a double click
    thread = panel.thread
    assert panel.train() is None  # and a third, programmatic one
    assert thread.is_alive() and panel.busy
    assert panel.train_button.disabled and not panel.stop_button.disabled
    assert panel.lr.disabled and panel.strategy.disabled and panel.epochs.disabled and panel.layermap.disabled
    before = panel.config
    panel.layermap.click(0)  # ignored while a run goes
    assert panel.config == before
    thread.join(120)
    assert panel.thread is thread and len(ftkit.session_runs()) == n_before + 1
    assert panel.run.status == "finished" and len(panel.run.history["epochs"]) == 3
    assert not panel.train_button.disabled and not panel.lr.disabled and not panel.layermap.disabled
    panel.set_config(TINY)


def test_stop_ends_the_run_early_and_keeps_its_history(panel):
    panel.set_config(TINY.replace(epochs=20, max_steps_per_epoch=None, batch_size=8))  # 7 steps per epoch
    thread = panel.train()
    wait_for(lambda: panel.run is not None and len(panel.run.history["steps"]) >= 2, what="two steps")
    panel.stop_button.click()
    thread.join(120)
    run = panel.run
    assert run.status == "stopped", panel.status.value
    assert 1 <= len(run.history["epochs"]) < 20 and run.history["steps"]
    assert len(run.history["steps"]) < run.total_steps
    assert "stopped" in panel.status.value and not panel.train_button.disabled
    assert run.name in panel.runboard.table.value
    panel.set_config(TINY)


def test_a_learning_rate_of_zero_is_reported_in_plain_words(panel):
    n_before = len(ftkit.session_runs())
    panel.lr.value = 0.0
    assert panel.train() is None
    assert "lr=0.0 must be a number > 0" in panel.error
    assert "must be a number &gt; 0" in panel.status.value and "data-kind='error'" in panel.status.value
    assert panel.preview_message.startswith("No preview: lr=0.0")  # the preview says why it cannot draw
    assert len(ftkit.session_runs()) == n_before and not panel.busy
    panel.set_config(TINY)


def test_errors_inside_the_run_are_shown_too():
    p = make_panel(dataset="rotten_tomatoes", load=False)  # an image model on text data
    assert p.train(wait=True) is None and p.run is None
    assert "takes image inputs" in p.error and "error" in p.status.value
    assert not p.busy and not p.train_button.disabled


def test_progressive_unfreezing_updates_the_layermap_each_epoch(panel):
    panel.set_config(TINY.replace(strategy="progressive", epochs=3))
    masks = []
    panel.layermap.observe(lambda ch: masks.append([g["trainable"] for g in ch["new"]]), names="groups")
    run = panel.train(wait=True)
    assert run.status == "finished"
    assert [False, False, False, False, True] in masks
    assert [False, False, False, True, True] in masks
    assert [False, False, True, True, True] in masks
    assert [e["trainable_mask"] for e in run.history["epochs"]][-1] == [False, False, True, True, True]
    panel.set_config(TINY)


# --- LiveView and RunBoard without the panel ---------------------------------------------------------------------
def test_liveview_and_runboard_work_as_plain_callbacks(tmp_path):
    data = ftkit.load_dataset("digits", verbose=False).subset(5)
    model = ftkit.load_model("mobilenet_v2", num_classes=10, image_size=32, verbose=False)
    live = LiveView(min_interval=0.0)
    run = ftkit.finetune(model, data, TINY.replace(progress=False, lr_ratio=10.0), callbacks=[live])
    assert live.run is run and live.redraws >= 4 and "finished" in live.title.value
    board = RunBoard()
    rows = board.rows()
    assert rows[-1]["run"] == run.name and rows[-1]["strategy"] == "head_only"
    assert "ratio 10" in rows[-1]["settings"]
    board.csv_path = str(tmp_path / "runs.csv")
    path = board.export()
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(ftkit.session_runs()) and table[-1]["run"] == run.name
    assert "download" in board.export_note.value
    only = RunBoard(runs=[run])
    assert len(only.rows()) == 1 and only.to_dataframe().shape[0] == 1


def test_a_model_and_dataset_you_pass_in_are_used_as_they_are():
    data = ftkit.load_dataset("digits", verbose=False).subset(5)
    model = ftkit.load_model("mobilenet_v2", num_classes=10, image_size=32, verbose=False)
    p = FineTunePanel(config=TINY.replace(epochs=1), model=model, dataset=data, live_interval=0.0)
    assert p.model is model and p.data is data
    assert p.model_name.disabled and p.dataset.disabled and not p.fresh.value
    run = p.train(wait=True)
    assert run.status == "finished" and run.model is model and p.model is model  # trained in place
    code = p.code()
    assert "the model you gave the panel" in code and "the Dataset you gave the panel" in code
